"""Retarget motion onto the active armature, and edit, save and load its bone mapping.

The source is a motion clip file (.npz, or .bvh through core clip_from_bvh) or
another armature with an action (read as Blender evaluates it, readback.read_clip);
the target is the active armature, mapped by its stored mapping (the sidebar's,
else the automatic one). Retargeting is numpy on arrays (1,000 frames of a
52-bone rig retarget and bake in well under a second) so it runs inline, inside
one undo step, rather than in a worker job: no torch or body model is involved,
and a modal job would only add a progress bar to a sub-second wait.

Nothing is overwritten unless asked: an animated target keeps its old action
(with a fake user) unless the user chose Replace; a clip at another frame rate is
resampled to the scene's (or the scene is set to the clip's, when chosen); the
source file or armature is only read. Every problem (no armature, a non-humanoid
target, a partial mapping, an unreadable file) is one ERROR line and CANCELLED
with the scene unchanged: everything is read and checked before anything is made,
and the bake is all or nothing.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..blender.action import set_scene_timing
from ..blender.readback import read_clip
from ..blender.retarget_bake import retarget_onto_armature
from ..blender.retarget_files import load_source, resolve_mapping
from ..blender.retarget_mapping import auto_map_armature, mapping_for_armature, store_mapping, stored_mapping
from ..core.clip import MotionClip
from ..core.errors import AvatarCaptureError
from ..core.retarget.bvh_clip import contacts_from_mapping
from ..core.retarget.humanoid import BoneMapping, load_mapping, save_mapping
from ..core.retarget.presets import PRESETS
from ..core.retarget.resample import resample_clip
from ..props import EXISTING_ACTION_ITEMS, FPS_MODE_ITEMS, PRESET_ITEMS, RETARGET_SOURCE_ITEMS

_FPS_TOLERANCE = 1e-6
# Options of AVATAR_OT_retarget with the same name and meaning in scene.avatar_retarget.
_SHARED_OPTIONS = ("in_place", "foot_lock", "hand_ik", "existing_action", "fps_mode")


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def _active_armature(context: bpy.types.Context) -> bpy.types.Object:
    obj = context.active_object
    if obj is None or obj.type != "ARMATURE":
        raise AvatarCaptureError("select the target armature first (the active object must be an armature)")
    return obj


class AVATAR_OT_retarget(bpy.types.Operator):
    """Retarget a motion clip or another armature's action onto the active armature, as a new action"""

    bl_idname = "avatar.retarget"
    bl_label = "Retarget to Active Armature"
    bl_options = {"REGISTER", "UNDO"}

    source_type: EnumProperty(name="Source", items=RETARGET_SOURCE_ITEMS, default="FILE")
    filepath: StringProperty(name="Clip", description="Motion clip (.npz) or BVH file", subtype="FILE_PATH")
    source_armature: StringProperty(name="Source Armature", description="Name of the armature to copy from")
    in_place: BoolProperty(name="In Place", description="Drop the horizontal root motion (keep height)")
    foot_lock: BoolProperty(name="Foot Lock", default=True, description="Keep feet planted on contact frames")
    hand_ik: BoolProperty(name="Hand IK", description="Place the hands where the source's hands are")
    existing_action: EnumProperty(name="Animated Target", items=EXISTING_ACTION_ITEMS, default="KEEP")
    fps_mode: EnumProperty(name="Frame Rate", items=FPS_MODE_ITEMS, default="RESAMPLE")
    action_name: StringProperty(name="Action", description="Name of the new action (default: target + source)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to retarget")
            return False
        return True

    def _take_scene_settings(self, context: bpy.types.Context) -> None:
        """Options the caller did not set come from the sidebar (scene.avatar_retarget), so the panel's
        button, F3 search and scripts passing only some options all work; set here, they stay for redo."""
        settings = context.scene.avatar_retarget
        given = self.properties.is_property_set
        if not given("source_type"):
            self.source_type = settings.source_type
        if not given("filepath"):
            self.filepath = bpy.path.abspath(settings.source_path)
        if not given("source_armature"):
            self.source_armature = settings.source_armature.name if settings.source_armature else ""
        for name in _SHARED_OPTIONS:
            if not given(name):
                setattr(self, name, getattr(settings, name))

    def execute(self, context: bpy.types.Context) -> set[str]:
        self._take_scene_settings(context)
        try:
            message = self._retarget(context)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def _retarget(self, context: bpy.types.Context) -> str:
        """Read and check everything, then retarget and bake (all or nothing); the report line."""
        scene = context.scene
        target = _active_armature(context)
        source, source_map, source_name = self._source(context, target)
        target_map = mapping_for_armature(target)
        notes = []
        fps = scene_fps(scene)
        set_fps = False
        if abs(source.fps - fps) > _FPS_TOLERANCE:
            if self.fps_mode == "RESAMPLE":
                notes.append(f"resampled from {source.fps:g} to the scene's {fps:g} fps")
                source = resample_clip(source, fps)
            else:
                notes.append(f"scene frame rate set from {fps:g} to the clip's {source.fps:g} fps")
                set_fps = True
        old = target.animation_data.action if target.animation_data else None
        old_name = old.name if old is not None else None
        action, clip = retarget_onto_armature(
            scene, target, source, source_map, target_map, in_place=self.in_place, foot_lock=self.foot_lock,
            hand_ik=self.hand_ik, action_name=self.action_name or f"{target.name} <- {source_name}",
            replace_action=self.existing_action == "REPLACE")
        if set_fps:
            set_scene_timing(scene, source.fps, clip.frame_count)
        if old_name is not None:
            if self.existing_action == "KEEP":
                notes.append(f"old action '{old_name}' kept with a fake user")
            else:
                kept = old_name in bpy.data.actions
                notes.append(f"old action '{old_name}' replaced" + (" (kept: still used elsewhere)" if kept
                                                                    else " and removed"))
        return (f"Retargeted {clip.frame_count} frames of '{source_name}' onto '{target.name}' as action "
                f"'{action.name}'" + "".join(f"; {note}" for note in notes))

    def _source(self, context: bpy.types.Context,
                target: bpy.types.Object) -> tuple[MotionClip, BoneMapping, str]:
        """(source clip, its mapping, a name for reports), read without changing the source."""
        if self.source_type == "FILE":
            if not self.filepath:
                raise AvatarCaptureError("choose a motion clip (.npz) or BVH file to retarget")
            path = bpy.path.abspath(self.filepath)
            clip = load_source(path)
            mapping = resolve_mapping(None, clip.skeleton.joint_names, clip.skeleton.parents, "the source clip")[0]
            return clip, mapping, Path(path).stem
        source = bpy.data.objects.get(self.source_armature)
        if source is None or source.type != "ARMATURE":
            raise AvatarCaptureError(f"'{self.source_armature}' is not an armature in this file")
        if source == target:
            raise AvatarCaptureError("the source armature is the target: choose another source")
        if source.animation_data is None or source.animation_data.action is None:
            raise AvatarCaptureError(f"the source armature '{source.name}' has no action to retarget")
        source_map = mapping_for_armature(source)
        scene = context.scene
        frame = scene.frame_current
        try:
            clip = read_clip(scene, source)
        finally:
            scene.frame_set(frame)
        # An action carries no contacts: found from its feet (low and slow) so foot locking works.
        clip = replace(clip, contacts=contacts_from_mapping(clip, source_map, source.name))
        return clip, source_map, source.name


class AVATAR_OT_retarget_auto_map(bpy.types.Operator):
    """Fill the active armature's bone mapping automatically or from a preset, for review in the sidebar"""

    bl_idname = "avatar.retarget_auto_map"
    bl_label = "Auto-Map Bones"
    bl_options = {"REGISTER", "UNDO"}

    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default="AUTO")

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self.properties.is_property_set("preset"):
            self.preset = context.scene.avatar_retarget.preset  # the sidebar's choice
        try:
            target = _active_armature(context)
            if self.preset == "AUTO":
                mapping, report = auto_map_armature(target)
                how = (f"preset '{report.preset}' ({report.preset_score:.0%} of its bones)" if report.preset
                       else "no preset")
                found = (f"{len(mapping.bones)} joints: {how}; {len(report.by_preset)} by preset, "
                         f"{len(report.by_name)} by name, {len(report.by_topology)} by topology")
            else:
                mapping = self._preset(target)
                found = f"{len(mapping.bones)} joints from preset '{self.preset}'"
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        store_mapping(target, mapping)
        missing = mapping.missing_required()
        if missing:
            self.report({"WARNING"}, f"Mapped '{target.name}' ({found}); required joints unmapped: "
                        + ", ".join(missing))
        else:
            self.report({"INFO"}, f"Mapped '{target.name}': {found}")
        return {"FINISHED"}

    def _preset(self, target: bpy.types.Object) -> BoneMapping:
        """The preset restricted to the bones the armature has (chains kept when complete)."""
        preset = PRESETS[self.preset]
        present = {bone.name for bone in target.data.bones}
        bones = {joint: bone for joint, bone in preset.bones.items() if bone in present}
        if not bones:
            raise AvatarCaptureError(f"'{target.name}' has none of the bones of preset '{self.preset}'")
        chains = {key: chain for key, chain in (("spine_chain", preset.spine_chain),
                                                 ("neck_chain", preset.neck_chain))
                  if set(chain) <= present}
        try:
            return BoneMapping(bones=bones, name=self.preset, **chains)
        except ValueError:
            return BoneMapping(bones=bones, name=self.preset)


class AVATAR_OT_retarget_mapping_save(bpy.types.Operator, ExportHelper):
    """Save the active armature's bone mapping as a JSON preset"""

    bl_idname = "avatar.retarget_mapping_save"
    bl_label = "Save Bone Mapping"
    bl_options = {"REGISTER"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            target = _active_armature(context)
            mapping = stored_mapping(target) or auto_map_armature(target)[0]
            path = save_mapping(mapping, bpy.path.abspath(self.filepath))
        except (AvatarCaptureError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved the bone mapping of '{target.name}' ({len(mapping.bones)} joints) to {path}")
        return {"FINISHED"}


class AVATAR_OT_retarget_mapping_load(bpy.types.Operator, ImportHelper):
    """Load a bone mapping (JSON) onto the active armature"""

    bl_idname = "avatar.retarget_mapping_load"
    bl_label = "Load Bone Mapping"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            target = _active_armature(context)
            mapping = load_mapping(bpy.path.abspath(self.filepath))
            absent = mapping.missing_in_rig([bone.name for bone in target.data.bones])
            if absent:
                raise AvatarCaptureError(f"{self.filepath}: names bone(s) '{target.name}' lacks: "
                                         + ", ".join(absent))
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        store_mapping(target, mapping)
        self.report({"INFO"}, f"Loaded the bone mapping '{mapping.name}' ({len(mapping.bones)} joints) "
                    f"onto '{target.name}'")
        return {"FINISHED"}


CLASSES = (AVATAR_OT_retarget, AVATAR_OT_retarget_auto_map, AVATAR_OT_retarget_mapping_save,
           AVATAR_OT_retarget_mapping_load)

"""Runtime job state of the add-on (``window_manager.avatar_capture_job``) and the splat display
settings (``scene.avatar_splats``).

The sidebar draws the running job's stage, progress bar and message, and the last
error with the path of its log, from here. It lives on the window manager, not on
the scene, because it describes this Blender session rather than the user's data:
a running or cancelled job then never changes the scene, never enters the undo
history and never marks the file as modified. Whether a job is really running is
decided by the runtime job registry in operators/jobs.py, not by ``running``.

The splat display settings are on the scene (saved with the file, shared by its viewports):
they say how the viewport draw handler (blender/splat_draw.py) draws splat objects.

Retargeting: the scene holds the retarget settings (``scene.avatar_retarget``: source,
options, what to do with an animated target or another frame rate) and each armature
object its own bone mapping (``object.avatar_retarget_map``), so a corrected mapping is
saved with the character, survives undo and is found again next time that rig is a target.
"""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from .core.retarget.presets import PRESETS


class AvatarJobProps(bpy.types.PropertyGroup):
    running: BoolProperty(name="Running", description="A worker job is running", options=set())
    title: StringProperty(name="Job", description="What the running or last job does", options=set())
    stage: StringProperty(name="Stage", description="Current step of the job", options=set())
    fraction: FloatProperty(name="Progress", description="Fraction of the job done",
                            min=0.0, max=1.0, subtype="FACTOR", options=set())
    message: StringProperty(name="Message", description="Detail of the current step", options=set())
    last_error: StringProperty(name="Last error", description="Why the last job failed", options=set())
    log_path: StringProperty(name="Log", description="Log file of the running or last job",
                             subtype="FILE_PATH", options=set())


def _redraw_viewports(_self, context: bpy.types.Context) -> None:
    for area in context.screen.areas if context.screen is not None else ():
        if area.type == "VIEW_3D":
            area.tag_redraw()


class AvatarSplatDisplay(bpy.types.PropertyGroup):
    show: BoolProperty(name="Show Splats", description="Draw splat objects in the 3D viewport",
                       default=True, update=_redraw_viewports)
    scale: FloatProperty(name="Splat Size", description="Multiplies the size of every splat as drawn",
                         default=1.0, min=0.05, soft_max=3.0, max=10.0, update=_redraw_viewports)
    sh_degree: IntProperty(name="Quality", description="Spherical harmonics bands used for view-dependent "
                           "colour: 0 = flat colour (fastest), 3 = full", default=3, min=0, max=3,
                           update=_redraw_viewports)


class AvatarRetargetJoint(bpy.types.PropertyGroup):
    """One canonical joint of a rig's mapping: ``name`` is the canonical joint, ``bone`` the rig bone ("" unmapped)."""

    bone: StringProperty(name="Bone", description="The armature bone that plays this canonical joint "
                         "(empty: not mapped)")


class AvatarRetargetChainBone(bpy.types.PropertyGroup):
    """One bone of a spine or neck chain (root side first); ``name`` is the bone name."""


class AvatarRetargetMap(bpy.types.PropertyGroup):
    """An armature's bone mapping onto the canonical humanoid (blender/retarget_mapping.py reads and writes it)."""

    joints: CollectionProperty(type=AvatarRetargetJoint, name="Joints",
                               description="Canonical joint -> bone, one item per canonical joint")
    spine_chain: CollectionProperty(type=AvatarRetargetChainBone, name="Spine Chain",
                                    description="Every spine bone from the first to the last before the neck")
    neck_chain: CollectionProperty(type=AvatarRetargetChainBone, name="Neck Chain",
                                   description="Every neck bone from the first to the last before the head")
    mapping_name: StringProperty(name="Mapping", description="Where the mapping came from (preset, auto, file)")
    active_index: IntProperty(name="Active Joint", options=set())


def _is_armature(_self, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


# Enum items shared by the scene settings and the retarget operators (operators/retarget.py).
RETARGET_SOURCE_ITEMS = (
    ("FILE", "Clip File", "A motion clip (.npz) or a BVH file"),
    ("ARMATURE", "Armature", "Another armature with an action (left untouched)"),
)
EXISTING_ACTION_ITEMS = (
    ("KEEP", "Keep", "Keep the old action (with a fake user) and assign the new one"),
    ("REPLACE", "Replace", "Replace the old action (removed when nothing else uses it)"),
)
FPS_MODE_ITEMS = (
    ("RESAMPLE", "Resample", "Resample the motion to the scene's frame rate"),
    ("SCENE", "Set Scene", "Set the scene's frame rate to the clip's"),
)
PRESET_ITEMS = (("AUTO", "Auto", "Find the mapping from presets, bone names and the hierarchy"),) + tuple(
    (name, name, f"The '{name}' preset's bone names") for name in PRESETS)


class AvatarRetargetSettings(bpy.types.PropertyGroup):
    source_type: EnumProperty(name="Source", description="Where the motion comes from",
                              items=RETARGET_SOURCE_ITEMS, default="FILE")
    source_path: StringProperty(name="Clip", description="Motion clip (.npz) or BVH file to retarget",
                                subtype="FILE_PATH")
    source_armature: PointerProperty(type=bpy.types.Object, name="Source Armature", poll=_is_armature,
                                     description="Armature whose action is retargeted")
    in_place: BoolProperty(name="In Place", description="Drop the horizontal root motion (keep height)")
    foot_lock: BoolProperty(name="Foot Lock", default=True,
                            description="Keep the feet planted on the clip's contact frames (two-bone IK)")
    hand_ik: BoolProperty(name="Hand IK", description="Place the hands where the source's hands are (two-bone IK)")
    existing_action: EnumProperty(name="Animated Target", description="When the target already has an action",
                                  items=EXISTING_ACTION_ITEMS, default="KEEP")
    fps_mode: EnumProperty(name="Frame Rate", description="When the clip's frame rate is not the scene's",
                           items=FPS_MODE_ITEMS, default="RESAMPLE")
    preset: EnumProperty(name="Preset", description="Bone names to map the target with", items=PRESET_ITEMS,
                         default="AUTO")
    show_optional: BoolProperty(name="Optional Joints", description="List the optional joints (fingers, toes, "
                                "eyes ...) too", options=set())


CLASSES = (AvatarJobProps, AvatarSplatDisplay, AvatarRetargetJoint, AvatarRetargetChainBone, AvatarRetargetMap,
           AvatarRetargetSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.avatar_capture_job = PointerProperty(type=AvatarJobProps)
    bpy.types.Scene.avatar_splats = PointerProperty(type=AvatarSplatDisplay)
    bpy.types.Scene.avatar_retarget = PointerProperty(type=AvatarRetargetSettings)
    bpy.types.Object.avatar_retarget_map = PointerProperty(type=AvatarRetargetMap)


def unregister() -> None:
    del bpy.types.Object.avatar_retarget_map
    del bpy.types.Scene.avatar_retarget
    del bpy.types.Scene.avatar_splats
    del bpy.types.WindowManager.avatar_capture_job
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

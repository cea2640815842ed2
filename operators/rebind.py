"""Rebind the selected skinned meshes and splat clouds to the active armature (LBS rebinding).

Why an operator of its own: retargeting moves the user's rig; this brings the captured body
(mesh or splats) along, so the user's rig drives the avatar itself. The selection is the
objects to rebind (skinned meshes, splat objects, or a source armature standing for its
skinned children) and the active armature is the target, as Blender's own "Parent to
Armature" reads it. Each becomes a new object "<name> (rebound)" (blender.rebind); the
sources are left as they were. Every object is checked before anything is made, and the
whole run is one undo step that leaves nothing behind when any object fails.
"""
from __future__ import annotations

import bpy

from ..blender import datablocks
from ..blender.readback import skinned_meshes
from ..blender.rebind import check_rebindable, rebind_object, source_armature
from ..core.errors import AvatarCaptureError


def rebind_candidates(context: bpy.types.Context, target: bpy.types.Object) -> list[bpy.types.Object]:
    """Selected objects deformed by an armature other than target, plus the skinned children of selected
    armatures other than target; each once, in selection order."""
    found: list[bpy.types.Object] = []
    for obj in context.selected_objects:
        if obj == target:
            continue
        members = skinned_meshes(obj) if obj.type == "ARMATURE" else [obj]
        for member in members:
            if member not in found and source_armature(member) not in (None, target):
                found.append(member)
    return found


class AVATAR_OT_rebind_to_rig(bpy.types.Operator):
    """Rebind the selected skinned meshes and splat clouds to the active armature through the bone mappings:
    new objects in the armature's rest pose with its bone weights (the originals stay as they are)"""

    bl_idname = "avatar.rebind_to_rig"
    bl_label = "Rebind to Active Armature"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to rebind")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        target = context.active_object
        if target is None or target.type != "ARMATURE":
            self.report({"ERROR"}, "Make the target armature the active object (select it last)")
            return {"CANCELLED"}
        objects = rebind_candidates(context, target)
        if not objects:
            self.report({"ERROR"}, f"Select the meshes or splat clouds skinned to another armature (or that "
                                   f"armature) to rebind them to '{target.name}'")
            return {"CANCELLED"}
        before = datablocks.snapshot()
        try:
            for obj in objects:
                check_rebindable(obj, target)
            made = [rebind_object(obj, target) for obj in objects]
        except AvatarCaptureError as exc:
            datablocks.remove_new(before)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Rebound {len(made)} object(s) to '{target.name}': "
                              + ", ".join(obj.name for obj in made))
        return {"FINISHED"}


CLASSES = (AVATAR_OT_rebind_to_rig,)

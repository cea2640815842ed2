"""File > Export style operator for an imported avatar: FBX, glTF (.glb / .gltf) or BVH.

A thin wrapper over blender/export.py, which does the work for the CLI too.
No UNDO flag: an export leaves the scene exactly as it found it (the T-pose,
A-pose and BVH paths build their copy in a temporary scene that is removed
again, and selection, active object and frame are restored), so there is
nothing to undo and no undo step to clutter the history.
"""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from ..blender.export import FORMAT_EXTENSIONS, export_avatar
from ..core.errors import AvatarCaptureError
from .format_export import FormatExportHelper

_FORMAT_ITEMS = (
    ("FBX", "FBX (.fbx)", "Armature, skinned body and motion baked on every frame"),
    ("GLB", "glTF Binary (.glb)", "Armature, skinned body (all influences) and motion in one file"),
    ("GLTF", "glTF Separate (.gltf + .bin)", "Like GLB, as JSON plus a binary buffer file"),
    ("BVH", "BVH (.bvh)", "Skeleton and motion only, Y up"),
)
_REST_POSE_ITEMS = (
    ("AS_IS", "As Is", "Keep the avatar's own rest pose"),
    ("T_POSE", "T-Pose", "Rest pose with the arms horizontal; the motion is unchanged"),
    ("A_POSE", "A-Pose", "Rest pose with the arms lowered at about 45 degrees; the motion is unchanged"),
)


def avatar_armature(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The armature to export for the active object: itself, or the armature a mesh is parented to."""
    if obj is None:
        return None
    if obj.type == "ARMATURE":
        return obj
    if obj.type == "MESH" and obj.parent is not None and obj.parent.type == "ARMATURE":
        return obj.parent
    return None


class AVATAR_OT_export(bpy.types.Operator, FormatExportHelper):
    """Export the active avatar (armature, skinned body and motion) as FBX, glTF or BVH"""

    bl_idname = "avatar.export"
    bl_label = "Export Avatar"
    bl_options = {"REGISTER"}

    format_extensions = FORMAT_EXTENSIONS
    filter_glob: StringProperty(default="*.fbx;*.glb;*.gltf;*.bvh", options={"HIDDEN"})
    file_format: EnumProperty(name="Format", items=_FORMAT_ITEMS, default="FBX")
    rest_pose: EnumProperty(name="Rest Pose", items=_REST_POSE_ITEMS, default="AS_IS",
                            description="Rest pose of the exported armature")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if avatar_armature(context.active_object) is None:
            cls.poll_message_set("Select an avatar's armature or body mesh")
            return False
        return True

    def default_name(self, context: bpy.types.Context) -> str:
        return avatar_armature(context.active_object).name

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "file_format")
        layout.prop(self, "rest_pose")

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature = avatar_armature(context.active_object)
        if armature is None:
            self.report({"ERROR"}, "Select an avatar's armature or body mesh to export")
            return {"CANCELLED"}
        path = Path(self.path_with_extension())
        try:
            export_avatar(context.scene, armature, path, self.file_format, self.rest_pose)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported '{armature.name}' to {path}")
        return {"FINISHED"}


CLASSES = (AVATAR_OT_export,)

"""File > Import / Export operators for Gaussian splats, and binding splat objects to an armature.

Thin wrappers: files are read and written by core.splats (3DGS .ply, the .npz
container, .glb), objects are built by blender.splat_object. A file is read and
validated completely before the scene is touched, and the scene changes go
through a datablock snapshot, so a failed import costs one error line and leaves
no debris. Export has no UNDO flag: it changes nothing in the scene.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..blender import datablocks
from ..blender.splat_object import (bind_to_armature, check_bindable, create_splat_object, gaussians_from_object,
                                    is_splat_object)
from ..core.errors import AvatarCaptureError
from ..core.splats.gaussians import Gaussians
from ..core.splats.gltf import write_glb
from ..core.splats.ply import read_splats, write_ply
from ..core.splats.transforms import transform_gaussians
from .format_export import FormatExportHelper

_EXTENSIONS = {"PLY": ".ply", "GLB": ".glb"}
_FORMAT_ITEMS = (
    ("PLY", "3DGS PLY (.ply)", "The standard 3D Gaussian Splatting layout, readable by every splat viewer"),
    ("GLB", "glTF Binary (.glb)", "glTF with KHR_gaussian_splatting (and a skin when the splats are bound)"),
)


class AVATAR_OT_import_splats(bpy.types.Operator, ImportHelper):
    """Import Gaussian splats (3DGS .ply or Avatar Capture .npz) as a splat object"""

    bl_idname = "avatar.import_splats"
    bl_label = "Import Gaussian Splats"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply;*.npz", options={"HIDDEN"})
    bind_armature: BoolProperty(
        name="Bind to Active Armature", default=False,
        description="Parent the splats to the active armature and make them follow its bones "
                    "(the file's skin when its bones match, otherwise weights by distance to the bones)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to import splats")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = Path(self.filepath)
        armature = context.active_object if self.bind_armature else None
        if self.bind_armature and (armature is None or armature.type != "ARMATURE"):
            self.report({"ERROR"}, "Bind to Active Armature is on, but the active object is not an armature")
            return {"CANCELLED"}
        try:
            gaussians = read_splats(path)
        except AvatarCaptureError as exc:
            message = str(exc)
            self.report({"ERROR"}, message if str(path) in message else f"{path}: {message}")
            return {"CANCELLED"}
        try:
            obj = _build(context, gaussians, path.stem, armature)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, f"{path}: {exc}")
            return {"CANCELLED"}
        bound = f", bound to '{armature.name}'" if armature is not None else ""
        self.report({"INFO"}, f"Imported {gaussians.count} splats (SH degree {gaussians.sh_degree}) "
                              f"as '{obj.name}'{bound}")
        return {"FINISHED"}


def _build(context: bpy.types.Context, g: Gaussians, name: str, armature: bpy.types.Object | None) -> bpy.types.Object:
    """The splat object, bound when armature is given, selected and active; nothing is left if a step fails."""
    before = datablocks.snapshot()
    try:
        obj = create_splat_object(g, name, context.collection)
        if armature is not None:
            bind_to_armature(obj, armature)
    except BaseException:
        datablocks.remove_new(before)
        raise
    for other in context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj


class AVATAR_OT_export_splats(bpy.types.Operator, FormatExportHelper):
    """Export the active splat object as a 3DGS .ply or a glTF .glb (KHR_gaussian_splatting)"""

    bl_idname = "avatar.export_splats"
    bl_label = "Export Gaussian Splats"
    bl_options = {"REGISTER"}

    format_extensions = _EXTENSIONS
    filter_glob: StringProperty(default="*.ply;*.glb", options={"HIDDEN"})
    file_format: EnumProperty(name="Format", items=_FORMAT_ITEMS, default="PLY")
    include_skin: BoolProperty(
        name="Include Skin", default=True,
        description="PLY: also write bone indices, weights and the skeleton as extra properties "
                    "(other 3DGS tools ignore them); off writes the standard properties only")
    apply_transform: BoolProperty(
        name="Apply Object Transform", default=False,
        description="Bake the object's world transform into the splats (positions, rotations, sizes, SH); "
                    "off writes them in the object's own frame. Rotation, location and uniform scale only")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not is_splat_object(context.active_object):
            cls.poll_message_set("Select a splat object")
            return False
        if context.active_object.data.is_editmode:
            cls.poll_message_set("Switch to Object Mode to export the splats")
            return False
        return True

    def default_name(self, context: bpy.types.Context) -> str:
        return context.active_object.name

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "file_format")
        row = layout.row()
        row.enabled = self.file_format == "PLY"
        row.prop(self, "include_skin")
        layout.prop(self, "apply_transform")

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = context.active_object
        if not is_splat_object(obj):
            self.report({"ERROR"}, "Select a splat object to export")
            return {"CANCELLED"}
        path = Path(self.path_with_extension())
        try:
            g = gaussians_from_object(obj)
            if self.apply_transform:
                g = transform_gaussians(g, np.array(obj.matrix_world, dtype=np.float64))
            if self.file_format == "PLY":
                write_ply(g, path, standard_only=not self.include_skin)
            else:
                write_glb(g, path, name=obj.name)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, f"'{obj.name}' to {path}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {g.count} splats of '{obj.name}' to {path}")
        return {"FINISHED"}


class AVATAR_OT_bind_splats(bpy.types.Operator):
    """Bind the selected splat objects to the active armature: the cloud's own skin when its bones match, \
otherwise weights by distance to the deform bones"""

    bl_idname = "avatar.bind_splats"
    bl_label = "Bind Splats to Armature"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        active = context.active_object
        if active is None or active.type != "ARMATURE":
            cls.poll_message_set("Make an armature the active object")
            return False
        if not any(is_splat_object(obj) for obj in context.selected_objects):
            cls.poll_message_set("Select the splat objects to bind, then the armature")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature = context.active_object
        clouds = [obj for obj in context.selected_objects if is_splat_object(obj)]
        if armature is None or armature.type != "ARMATURE" or not clouds:
            self.report({"ERROR"}, "Select splat objects and make an armature the active object")
            return {"CANCELLED"}
        try:
            for obj in clouds:  # all checked before any is bound: a refusal leaves the scene as it was
                check_bindable(obj, armature)
            for obj in clouds:
                bind_to_armature(obj, armature)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Bound {len(clouds)} splat object(s) to '{armature.name}'")
        return {"FINISHED"}


CLASSES = (AVATAR_OT_import_splats, AVATAR_OT_export_splats, AVATAR_OT_bind_splats)

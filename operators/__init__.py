"""Blender operators: thin wrappers that gather options, start worker jobs and hand results
to the scene builders in ``blender/``; the algorithms live in ``core/``."""
import bpy

from . import capture, check_setup, export, import_clip, jobs, rebind, retarget, splat_render, splats

CLASSES = (check_setup.CLASSES + jobs.CLASSES + import_clip.CLASSES + capture.CLASSES + export.CLASSES
           + splats.CLASSES + splat_render.CLASSES + retarget.CLASSES + rebind.CLASSES)


def draw_import_menu(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    """File > Import entry, where animators look for importers first."""
    self.layout.operator(import_clip.AVATAR_OT_import_clip.bl_idname, text="Avatar Capture Motion Clip (.npz)")
    self.layout.operator(capture.AVATAR_OT_capture_video.bl_idname, text="Avatar Capture from Video")
    self.layout.operator(splats.AVATAR_OT_import_splats.bl_idname, text="Gaussian Splats (.ply/.npz)")


def draw_export_menu(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    """File > Export entries for the active avatar (FBX, glTF, BVH) and splat object (.ply, .glb)."""
    self.layout.operator(export.AVATAR_OT_export.bl_idname, text="Avatar Capture Avatar (.fbx/.glb/.bvh)")
    self.layout.operator(splats.AVATAR_OT_export_splats.bl_idname, text="Gaussian Splats (.ply/.glb)")


def draw_render_menu(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    """Render menu entry next to Render Image: F12 does not see the splat draw handler."""
    self.layout.separator()
    self.layout.operator(splat_render.AVATAR_OT_render_with_splats.bl_idname, icon="RENDER_STILL")


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    jobs.register_handlers()
    bpy.types.TOPBAR_MT_file_import.append(draw_import_menu)
    bpy.types.TOPBAR_MT_file_export.append(draw_export_menu)
    bpy.types.TOPBAR_MT_render.append(draw_render_menu)


def unregister() -> None:
    bpy.types.TOPBAR_MT_render.remove(draw_render_menu)
    bpy.types.TOPBAR_MT_file_export.remove(draw_export_menu)
    bpy.types.TOPBAR_MT_file_import.remove(draw_import_menu)
    jobs.unregister_handlers()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

"""Render Image with Splats (Splats panel): an F12 render with the scene's Gaussian splats composited in.

Render engines do not see the splat draw handler, so this runs the ordinary render and lays the
splats, drawn offscreen from the scene camera and hidden by the scene's geometry, over the
result (blender.splat_render). The composite goes to an image datablock packed into the .blend
that an open Image Editor shows, and optionally to a PNG file.
"""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty

from ..blender.splat_render import (composite_splats, read_render_result, render_splat_objects, save_png,
                                    scene_camera, store_image)
from ..core.atomic_files import check_writable
from ..core.errors import AvatarCaptureError


class AVATAR_OT_render_with_splats(bpy.types.Operator):
    """Render the scene camera's image with the engine, then composite the visible Gaussian splats over it \
(hidden by the geometry in front of them)"""

    # UNDO although rendering edits nothing: the operator adds an image datablock to the file.
    # Without an undo step of its own, the next Ctrl+Z (undoing an earlier, unrelated edit)
    # would restore a state without the image and the render would vanish; with it, Ctrl+Z first
    # takes back just this render, and undoing later edits keeps the image and its (packed)
    # pixels. The render engine's own Render Result stays outside undo, as after F12.
    bl_idname = "avatar.render_with_splats"
    bl_label = "Render Image with Splats"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(
        name="File Path", subtype="FILE_PATH", default="",
        description="Also save the composited image here as a 16-bit RGBA PNG (empty: keep it in Blender only)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and context.view_layer is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene, view_layer = context.scene, context.view_layer
        try:
            path = self._output_path()
            camera = scene_camera(scene)
            clouds = render_splat_objects(view_layer)
            if not clouds:
                raise AvatarCaptureError(f"view layer '{view_layer.name}' has no splat object that renders: "
                                         "import splats, or enable them in renders")
            editing = [obj.name for obj in clouds if obj.mode == "EDIT"]
            if editing:  # its splats cannot be read in Edit Mode: say so before a long render, not after
                raise AvatarCaptureError(f"splat object '{editing[0]}' is in Edit Mode; switch to Object Mode")
            try:
                if "FINISHED" not in bpy.ops.render.render():
                    self.report({"WARNING"}, "The render was cancelled")
                    return {"CANCELLED"}
            except RuntimeError as exc:
                raise AvatarCaptureError(f"the render failed: {str(exc).strip()}") from None
            # Drawing the splats needs the GPU, which a background Blender unlocks only by rendering:
            # composite_splats says so clearly when there is none.
            composite = composite_splats(read_render_result(scene), scene, camera, view_layer)
            image = store_image(composite)
            if path is not None:
                save_png(image, path)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        shown = _show_in_image_editors(context, image)
        where = "shown in the Image Editor" if shown else f"open an Image Editor and pick '{image.name}'"
        saved = f", saved to {path}" if path is not None else " (Image > Save As keeps it)"
        self.report({"INFO"}, f"Rendered {camera.width}x{camera.height} px with splats into image "
                              f"'{image.name}': {where}{saved}")
        return {"FINISHED"}

    def _output_path(self) -> Path | None:
        """The PNG to write, checked before the render starts; None when filepath is empty."""
        if not self.filepath:
            return None
        path = Path(bpy.path.abspath(self.filepath))
        if path.suffix.lower() != ".png":
            raise AvatarCaptureError(f"{path}: the composited image is saved as PNG; give a .png file name")
        check_writable(path)
        return path


def _show_in_image_editors(context: bpy.types.Context, image: bpy.types.Image) -> bool:
    """Show image in the Image Editors that show a render (or this image), else in the first one in
    View mode; editors used for painting or UV editing are left alone. True if one shows it."""
    editors = [area for window in context.window_manager.windows for area in window.screen.areas
               if area.type == "IMAGE_EDITOR" and area.spaces.active.mode == "VIEW"]
    showing = [area for area in editors if area.spaces.active.image is not None
               and (area.spaces.active.image == image or area.spaces.active.image.type == "RENDER_RESULT")]
    for area in showing or editors[:1]:
        area.spaces.active.image = image
        area.tag_redraw()
    return bool(editors)


CLASSES = (AVATAR_OT_render_with_splats,)

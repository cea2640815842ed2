"""Splats in F12 renders: the scene camera as a SplatCamera, and the splat layer composited over a render.

Render engines (Workbench, EEVEE, Cycles) know nothing of the splat draw handler, so a final
image gets its splats afterwards: the visible splat objects are drawn offscreen with the
viewport shaders (blender.splat_offscreen) from exactly the scene camera, depth-tested against
the scene's geometry, and laid over the rendered image. The camera conversion follows
Blender's own view-plane computation (sensor fit, shift, pixel aspect), so a splat lands on the
pixel where a vertex at the same place would be rendered.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import bpy
import numpy as np

from ..core.atomic_files import atomic_output
from ..core.errors import AvatarCaptureError
from ..core.splats.camera import SplatCamera
from .camera import world_to_cam_opencv
from .splat_object import is_splat_object
from .splat_offscreen import render_offscreen

RESULT_IMAGE = "Render with Splats"
RESULT_MARKER = "avatar_capture_splat_render"  # image custom property: a result this module may replace
# Object types whose evaluated geometry renders as surfaces: they hide the splats behind them.
OCCLUDER_TYPES = frozenset({"MESH", "CURVE", "SURFACE", "FONT", "META"})


def render_size(scene: bpy.types.Scene) -> tuple[int, int]:
    """(width, height) in pixels of the scene's renders: resolution times percentage, as Blender rounds it."""
    render = scene.render
    return (render.resolution_x * render.resolution_percentage // 100,
            render.resolution_y * render.resolution_percentage // 100)


def render_region(scene: bpy.types.Scene) -> tuple[int, int, int, int] | None:
    """The Render Region in pixels of the full frame, (left, top, right, bottom) with the origin at
    the top-left corner (right/bottom exclusive), truncated as Blender does; None when it is off."""
    render = scene.render
    if not render.use_border:
        return None
    width, height = render_size(scene)
    return (int(render.border_min_x * width), height - int(render.border_max_y * height),
            int(render.border_max_x * width), height - int(render.border_min_y * height))


def scene_camera(scene: bpy.types.Scene) -> SplatCamera:
    """The scene camera as an OpenCV SplatCamera of the image F12 renders; near/far = its clip range.

    Follows Blender's view plane: the focal length is lens / sensor size times the image
    extent along the fitted sensor axis (AUTO fits the longer side, measured with the pixel
    aspect; the sensor size is the height only for an explicit VERTICAL fit); shift moves the
    principal point by that same extent; a pixel aspect makes pixels aspect_y / aspect_x times
    taller than wide (fy = fx * aspect_x / aspect_y). K's origin is the top-left image corner;
    with Render Region and Crop to Render Region on, the image is the region. Raises
    AvatarCaptureError when there is no camera, it is orthographic or panoramic, or the scene
    renders several views (stereoscopy).
    """
    obj = scene.camera
    if obj is None:
        raise AvatarCaptureError(f"scene '{scene.name}' has no camera: add one and make it the scene camera")
    if obj.type != "CAMERA":
        raise AvatarCaptureError(f"the scene camera '{obj.name}' is not a camera (object type {obj.type})")
    data = obj.data
    if data.type != "PERSP":
        kind = "orthographic" if data.type == "ORTHO" else "panoramic"
        raise AvatarCaptureError(f"camera '{obj.name}' is {kind}: splats are rendered for perspective "
                                 "cameras only")
    if scene.render.use_multiview:
        raise AvatarCaptureError(f"scene '{scene.name}' renders several views (Stereoscopy): splats are "
                                 "composited into single-view renders only")
    width, height = render_size(scene)
    if width < 1 or height < 1:
        raise AvatarCaptureError(f"scene '{scene.name}' renders an empty image ({width}x{height} px)")
    aspect_x, aspect_y = scene.render.pixel_aspect_x, scene.render.pixel_aspect_y
    y_scale = aspect_y / aspect_x  # height of a pixel in units of its width
    fit = data.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if aspect_x * width >= aspect_y * height else "VERTICAL"
    sensor = data.sensor_height if data.sensor_fit == "VERTICAL" else data.sensor_width
    extent = width if fit == "HORIZONTAL" else y_scale * height  # the fitted side, in pixel widths
    fx = data.lens / sensor * extent
    K = np.array([[fx, 0.0, width / 2.0 - data.shift_x * extent],
                  [0.0, fx / y_scale, height / 2.0 + data.shift_y * extent / y_scale],
                  [0.0, 0.0, 1.0]])
    region = render_region(scene)
    if region is not None and scene.render.use_crop_to_border:
        left, top, right, bottom = region
        if right <= left or bottom <= top:
            raise AvatarCaptureError(f"scene '{scene.name}' renders an empty Render Region")
        K[0, 2] -= left
        K[1, 2] -= top
        width, height = right - left, bottom - top
    world_to_cam = world_to_cam_opencv(np.array(obj.matrix_world, np.float64))
    return SplatCamera(K, world_to_cam, width, height, near=float(data.clip_start), far=float(data.clip_end))


def render_visible_objects(view_layer: bpy.types.ViewLayer) -> list[bpy.types.Object]:
    """Objects of the view layer that F12 renders: not disabled in renders, in no excluded or
    render-disabled collection (viewport hiding does not matter to renders)."""
    found: dict[int, bpy.types.Object] = {}

    def visit(layer_collection: bpy.types.LayerCollection) -> None:
        if layer_collection.exclude or layer_collection.collection.hide_render:
            return
        for obj in layer_collection.collection.objects:
            if not obj.hide_render:
                found.setdefault(obj.as_pointer(), obj)
        for child in layer_collection.children:
            visit(child)

    visit(view_layer.layer_collection)
    return list(found.values())


def render_splat_objects(view_layer: bpy.types.ViewLayer) -> list[bpy.types.Object]:
    """The splat objects an F12 render shows."""
    return [obj for obj in render_visible_objects(view_layer) if is_splat_object(obj)]


def composite_splats(render_rgba: np.ndarray, scene: bpy.types.Scene, camera: SplatCamera | None = None,
                     view_layer: bpy.types.ViewLayer | None = None) -> np.ndarray:
    """The render with the scene's splats over it: premultiplied display-space RGBA (H, W, 4), row 0 = top.

    render_rgba: premultiplied RGBA (H, W, 4) of the rendered image after the view transform
    (display space), row 0 = top. camera: default scene_camera(scene). The render-visible
    splat objects of view_layer (default: the context's) are drawn with the Splats panel's
    size and quality, hidden by the render-visible geometry in front of them (evaluated, so
    posed and deformed characters hide what they should), kept inside the Render Region
    when one is rendered uncropped, and composited OVER the render:
    out = splat + (1 - splat_alpha) * render.

    Why display space: 3DGS colours are fitted to sRGB photographs and blended in that space,
    so they are display values already; compositing there shows them exactly as trained (and
    as the viewport and `avatarcap splat render` show them), unaffected by the scene's view
    transform, which would otherwise tone-map them a second time.
    """
    render_rgba = np.asarray(render_rgba, np.float32)
    camera = scene_camera(scene) if camera is None else camera
    if render_rgba.shape != (camera.height, camera.width, 4):
        raise AvatarCaptureError(f"the rendered image is {render_rgba.shape[1]}x{render_rgba.shape[0]} px, "
                                 f"the camera's {camera.width}x{camera.height} px")
    view_layer = bpy.context.view_layer if view_layer is None else view_layer
    splats = render_splat_objects(view_layer)
    if not splats:
        raise AvatarCaptureError(f"view layer '{view_layer.name}' has no splat object that renders")
    occluders = [obj for obj in render_visible_objects(view_layer)
                 if obj.type in OCCLUDER_TYPES and not is_splat_object(obj)]
    settings = getattr(scene, "avatar_splats", None)
    splat_rgba = render_offscreen(splats, camera, occluders=occluders,
                                  sh_degree=None if settings is None else settings.sh_degree,
                                  scale=1.0 if settings is None else settings.scale)
    region = render_region(scene)
    if region is not None and not scene.render.use_crop_to_border:  # the engine renders only the region
        left, top, right, bottom = region
        inside = np.zeros(splat_rgba.shape[:2], bool)
        inside[top:bottom, left:right] = True
        splat_rgba[~inside] = 0.0
    return splat_rgba + (1.0 - splat_rgba[..., 3:4]) * render_rgba


def read_render_result(scene: bpy.types.Scene) -> np.ndarray:
    """The last render (Render Result) as premultiplied display-space RGBA (H, W, 4) float32, row 0 = top.

    Python cannot read the Render Result's pixels directly (its pixel array is empty), so it
    is saved "as render" (view transform, look and the output's colour management applied:
    the colours a saved still would have) to a 16-bit RGBA PNG in a temporary folder, which is
    read back as Non-Color data (no conversion) and removed. The scene's output format is
    switched to that PNG only for the save and restored afterwards.
    """
    result = next((image for image in bpy.data.images if image.type == "RENDER_RESULT"), None)
    if result is None:
        raise AvatarCaptureError("there is no rendered image to read (Render Result is missing)")
    folder = Path(tempfile.mkdtemp(prefix="avatar_capture_render_"))
    path = folder / "render.png"
    try:
        with _png_output(scene.render.image_settings):
            try:
                result.save_render(str(path), scene=scene)
            except RuntimeError as exc:
                raise AvatarCaptureError(f"could not read the rendered image ({exc})") from None
        straight = _load_png_pixels(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    straight[..., :3] *= straight[..., 3:4]
    return straight


# Output settings that make save_render write a 16-bit RGBA PNG (media_type exists from Blender 5.0 on).
_PNG_OUTPUT = {"media_type": "IMAGE", "file_format": "PNG", "color_mode": "RGBA", "color_depth": "16"}


@contextmanager
def _png_output(settings: bpy.types.ImageFormatSettings) -> Iterator[None]:
    """Inside the block the output format is a 16-bit RGBA PNG; the user's format is restored after."""
    saved = {name: getattr(settings, name) for name in _PNG_OUTPUT if hasattr(settings, name)}
    try:
        for name in saved:
            setattr(settings, name, _PNG_OUTPUT[name])
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


def _load_png_pixels(path: Path) -> np.ndarray:
    """Straight RGBA (H, W, 4) float32, row 0 = top, exactly as stored in the PNG (no colour conversion)."""
    try:
        image = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as exc:
        raise AvatarCaptureError(f"could not read the rendered image back ({exc})") from None
    try:
        image.colorspace_settings.name = "Non-Color"
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return np.ascontiguousarray(pixels.reshape(height, width, 4)[::-1])


def store_image(rgba: np.ndarray, name: str = RESULT_IMAGE) -> bpy.types.Image:
    """A float image datablock holding premultiplied display-space RGBA (H, W, 4), row 0 = top.

    The pixels are packed into the .blend (uncompressed float OpenEXR, 16 bytes a pixel: 33 MB
    at 1920x1080): a generated image's pixels are only a cache that undo steps and saved files
    drop (the image comes back blank), packed data is kept by both. A previous result of that name is replaced, and
    whatever showed it (Image Editors) shows the new one; an unrelated image of that name
    is left alone. The colour space is Non-Color: the values are display values already, and
    Blender shows and saves Non-Color pixels without applying the view transform again.
    """
    height, width = rgba.shape[:2]
    previous = bpy.data.images.get(name)
    image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=True)
    image[RESULT_MARKER] = 1
    image.colorspace_settings.name = "Non-Color"
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], np.float32).ravel())
    image.update()
    image.pack()
    if previous is not None and previous.get(RESULT_MARKER):
        previous.user_remap(image)
        bpy.data.images.remove(previous)
        image.name = name
    return image


def save_png(image: bpy.types.Image, path: str | Path) -> None:
    """Write image as a 16-bit RGBA PNG (straight alpha, its pixels unconverted) atomically.

    save_copy keeps the datablock a generated image instead of pointing it at the file.
    """
    with atomic_output(path) as staged:
        image.file_format = "PNG"
        try:
            image.save(filepath=str(staged), save_copy=True)
        except RuntimeError as exc:
            raise AvatarCaptureError(f"{path}: could not write the image ({exc})") from None

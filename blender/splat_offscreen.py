"""Render splats with the viewport shaders into an offscreen buffer: the CLI's ``--engine viewport``.

It draws through the same ``splat_gpu.draw_cloud`` as the viewport draw handler, from an
OpenCV ``SplatCamera`` converted pixel-exactly to OpenGL matrices, so its image is what users
see in the viewport and can be compared with the reference rasterizer. In background mode
Blender refuses GPU calls until one render has run, so the first call renders an 8x8 Workbench
image in a throw-away scene.
"""
from __future__ import annotations

from typing import Iterable

import bpy
import numpy as np

from ..core.errors import AvatarCaptureError
from ..core.splats.camera import SplatCamera
from ..core.splats.gaussians import Gaussians
from . import splat_gpu
from .camera import OPENCV_TO_BLENDER_CAMERA



def projection_matrix(camera: SplatCamera) -> np.ndarray:
    """OpenGL projection (4, 4) whose pixel grid is the camera's: principal point and focal exact.

    NDC x = 2 u / W - 1 and NDC y = 1 - 2 v / H for OpenCV pixel coordinates (u, v), so the
    image's top row is the framebuffer's top row.
    """
    K = np.asarray(camera.K, np.float64)
    w, h, n, f = camera.width, camera.height, camera.near, camera.far
    return np.array([
        [2.0 * K[0, 0] / w, 0.0, 1.0 - 2.0 * K[0, 2] / w, 0.0],
        [0.0, 2.0 * K[1, 1] / h, 2.0 * K[1, 2] / h - 1.0, 0.0],
        [0.0, 0.0, -(f + n) / (f - n), -2.0 * f * n / (f - n)],
        [0.0, 0.0, -1.0, 0.0],
    ])


def view_matrix(camera: SplatCamera) -> np.ndarray:
    """World -> OpenGL view (4, 4) of an OpenCV camera."""
    return OPENCV_TO_BLENDER_CAMERA @ np.asarray(camera.world_to_cam, np.float64)


def buffer_to_array(buffer) -> np.ndarray:
    """A copy of a gpu.types.Buffer as a C-ordered array of its dimensions.

    Blender 5.0's Buffer exports its memory (which is C-ordered) with the strides listed in
    reverse order, so np.asarray alone scrambles any buffer of more than one dimension.
    """
    raw = np.asarray(buffer)
    shape = tuple(buffer.dimensions)
    strides = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) * raw.itemsize for i in range(len(shape)))
    return np.lib.stride_tricks.as_strided(raw, shape=shape, strides=strides).copy()


def ensure_gpu() -> None:
    """Make GPU drawing available (the tiny render in background mode) or raise AvatarCaptureError."""
    reason = splat_gpu.gpu_unavailable_reason()
    if reason is not None and bpy.app.background and "background mode" in reason:
        _tiny_render()
        reason = splat_gpu.gpu_unavailable_reason()
    if reason is not None:
        raise AvatarCaptureError(f"cannot draw splats offscreen: {reason}")


def _tiny_render() -> None:
    """One 8x8 Workbench render in a temporary scene: what unlocks the gpu module in background mode."""
    had_result = "Render Result" in bpy.data.images
    scene = bpy.data.scenes.new("avatar_capture_gpu_probe")
    camera_data = bpy.data.cameras.new("avatar_capture_gpu_probe")
    camera = bpy.data.objects.new("avatar_capture_gpu_probe", camera_data)
    try:
        scene.collection.objects.link(camera)
        scene.camera = camera
        scene.render.engine = "BLENDER_WORKBENCH"
        scene.render.resolution_x = scene.render.resolution_y = 8
        scene.render.resolution_percentage = 100
        bpy.ops.render.render(scene=scene.name)
    except RuntimeError as exc:
        raise AvatarCaptureError(f"cannot draw splats offscreen: the render that enables the GPU failed ({exc})") \
            from None
    finally:
        bpy.data.objects.remove(camera)
        bpy.data.cameras.remove(camera_data)
        bpy.data.scenes.remove(scene)
        if not had_result and "Render Result" in bpy.data.images:
            bpy.data.images.remove(bpy.data.images["Render Result"])


def _clouds(objects_or_gaussians) -> list[tuple[Gaussians, np.ndarray, np.ndarray | None]]:
    """(cloud, object_to_world (4, 4), skinning matrices (B, 4, 4) or None) for each input."""
    items = [objects_or_gaussians] if isinstance(objects_or_gaussians, (Gaussians, bpy.types.Object)) \
        else list(objects_or_gaussians)
    clouds = []
    for item in items:
        if isinstance(item, Gaussians):
            clouds.append((item, np.eye(4), None))
            continue
        from .splat_draw import object_skinning  # the viewport's pose reading, shared
        from .splat_object import gaussians_from_object

        g = gaussians_from_object(item)
        clouds.append((g, np.array(item.matrix_world, np.float64), object_skinning(item, g)))
    if not clouds:
        raise AvatarCaptureError("nothing to render: no splat clouds given")
    return clouds


def render_offscreen(objects_or_gaussians: Gaussians | bpy.types.Object | Iterable, camera: SplatCamera, *,
                     sh_degree: int | None = None, scale: float = 1.0,
                     occluders: Iterable[bpy.types.Object] = ()) -> np.ndarray:
    """Premultiplied RGBA (H, W, 4) float32 of splat clouds seen by an OpenCV camera; row 0 = top.

    objects_or_gaussians: Gaussians (object frame = world), splat objects (their world
    transform and armature pose apply), or a list of either. sh_degree caps the SH bands
    (default: all the data has); scale multiplies every splat's size. occluders: mesh objects
    drawn into the depth buffer first (not into the colour), so they hide the splats behind them
    exactly as scene meshes do in the viewport.
    """
    ensure_gpu()
    import gpu

    clouds = _clouds(objects_or_gaussians)
    view = view_matrix(camera)
    projection = projection_matrix(camera)
    try:
        offscreen = gpu.types.GPUOffScreen(camera.width, camera.height, format="RGBA32F")
    except Exception as exc:  # noqa: BLE001 -- the backend's own words are the useful message
        raise AvatarCaptureError(f"cannot draw splats offscreen: {exc}") from None
    try:
        with offscreen.bind():
            framebuffer = gpu.state.active_framebuffer_get()
            framebuffer.clear(color=(0.0, 0.0, 0.0, 0.0), depth=1.0)
            gpu.state.viewport_set(0, 0, camera.width, camera.height)
            _draw_depth_only(occluders, projection @ view)
            _draw_clouds(clouds, view, projection, camera, sh_degree, scale)
            pixels = buffer_to_array(offscreen.texture_color.read())
    finally:
        offscreen.free()
    return np.ascontiguousarray(pixels[::-1])


def _draw_clouds(clouds, view: np.ndarray, projection: np.ndarray, camera: SplatCamera,
                 sh_degree: int | None, scale: float) -> None:
    from .splat_draw import back_to_front_order, object_order

    placed = [(g.means.mean(axis=0, dtype=np.float64), view @ to_world, g, skinning)
              for g, to_world, skinning in clouds]
    for _centre, model_view, g, skinning in object_order(placed):
        cloud = splat_gpu.upload(g)
        order = splat_gpu.order_texture(back_to_front_order(g, model_view, skinning))
        degree = g.sh_degree if sh_degree is None else min(int(sh_degree), g.sh_degree)
        bones = splat_gpu.bone_texture(skinning) if skinning is not None else None
        splat_gpu.draw_cloud(cloud, splat_gpu.View(model_view, projection, camera.width, camera.height,
                                                   camera.near, camera.far),
                             sh_degree=degree, scale=scale, order=order, bones=bones, linear_output=False)


def _gl_matrix(matrix: np.ndarray):
    """A 4x4 numpy matrix as the mathutils.Matrix that gpu.matrix expects (row-major maths)."""
    from mathutils import Matrix

    return Matrix(np.asarray(matrix, np.float64).tolist())


def _draw_depth_only(occluders: Iterable[bpy.types.Object], view_projection: np.ndarray) -> None:
    """Write the evaluated triangles of mesh objects into the depth buffer only."""
    import gpu
    from gpu_extras.batch import batch_for_shader

    objects = list(occluders)
    if not objects:
        return
    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    gpu.state.depth_test_set("LESS_EQUAL")
    gpu.state.depth_mask_set(True)
    gpu.state.color_mask_set(False, False, False, False)
    try:
        for obj in objects:
            evaluated = obj.evaluated_get(depsgraph)
            mesh = evaluated.to_mesh()  # None for a curve or text without geometry
            try:
                if mesh is None:
                    continue
                mesh.calc_loop_triangles()
                co = np.empty(len(mesh.vertices) * 3, np.float32)
                mesh.vertices.foreach_get("co", co)
                tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
                mesh.loop_triangles.foreach_get("vertices", tris)
            finally:
                evaluated.to_mesh_clear()
            if not len(tris):  # nothing to hide behind (no faces); an empty batch would not even build
                continue
            batch = batch_for_shader(shader, "TRIS", {"pos": co.reshape(-1, 3)}, indices=tris.reshape(-1, 3))
            with gpu.matrix.push_pop(), gpu.matrix.push_pop_projection():
                gpu.matrix.load_matrix(_gl_matrix(np.array(obj.matrix_world, np.float64)))
                gpu.matrix.load_projection_matrix(_gl_matrix(view_projection))
                shader.uniform_float("color", (0.0, 0.0, 0.0, 1.0))
                batch.draw(shader)
    finally:
        gpu.state.color_mask_set(True, True, True, True)
        gpu.state.depth_mask_set(False)
        gpu.state.depth_test_set("NONE")

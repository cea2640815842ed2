"""Splats in F12 renders, with real bpy headless: the scene camera as a SplatCamera, and the
"Render Image with Splats" operator (a real Workbench render, the splats drawn offscreen by the
viewport shaders on this machine's GPU backend, Mesa llvmpipe here, composited over it).

The checks are independent of the code under test where they can be: projections against
Blender's own world_to_camera_view, splat colours against the reference rasterizer, the
background against the sRGB encoding of the world colour, the file against OpenCV's PNG decoder.
"""
from __future__ import annotations

import math
import struct
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

import avatar_capture
from avatar_capture.blender.splat_object import create_splat_object
from avatar_capture.blender.splat_render import RESULT_IMAGE, RESULT_MARKER, read_render_result, scene_camera
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.splats.camera import SplatCamera, intrinsics, look_at
from avatar_capture.core.splats.gaussians import Gaussians, make_gaussians
from avatar_capture.core.splats.render import render
from avatar_capture.core.splats.sh import rgb_to_sh_dc

WIDTH, HEIGHT = 96, 72
WORLD_COLOUR = (0.2, 0.4, 0.1)  # linear; the Workbench render's background
SPLAT_COLOUR = np.array([0.9, 0.1, 0.1])  # display (sRGB) values, as 3DGS stores them
EYE, TARGET = np.array([0.3, -4.0, 0.5]), np.zeros(3)


@pytest.fixture
def scene():
    """A factory-fresh file, add-on registered: a camera looking at the origin from -Y, a flat world
    colour, Workbench at 96x72 px with the Standard view transform (display = sRGB encoding)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    avatar_capture.register()
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    place_camera(camera, EYE, TARGET)
    scene.world = bpy.data.worlds.new("World")
    scene.world.color = WORLD_COLOUR
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = WIDTH, HEIGHT, 100
    scene.view_settings.view_transform = "Standard"
    yield scene
    avatar_capture.unregister()


def place_camera(camera: bpy.types.Object, eye: np.ndarray, target: np.ndarray) -> None:
    """Camera object at eye looking at target with world Z up (built with mathutils, not the project)."""
    camera.location = eye.tolist()
    camera.rotation_mode = "QUATERNION"
    camera.rotation_quaternion = Vector((target - eye).tolist()).to_track_quat("-Z", "Y")
    bpy.context.view_layer.update()


def red_cloud(n: int = 300, centre=(0.0, 0.0, 0.0), spread: float = 0.15, seed: int = 0) -> Gaussians:
    """A dense, nearly opaque cloud of one display colour (SH degree 0)."""
    rng = np.random.default_rng(seed)
    dc = rgb_to_sh_dc(np.tile(SPLAT_COLOUR, (n, 1)))
    return make_gaussians(rng.normal(size=(n, 3)) * spread + np.asarray(centre), rng.normal(size=(n, 4)),
                          rng.uniform(-3.2, -2.6, (n, 3)), np.full(n, 4.0), dc[:, None, :])


def srgb_encode(linear) -> np.ndarray:
    linear = np.asarray(linear, np.float64)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1.0 / 2.4) - 0.055)


def project(points: np.ndarray, camera: SplatCamera) -> np.ndarray:
    cam = points @ camera.world_to_cam[:3, :3].T + camera.world_to_cam[:3, 3]
    return (cam @ np.asarray(camera.K).T)[:, :2] / cam[:, 2:3]


def blender_pixels(scene: bpy.types.Scene, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Blender's own projection: world_to_camera_view's frame coordinates (0..1, y up) in pixels, y down."""
    frame = np.array([world_to_camera_view(scene, scene.camera, Vector(p.tolist()))[:2] for p in points])
    return np.c_[frame[:, 0] * width, (1.0 - frame[:, 1]) * height]


def result_pixels() -> np.ndarray:
    image = bpy.data.images[RESULT_IMAGE]
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(height, width, 4)[::-1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


@pytest.mark.parametrize("resolution, percentage, fit, shift, pixel_aspect", [
    ((96, 72), 100, "AUTO", (0.1, -0.05), (1.0, 1.0)),
    ((60, 90), 100, "AUTO", (-0.08, 0.12), (1.0, 1.0)),  # portrait: AUTO fits the height
    ((96, 72), 50, "VERTICAL", (0.05, 0.1), (1.0, 1.0)),
    ((80, 60), 100, "HORIZONTAL", (0.0, 0.07), (1.0, 1.5)),  # pixels 1.5x taller than wide
    ((64, 80), 100, "AUTO", (0.1, 0.0), (2.0, 1.0)),  # wide pixels make the portrait frame landscape
])
def test_scene_camera_projects_like_blender(scene, resolution, percentage, fit, shift, pixel_aspect) -> None:
    render_settings, data = scene.render, scene.camera.data
    render_settings.resolution_x, render_settings.resolution_y = resolution
    render_settings.resolution_percentage = percentage
    render_settings.pixel_aspect_x, render_settings.pixel_aspect_y = pixel_aspect
    data.sensor_fit, data.sensor_width, data.sensor_height = fit, 32.0, 20.0
    data.lens = 40.0
    data.shift_x, data.shift_y = shift
    scene.camera.scale = (1.0, 2.0, 0.5)  # Blender cameras ignore their object's scale
    bpy.context.view_layer.update()

    camera = scene_camera(scene)
    width, height = resolution[0] * percentage // 100, resolution[1] * percentage // 100
    assert (camera.width, camera.height) == (width, height)
    points = np.random.default_rng(1).uniform(-1.0, 1.0, (12, 3))
    expected = blender_pixels(scene, points, width, height)
    assert np.all((expected > -width) & (expected < 2 * width)), "points near the frame"
    np.testing.assert_allclose(project(points, camera), expected, atol=0.5)
    assert np.abs(project(points, camera) - expected).max() < 1e-3, "in fact exact up to float precision"


def test_scene_camera_equals_the_same_camera_built_from_numbers(scene) -> None:
    scene.camera.data.lens, scene.camera.data.sensor_width = 30.0, 36.0
    scene.camera.data.clip_start, scene.camera.data.clip_end = 0.2, 50.0
    scene.camera.scale = (3.0, 3.0, 3.0)
    bpy.context.view_layer.update()
    camera = scene_camera(scene)
    fov = math.degrees(2.0 * math.atan(36.0 / 2.0 / 30.0))
    np.testing.assert_allclose(camera.K, intrinsics(WIDTH, HEIGHT, fov), atol=1e-9)
    np.testing.assert_allclose(camera.world_to_cam, look_at(EYE, TARGET), atol=1e-5)
    assert (camera.near, camera.far) == pytest.approx((0.2, 50.0))


def test_world_to_cam_opencv_inverts_camera_to_world_blender() -> None:
    from avatar_capture.blender.camera import camera_to_world_blender, world_to_cam_opencv

    rng = np.random.default_rng(2)
    world_to_cam = np.stack([look_at(rng.normal(size=3) * 3.0, rng.normal(size=3)) for _ in range(5)])
    blender = camera_to_world_blender(world_to_cam)
    np.testing.assert_allclose(world_to_cam_opencv(blender), world_to_cam, atol=1e-9)
    blender[:, :3, :3] *= np.array([2.0, 0.5, 3.0])  # scaled camera objects: the view is the same
    np.testing.assert_allclose(world_to_cam_opencv(blender), world_to_cam, atol=1e-9)


def test_cameras_splats_cannot_use_are_refused(scene) -> None:
    scene.camera.data.type = "ORTHO"
    with pytest.raises(AvatarCaptureError, match="orthographic"):
        scene_camera(scene)
    scene.camera.data.type = "PANO"
    with pytest.raises(AvatarCaptureError, match="panoramic"):
        scene_camera(scene)
    scene.camera.data.type = "PERSP"
    scene.render.use_multiview = True
    with pytest.raises(AvatarCaptureError, match="Stereoscopy"):
        scene_camera(scene)
    empty = bpy.data.objects.new("Empty", None)
    scene.collection.objects.link(empty)
    scene.camera = empty
    with pytest.raises(AvatarCaptureError, match="the scene camera 'Empty' is not a camera"):
        scene_camera(scene)


def test_render_with_splats_composites_splats_over_the_render(scene) -> None:
    g = red_cloud()
    create_splat_object(g, "Cloud")
    bpy.context.view_layer.update()
    assert bpy.ops.avatar.render_with_splats() == {"FINISHED"}
    out = result_pixels()
    assert out.shape == (HEIGHT, WIDTH, 4)
    rendered = read_render_result(scene)  # the plain render the operator composited over

    camera = scene_camera(scene)
    reference = render(g, camera, backend="cpu")
    covered, empty = reference.alpha > 0.99, reference.alpha < 1e-3
    assert covered.sum() > 30 and empty.sum() > 3000
    background = srgb_encode(WORLD_COLOUR)
    np.testing.assert_allclose(rendered[empty][:, :3], np.tile(background, (empty.sum(), 1)), atol=2.5 / 255)
    np.testing.assert_allclose(out[empty], rendered[empty], atol=1e-6)  # the render, untouched
    np.testing.assert_allclose(out[covered][:, :3], np.tile(SPLAT_COLOUR, (covered.sum(), 1)), atol=0.02)
    expected = reference.colour + (1.0 - reference.alpha[..., None]) * rendered[..., :3]
    assert psnr(out[..., :3], expected) >= 30.0
    assert np.abs(out[..., 3] - (reference.alpha + (1.0 - reference.alpha) * rendered[..., 3])).max() < 0.02
    assert bpy.data.images[RESULT_IMAGE].colorspace_settings.name == "Non-Color"


def test_a_render_region_crops_the_camera_or_bounds_the_splats(scene) -> None:
    g = red_cloud(400, spread=0.35)
    create_splat_object(g, "Cloud")
    full_frame = scene_camera(scene)
    settings = scene.render
    settings.use_border, settings.use_crop_to_border = True, True
    settings.border_min_x, settings.border_max_x, settings.border_min_y, settings.border_max_y = 0.3, 0.55, 0.25, 0.8
    left, right = int(0.3 * WIDTH), int(0.55 * WIDTH)  # Blender truncates; y counts from the bottom
    top, bottom = HEIGHT - int(0.8 * HEIGHT), HEIGHT - int(0.25 * HEIGHT)

    cropped = scene_camera(scene)
    assert (cropped.width, cropped.height) == (right - left, bottom - top)
    points = np.random.default_rng(3).uniform(-0.5, 0.5, (8, 3))
    np.testing.assert_allclose(project(points, cropped), blender_pixels(scene, points, WIDTH, HEIGHT) - [left, top],
                               atol=1e-3)
    bpy.ops.avatar.render_with_splats()
    out, rendered = result_pixels(), read_render_result(scene)
    assert out.shape == (bottom - top, right - left, 4)
    reference = render(g, cropped, backend="cpu")
    assert reference.alpha.max() > 0.99
    expected = reference.colour + (1.0 - reference.alpha[..., None]) * rendered[..., :3]
    assert psnr(out[..., :3], expected) >= 30.0

    settings.use_crop_to_border = False  # full frame, rendered only inside the region: splats too
    bpy.ops.avatar.render_with_splats()
    out, rendered = result_pixels(), read_render_result(scene)
    alpha = render(g, full_frame, backend="cpu").alpha
    outside = np.ones_like(alpha, bool)
    outside[top:bottom, left:right] = False
    assert alpha[outside].max() > 0.99 and alpha[~outside].max() > 0.99, "the cloud crosses the region's edge"
    np.testing.assert_allclose(out[outside], rendered[outside], atol=1e-6)
    assert np.abs(out[~outside] - rendered[~outside]).max() > 0.3


def test_splat_size_applies_and_a_new_render_replaces_the_result(scene) -> None:
    create_splat_object(red_cloud(80, spread=0.3), "Cloud")
    bpy.ops.avatar.render_with_splats()
    normal = result_pixels()
    scene.avatar_splats.scale = 2.0
    bpy.ops.avatar.render_with_splats()
    bigger = result_pixels()
    red = lambda image: (image[..., 0] - image[..., 1] > 0.3).sum()  # noqa: E731
    assert red(bigger) > red(normal) * 1.2

    # A new render replaces the previous result wherever it is used (here: a texture).
    texture = bpy.data.textures.new("Shows the result", "IMAGE")
    texture.image = bpy.data.images[RESULT_IMAGE]
    scene.render.resolution_percentage = 50
    bpy.ops.avatar.render_with_splats()
    assert [image.name for image in bpy.data.images if image.type != "RENDER_RESULT"] == [RESULT_IMAGE]
    assert texture.image == bpy.data.images[RESULT_IMAGE]
    assert tuple(bpy.data.images[RESULT_IMAGE].size) == (WIDTH // 2, HEIGHT // 2)
    assert red(result_pixels()) > 0
    # An image of that name that is not a result (no marker) is the user's: it stays.
    del bpy.data.images[RESULT_IMAGE][RESULT_MARKER]
    bpy.ops.avatar.render_with_splats()
    assert sorted(image.name for image in bpy.data.images if image.type != "RENDER_RESULT") == \
        [RESULT_IMAGE, RESULT_IMAGE + ".001"]
    assert texture.image.name == RESULT_IMAGE


def test_undo_keeps_the_result_until_the_render_itself_is_undone(scene) -> None:
    create_splat_object(red_cloud(), "Cloud")
    bpy.ops.ed.undo_push(message="before")
    assert bpy.ops.avatar.render_with_splats("EXEC_DEFAULT", True) == {"FINISHED"}  # undo=True: as from the UI
    rendered = result_pixels().copy()
    scene.camera.location.z += 1.0
    bpy.ops.ed.undo_push(message="a later edit")
    bpy.ops.ed.undo()
    np.testing.assert_array_equal(result_pixels(), rendered)  # the pixels survive undo (they are packed)
    bpy.ops.ed.undo()
    assert RESULT_IMAGE not in bpy.data.images, "undoing the render removes its image"
    bpy.ops.ed.redo()
    np.testing.assert_array_equal(result_pixels(), rendered)


def test_geometry_in_front_hides_the_splats_also_when_deformed(scene) -> None:
    g = red_cloud(400, spread=0.3)
    create_splat_object(g, "Cloud")
    bpy.ops.mesh.primitive_plane_add(size=1.2, location=(-0.6, 1.5, 0.0), rotation=(math.radians(90.0), 0, 0))
    plane = bpy.context.active_object  # behind the cloud, left half of the view
    bpy.ops.avatar.render_with_splats()
    unhidden = result_pixels()
    # A Displace modifier moves the plane 3 m towards the camera: only the evaluated mesh is in front.
    displace = plane.modifiers.new("Forward", "DISPLACE")
    displace.direction, displace.space, displace.mid_level, displace.strength = "Y", "GLOBAL", 0.0, -3.0
    bpy.context.view_layer.update()
    bpy.ops.avatar.render_with_splats()
    hidden = result_pixels()
    rendered = read_render_result(scene)

    camera = scene_camera(scene)
    corners = project(np.array([[-1.2, -1.5, -0.6], [0.0, -1.5, 0.6]]), camera)  # the moved plane's extent
    x0, x1 = np.sort(corners[:, 0]).astype(int)
    y0, y1 = np.sort(corners[:, 1]).astype(int)
    inside = (slice(max(y0, 0) + 1, y1 - 1), slice(max(x0, 0) + 1, x1 - 1))
    reference = render(g, camera, backend="cpu").alpha
    assert reference[inside].max() > 0.9, "the cloud is there behind the plane"
    assert np.abs(unhidden[inside] - rendered[inside]).max() > 0.3, "the splats show before the plane moves"
    np.testing.assert_allclose(hidden[inside], rendered[inside], atol=1e-6)  # only the render
    right = (slice(None), slice(x1 + 2, None))
    assert np.abs(hidden[right] - rendered[right]).max() > 0.3, "splats outside the plane still show"


def test_missing_camera_no_splats_and_no_gpu_are_clear_errors(scene, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="view layer 'ViewLayer' has no splat object that renders"):
        bpy.ops.avatar.render_with_splats()
    cloud = create_splat_object(red_cloud(50), "Cloud")
    cloud.hide_render = True
    with pytest.raises(RuntimeError, match="no splat object that renders"):
        bpy.ops.avatar.render_with_splats()
    cloud.hide_render = False

    bpy.context.view_layer.objects.active = cloud
    bpy.ops.object.mode_set(mode="EDIT")
    with pytest.raises(RuntimeError, match="'Cloud' is in Edit Mode"):
        bpy.ops.avatar.render_with_splats()
    bpy.ops.object.mode_set(mode="OBJECT")
    assert RESULT_IMAGE not in bpy.data.images

    camera, scene.camera = scene.camera, None
    with pytest.raises(RuntimeError, match="scene 'Scene' has no camera") as error:
        bpy.ops.avatar.render_with_splats()
    assert "Traceback" not in str(error.value)
    assert RESULT_IMAGE not in bpy.data.images
    scene.camera = camera

    from avatar_capture.blender import splat_gpu

    monkeypatch.setattr(splat_gpu, "gpu_unavailable_reason", lambda: "no GPU backend (TEST)")
    with pytest.raises(RuntimeError, match=r"cannot draw splats offscreen: no GPU backend \(TEST\)"):
        bpy.ops.avatar.render_with_splats()
    assert RESULT_IMAGE not in bpy.data.images


def test_the_composite_is_written_as_a_png_of_the_render_size(scene, tmp_path: Path) -> None:
    import cv2

    g = red_cloud()
    create_splat_object(g, "Cloud")
    scene.render.film_transparent = True  # a semi-transparent composite: the file's alpha must be right
    # A grey plane on the right, away from the splats: its anti-aliased edges are semi-transparent.
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(1.2, 0.0, 0.0), rotation=(math.radians(90.0), 0, 0.3))
    settings = scene.render.image_settings
    settings.file_format, settings.color_depth = "JPEG", "8"
    leftovers = set(Path(tempfile.gettempdir()).glob("avatar_capture_render_*"))
    path = tmp_path / "still.png"
    assert bpy.ops.avatar.render_with_splats(filepath=str(path)) == {"FINISHED"}

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["still.png"], "no staging folder left"
    assert set(Path(tempfile.gettempdir()).glob("avatar_capture_render_*")) == leftovers, "temp file removed"
    assert (settings.file_format, settings.color_depth) == ("JPEG", "8"), "the output format is restored"

    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (HEIGHT, WIDTH, 4)
    straight = decoded[..., [2, 1, 0, 3]].astype(np.float64) / np.iinfo(decoded.dtype).max
    out = result_pixels()
    alpha = out[..., 3]
    assert alpha.min() < 0.01 and alpha.max() > 0.99, "transparent background, opaque splats"
    np.testing.assert_allclose(straight[..., 3], alpha, atol=1e-3)
    solid = alpha > 0.05
    np.testing.assert_allclose(straight[solid][:, :3], out[solid][:, :3] / alpha[solid][:, None], atol=5e-3)

    # Where no splat is, the composite is the render, premultiplied: decode the render independently.
    rendered_path = tmp_path / "rendered.png"
    settings.file_format, settings.color_depth, settings.color_mode = "PNG", "16", "RGBA"
    bpy.data.images["Render Result"].save_render(str(rendered_path), scene=scene)
    rendered = cv2.imread(str(rendered_path), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3]] / 65535.0
    no_splats = render(g, scene_camera(scene), backend="cpu").alpha < 1e-5
    edge = no_splats & (rendered[..., 3] > 0.2) & (rendered[..., 3] < 0.8)
    assert edge.sum() >= 3, "the plane's edges are partly transparent"
    np.testing.assert_allclose(out[no_splats][:, 3], rendered[no_splats][:, 3], atol=1e-4)
    np.testing.assert_allclose(out[edge][:, :3], rendered[edge][:, :3] * rendered[edge][:, 3:], atol=1e-4)

    with pytest.raises(RuntimeError, match="give a .png file name"):
        bpy.ops.avatar.render_with_splats(filepath=str(tmp_path / "still.jpg"))
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.avatar.render_with_splats(filepath=str(tmp_path / "missing" / "still.png"))


def test_the_splats_panel_offers_the_render(scene) -> None:
    from test_ui import RecordingLayout

    from avatar_capture.panels.splats import VIEW3D_PT_avatar_splats

    drawn: list = []
    context = SimpleNamespace(scene=scene, view_layer=bpy.context.view_layer,
                              region=SimpleNamespace(width=300), preferences=bpy.context.preferences)
    VIEW3D_PT_avatar_splats.draw(SimpleNamespace(layout=RecordingLayout(drawn)), context)
    operators = [args[0] for name, args, _ in drawn if name == "operator"]
    assert "avatar.render_with_splats" in operators
    labels = " ".join(kwargs.get("text", "") for name, _, kwargs in drawn if name == "label")
    assert "Render Image with Splats" in labels and "viewport only" not in labels

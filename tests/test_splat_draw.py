"""The splat viewport shaders and draw handler with real bpy, drawing offscreen on the GPU backend
this machine has (Mesa llvmpipe here), checked against the reference rasterizer.

The offscreen path (render_offscreen) and the viewport draw handler (draw_view) share the draw
call, so what is checked here is what users see: the same projection and colour as the
reference (PSNR >= 30 dB), skinning that follows a posed bone, object transforms, visibility,
several objects, meshes hiding the splats behind them, sorting off the main thread, and a GPU
failure that turns drawing off with a message instead of an exception per redraw.
"""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

import bpy

import avatar_capture
from avatar_capture.blender import splat_draw, splat_gpu
from avatar_capture.blender.splat_object import bind_to_armature, create_splat_object
from avatar_capture.blender.splat_offscreen import projection_matrix, render_offscreen, view_matrix
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.splats.camera import SplatCamera, framing_camera, intrinsics, look_at
from avatar_capture.core.splats.gaussians import Gaussians, SplatSkin, make_gaussians
from avatar_capture.core.splats.render import render
from avatar_capture.core.splats.skinning import skin_gaussians
from avatar_capture.core.splats.transforms import transform_gaussians
from shared_media import REAL_SPLAT_PLY



def random_cloud(n: int, degree: int, seed: int, centre=(0.0, 0.0, 0.0), spread: float = 0.3,
                 skin: SplatSkin | None = None) -> Gaussians:
    rng = np.random.default_rng(seed)
    return make_gaussians(rng.normal(size=(n, 3)) * spread + np.asarray(centre), rng.normal(size=(n, 4)),
                          rng.uniform(-4.0, -2.5, (n, 3)), rng.normal(0.5, 1.0, n),
                          rng.normal(size=(n, (degree + 1) ** 2, 3)) * 0.4, skin=skin)


def reference_rgba(g: Gaussians, camera: SplatCamera, sh_degree: int | None = None) -> np.ndarray:
    out = render(g, camera, sh_degree=sh_degree, backend="cpu")
    return np.dstack([out.colour, out.alpha]).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def project(points_world: np.ndarray, camera: SplatCamera) -> np.ndarray:
    cam = points_world @ camera.world_to_cam[:3, :3].T + camera.world_to_cam[:3, 3]
    return (cam @ np.asarray(camera.K).T)[:, :2] / cam[:, 2:3]


def alpha_centroid(image: np.ndarray) -> np.ndarray:
    """(x, y) pixel centroid of the alpha channel (OpenCV pixel coordinates, centres at +0.5)."""
    alpha = image[..., 3]
    ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]] + 0.5
    return np.array([(xs * alpha).sum(), (ys * alpha).sum()]) / alpha.sum()


def one_bone_armature(name: str = "Arm", head=(0.0, 0.0, 0.0), location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    """An armature object at location with one deform bone 'bone' from head up 1 m along +Z."""
    armature = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    armature.location = location
    bpy.context.scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    bone = armature.data.edit_bones.new("bone")
    bone.head, bone.tail = head, (head[0], head[1], head[2] + 1.0)
    bpy.ops.object.mode_set(mode="OBJECT")
    return armature


def test_random_cloud_matches_reference_rasterizer(fresh_addon) -> None:
    g = random_cloud(300, degree=3, seed=1)
    camera = framing_camera(g.means, 96, 72)
    image = render_offscreen(g, camera)
    assert image.shape == (72, 96, 4) and image.dtype == np.float32
    reference = reference_rgba(g, camera)
    assert reference[..., 3].max() > 0.5, "the reference sees the cloud"
    assert psnr(image[..., :3], reference[..., :3]) >= 30.0
    assert psnr(image[..., 3], reference[..., 3]) >= 30.0
    # The quality control caps the SH bands exactly like the reference's sh_degree.
    flat = render_offscreen(g, camera, sh_degree=0)
    assert psnr(flat[..., :3], reference_rgba(g, camera, sh_degree=0)[..., :3]) >= 30.0
    assert psnr(flat[..., :3], image[..., :3]) < 40.0, "degree 0 should look different from degree 3"


def test_off_centre_principal_point_and_non_square_focal(fresh_addon) -> None:
    g = random_cloud(200, degree=1, seed=2)
    K = intrinsics(80, 60, 50.0)
    K[0, 2], K[1, 2], K[1, 1] = 30.0, 35.0, K[1, 1] * 1.2
    camera = SplatCamera(K, look_at(np.array([0.3, -2.5, 0.6]), np.zeros(3)), 80, 60)
    assert psnr(render_offscreen(g, camera), reference_rgba(g, camera)) >= 30.0


@pytest.mark.skipif(not REAL_SPLAT_PLY.exists(), reason="shared media not available")
def test_real_ply_matches_reference_rasterizer(fresh_addon) -> None:
    from avatar_capture.core.splats.ply import read_ply

    g = read_ply(REAL_SPLAT_PLY)
    camera = framing_camera(g.means, 160, 160)
    image = render_offscreen(g, camera)
    reference = reference_rgba(g, camera)
    assert reference[..., 3].mean() > 0.05, "the framing camera sees the model"
    assert psnr(image[..., :3], reference[..., :3]) >= 30.0


def test_projection_matches_the_opencv_pixel_grid() -> None:
    camera = SplatCamera(intrinsics(64, 48, 60.0), look_at(np.array([0.0, -3.0, 1.0]), np.zeros(3)), 64, 48)
    points = np.array([[0.0, 0.0, 0.0], [0.4, 0.2, -0.3], [-0.5, 0.1, 0.4]])
    clip = (projection_matrix(camera) @ view_matrix(camera) @ np.c_[points, np.ones(3)].T).T
    ndc = clip[:, :3] / clip[:, 3:]
    pixels = np.c_[(ndc[:, 0] + 1.0) * 32.0, (1.0 - ndc[:, 1]) * 24.0]
    np.testing.assert_allclose(pixels, project(points, camera), atol=1e-6)
    assert np.all(np.abs(ndc[:, 2]) < 1.0)


def test_object_transform_is_honoured(fresh_addon) -> None:
    g = random_cloud(200, degree=1, seed=3)
    obj = create_splat_object(g, "Moved")
    obj.location = (0.6, 0.4, 0.2)
    obj.rotation_euler = (0.3, 0.0, 1.1)
    obj.scale = (1.5, 1.5, 1.5)
    bpy.context.view_layer.update()
    moved = transform_gaussians(g, np.array(obj.matrix_world))
    camera = framing_camera(moved.means, 96, 72)
    image = render_offscreen(obj, camera)
    assert psnr(image, reference_rgba(moved, camera)) >= 30.0
    assert psnr(image, render_offscreen(g, camera)) < 25.0, "the transform must change the image"


def test_skinned_cloud_follows_a_bone_rotation(fresh_addon) -> None:
    n = 150
    skin = SplatSkin(("bone",), np.array([-1]), np.eye(4)[None], np.zeros((n, 4), np.int32),
                     np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)))
    g = random_cloud(n, degree=1, seed=4, centre=(0.3, 0.1, 1.0), spread=0.08, skin=skin)
    armature = one_bone_armature(head=(0.1, 0.1, 0.2), location=(0.2, 0.0, 0.0))  # bone root at (0.3, 0.1, 0.2)
    obj = create_splat_object(g, "Skinned")
    bind_to_armature(obj, armature)
    pose_bone = armature.pose.bones["bone"]
    pose_bone.rotation_mode = "XYZ"
    pose_bone.rotation_euler = (math.radians(90.0), 0.0, 0.0)  # the cloud swings about the bone root
    bpy.context.view_layer.update()

    from blender_probe import evaluated_vertices

    deformed = evaluated_vertices(obj)  # Blender's own Armature modifier result
    assert np.linalg.norm(deformed.mean(axis=0) - g.means.mean(axis=0)) > 0.5
    camera = SplatCamera(intrinsics(96, 96, 60.0), look_at(np.array([3.0, 0.0, 0.4]), np.array([0.0, 0.0, 0.4])),
                         96, 96)
    image = render_offscreen(obj, camera)
    assert image[..., 3].sum() > 5.0
    np.testing.assert_allclose(alpha_centroid(image), project(deformed, camera).mean(axis=0), atol=2.0)
    rest_pixel = np.round(project(g.means.mean(axis=0)[None], camera)[0]).astype(int)
    assert image[rest_pixel[1], rest_pixel[0], 3] < 0.01, "nothing stays at the rest position"

    posed_bone_to_object = np.linalg.inv(np.array(obj.matrix_world)) @ np.array(armature.matrix_world) \
        @ np.array(pose_bone.matrix)
    world = transform_gaussians(skin_gaussians(gaussians_of(obj), posed_bone_to_object[None]),
                                np.array(obj.matrix_world))
    assert psnr(image, reference_rgba(world, camera)) >= 30.0


def gaussians_of(obj: bpy.types.Object) -> Gaussians:
    from avatar_capture.blender.splat_object import gaussians_from_object

    return gaussians_from_object(obj)


def test_a_mesh_in_front_hides_the_splats_behind_it(fresh_addon) -> None:
    g = random_cloud(300, degree=0, seed=5, spread=0.25)
    camera = SplatCamera(intrinsics(80, 80, 50.0), look_at(np.array([0.0, -3.0, 0.0]), np.zeros(3)), 80, 80)
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(-0.5, -1.0, 0.0), rotation=(math.radians(90.0), 0, 0))
    in_front = bpy.context.active_object  # covers the left half of the view (x < 0), between camera and cloud
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(-0.5, 1.0, 0.0), rotation=(math.radians(90.0), 0, 0))
    behind = bpy.context.active_object

    plain = render_offscreen(g, camera)
    hidden = render_offscreen(g, camera, occluders=[in_front])
    corners = project(np.array([[-1.0, -1.0, -0.5], [0.0, -1.0, 0.5]]), camera)  # the plane's extent
    x0, x1 = np.clip(np.sort(corners[:, 0]), 0, 80).astype(int)
    y0, y1 = np.clip(np.sort(corners[:, 1]), 0, 80).astype(int)
    assert plain[y0 + 1:y1 - 1, x0 + 1:x1 - 1, 3].max() > 0.3, "the cloud shows there without the plane"
    assert hidden[y0 + 1:y1 - 1, x0 + 1:x1 - 1, 3].max() == 0.0
    right = slice(x1 + 2, None)
    np.testing.assert_allclose(hidden[:, right], plain[:, right], atol=1e-6)
    np.testing.assert_allclose(render_offscreen(g, camera, occluders=[behind]), plain, atol=1e-6)



def test_occluders_without_faces_hide_nothing_and_do_not_fail(fresh_addon) -> None:
    """Render Image with Splats passes every render-visible mesh/curve: empty ones are common."""
    g = random_cloud(60, degree=0, seed=21)
    camera = framing_camera(g.means, 24, 24)
    points = bpy.data.meshes.new("Points")
    points.vertices.add(3)
    empty_curve = bpy.data.curves.new("EmptyCurve", "CURVE")  # to_mesh() gives None
    occluders = [bpy.data.objects.new(name, data) for name, data in
                 (("Points", points), ("EmptyMesh", bpy.data.meshes.new("EmptyMesh")), ("EmptyCurve", empty_curve))]
    for obj in occluders:
        bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.update()
    np.testing.assert_array_equal(render_offscreen(g, camera, occluders=occluders), render_offscreen(g, camera))

def draw_offscreen(camera: SplatCamera, view_id: int = 1, scene: bpy.types.Scene | None = None) -> np.ndarray:
    """One redraw of the viewport draw handler's drawing code into an offscreen buffer (a window showing
    scene, default the context's)."""
    import gpu

    from avatar_capture.blender.splat_offscreen import buffer_to_array, ensure_gpu

    ensure_gpu()
    context = SimpleNamespace(scene=bpy.context.scene, view_layer=bpy.context.view_layer, space_data=None) \
        if scene is None else SimpleNamespace(scene=scene, view_layer=scene.view_layers[0], space_data=None)
    offscreen = gpu.types.GPUOffScreen(camera.width, camera.height, format="RGBA32F")
    try:
        with offscreen.bind():
            gpu.state.active_framebuffer_get().clear(color=(0.0, 0.0, 0.0, 0.0), depth=1.0)
            splat_draw.draw_view_guarded(context, view_matrix(camera), projection_matrix(camera),
                                         camera.width, camera.height, view_id, linear_output=False)
            pixels = buffer_to_array(offscreen.texture_color.read())
    finally:
        offscreen.free()
    return pixels[::-1]


def wait_for_sorts(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for entry in splat_draw._entries.values():
        for state in entry.views.values():
            while state.pending is not None and not state.pending.done():
                assert time.monotonic() < deadline, "sort did not finish"
                time.sleep(0.005)


def test_draw_handler_draws_visible_objects_sorted_off_thread(fresh_addon) -> None:
    assert splat_draw.is_registered()
    bpy.context.scene.avatar_splats.sh_degree = 3
    left = create_splat_object(random_cloud(200, degree=2, seed=6, centre=(-0.7, 0.0, 0.0), spread=0.2), "Left")
    right = create_splat_object(random_cloud(200, degree=2, seed=7, centre=(0.7, 0.0, 0.0), spread=0.2), "Right")
    hidden = create_splat_object(random_cloud(100, degree=0, seed=8, centre=(0.0, 0.0, 0.6), spread=0.1), "Hidden")
    bpy.context.view_layer.update()
    hidden.hide_set(True)
    both = [gaussians_of(left), gaussians_of(right)]
    camera = framing_camera(np.concatenate([x.means for x in both]), 128, 64)

    first = draw_offscreen(camera)  # unsorted upload order while the worker sorts
    pending = [s.pending for e in splat_draw._entries.values() for s in e.views.values()]
    assert len(pending) == 2 and all(p is not None for p in pending), "a sort was started per visible object"
    assert bpy.app.timers.is_registered(splat_draw._poll_sorts), "a timer will ask for the redraw"
    wait_for_sorts()
    assert splat_draw._poll_sorts() is None, "the timer stops once every sort is done"
    sorted_image = draw_offscreen(camera)  # picks up the finished sorts
    assert first[..., 3].sum() > 1.0
    assert psnr(sorted_image, render_offscreen([left, right], camera)) >= 50.0
    assert psnr(sorted_image, reference_rgba(merge(both), camera)) >= 30.0

    entries = {name: entry.cloud for name, entry in splat_draw._entries.items()}
    assert set(entries) == {"Left", "Right"}, "the hidden object is not drawn"
    draw_offscreen(camera)  # static view: no new sort, no re-upload
    assert all(s.pending is None for e in splat_draw._entries.values() for s in e.views.values())
    assert {name: entry.cloud for name, entry in splat_draw._entries.items()} == entries

    turned = SplatCamera(camera.K, camera.world_to_cam @ np.array(
        [[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]), 128, 64)
    draw_offscreen(turned)  # the view direction changed: new sorts start, data stays
    assert all(s.pending is not None for e in splat_draw._entries.values() for s in e.views.values())
    wait_for_sorts()

    bpy.context.scene.avatar_splats.scale = 2.0
    assert draw_offscreen(camera)[..., 3].sum() > sorted_image[..., 3].sum() * 1.2, "bigger splats cover more"


def merge(clouds: list[Gaussians]) -> Gaussians:
    fields = ("means", "rotations", "log_scales", "logit_opacities", "sh")
    return make_gaussians(*(np.concatenate([getattr(g, f) for g in clouds]) for f in fields))


def cloud_on_one_bone(n: int, seed: int) -> tuple[bpy.types.Object, bpy.types.Object]:
    """A splat object of n splats, all weighted to the single bone of one_bone_armature(), bound to it."""
    skin = SplatSkin(("bone",), np.array([-1]), np.eye(4)[None], np.zeros((n, 4), np.int32),
                     np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)))
    obj = create_splat_object(random_cloud(n, degree=0, seed=seed, centre=(0, 0, 0.5), spread=0.1, skin=skin),
                              "Cloud")
    armature = one_bone_armature()
    bind_to_armature(obj, armature)
    return obj, armature


def test_mesh_edits_rebuild_the_gpu_data_and_poses_do_not(fresh_addon) -> None:
    obj, armature = cloud_on_one_bone(80, seed=9)
    bpy.context.view_layer.update()
    camera = framing_camera(gaussians_of(obj).means, 64, 64)
    draw_offscreen(camera)
    cloud = splat_draw._entries["Cloud"].cloud

    armature.pose.bones["bone"].rotation_mode = "XYZ"
    armature.pose.bones["bone"].rotation_euler = (0.4, 0.0, 0.0)
    bpy.context.view_layer.update()
    draw_offscreen(camera)
    assert splat_draw._entries["Cloud"].cloud is cloud, "posing must not re-upload the cloud"
    assert any(s.pending is not None for s in splat_draw._entries["Cloud"].views.values()), "posing re-sorts"

    obj.data.vertices[0].co.x += 0.05
    obj.data.update()
    bpy.context.view_layer.update()
    draw_offscreen(camera)
    assert splat_draw._entries["Cloud"].cloud is not cloud
    wait_for_sorts()



def test_linked_duplicates_both_see_an_edit_of_their_shared_mesh(fresh_addon) -> None:
    """Two objects showing one mesh (Alt+D): an edit must rebuild both clouds, not just the first drawn."""
    first = create_splat_object(random_cloud(40, degree=0, seed=17), "First")
    second = bpy.data.objects.new("Second", first.data)
    for key in ("avatar_capture_splats", "avatar_capture_splat_sh_degree"):
        second[key] = first[key]
    bpy.context.scene.collection.objects.link(second)
    bpy.context.view_layer.update()
    camera = framing_camera(gaussians_of(first).means, 32, 32)
    draw_offscreen(camera)
    first.data.vertices[0].co.x += 0.5
    first.data.update()
    bpy.context.view_layer.update()
    draw_offscreen(camera)
    for name in ("First", "Second"):
        assert splat_draw._entries[name].gaussians.means[0, 0] == np.float32(first.data.vertices[0].co.x), name
    wait_for_sorts()


def test_a_closed_viewport_is_forgotten_even_with_a_sort_in_flight(fresh_addon) -> None:
    from concurrent.futures import Future

    create_splat_object(random_cloud(40, degree=0, seed=18), "Cloud")
    bpy.context.view_layer.update()
    camera = framing_camera(gaussians_of(bpy.data.objects["Cloud"]).means, 32, 32)
    draw_offscreen(camera, view_id=1)
    wait_for_sorts()
    closed = splat_draw._entries["Cloud"].views[1]
    closed.pending = Future()  # still sorting when its viewport closed: it never finishes being drawn
    closed.used -= splat_draw._VIEW_EXPIRY_SECONDS + 1.0
    draw_offscreen(camera, view_id=2)
    assert set(splat_draw._entries["Cloud"].views) == {2}
    wait_for_sorts()


def test_a_damaged_skin_property_skips_that_object_only(fresh_addon) -> None:
    good = create_splat_object(random_cloud(40, degree=0, seed=19), "Good")
    bad = create_splat_object(random_cloud(40, degree=0, seed=20, centre=(0.5, 0.0, 0.0)), "Bad")
    bad["avatar_capture_splat_skin"] = {"bone_names": ["bone"]}  # edited by hand: parents and rest lost
    bpy.context.view_layer.update()
    draw_offscreen(framing_camera(gaussians_of(good).means, 32, 32))
    wait_for_sorts()
    assert splat_gpu.disabled_reason is None, "one damaged object must not stop the others"
    assert set(splat_draw.problems) == {"Bad"} and "damaged" in splat_draw.problems["Bad"]
    assert set(splat_draw._entries) == {"Good"}


def test_windows_on_two_scenes_keep_both_clouds_and_deleted_or_renamed_objects_are_forgotten(fresh_addon) -> None:
    """Each window draws its own scene: neither may drop (and so re-upload every redraw) the other's cloud."""
    here = create_splat_object(random_cloud(40, degree=0, seed=22), "Here")
    other_scene = bpy.data.scenes.new("Other")
    there = create_splat_object(random_cloud(40, degree=0, seed=23), "There", other_scene.collection)
    for view_layer in (bpy.context.view_layer, other_scene.view_layers[0]):
        view_layer.update()  # what Blender does for each window's view layer before it redraws
    camera = framing_camera(gaussians_of(here).means, 24, 24)
    draw_offscreen(camera)
    draw_offscreen(camera, scene=other_scene)
    clouds = {name: entry.cloud for name, entry in splat_draw._entries.items()}
    assert set(clouds) == {"Here", "There"}
    draw_offscreen(camera)
    draw_offscreen(camera, scene=other_scene)
    assert {name: entry.cloud for name, entry in splat_draw._entries.items()} == clouds, "nothing re-uploaded"

    bpy.data.objects.remove(there)
    here.name = "Renamed"
    draw_offscreen(camera)
    assert set(splat_draw._entries) == {"Renamed"}
    wait_for_sorts()


def test_undo_of_a_mesh_edit_draws_the_restored_cloud(fresh_addon) -> None:
    """Undo keeps the mesh's address (same data key) but reports its geometry update: the cloud is re-read."""
    obj = create_splat_object(random_cloud(40, degree=0, seed=24), "Cloud")
    bpy.context.view_layer.update()
    before = float(obj.data.vertices[0].co.x)
    bpy.ops.ed.undo_push(message="created")
    camera = framing_camera(gaussians_of(obj).means, 24, 24)
    obj.data.vertices[0].co.x += 0.5
    obj.data.update()
    bpy.context.view_layer.update()
    bpy.ops.ed.undo_push(message="moved")
    draw_offscreen(camera)
    assert splat_draw._entries["Cloud"].gaussians.means[0, 0] == np.float32(before + 0.5)
    bpy.ops.ed.undo()
    bpy.context.view_layer.update()
    draw_offscreen(camera)
    assert splat_draw._entries["Cloud"].gaussians.means[0, 0] == np.float32(before)
    wait_for_sorts()


def test_edit_mode_keeps_drawing_the_cloud_and_leaving_it_uploads_the_edits(fresh_addon) -> None:
    """In Edit Mode the mesh's attributes cannot be read: entering it must not turn drawing off."""
    import bmesh

    obj = create_splat_object(random_cloud(40, degree=0, seed=25), "Cloud")
    bpy.context.view_layer.objects.active = obj
    bpy.context.view_layer.update()
    camera = framing_camera(gaussians_of(obj).means, 24, 24)
    draw_offscreen(camera)
    wait_for_sorts()
    before = draw_offscreen(camera)  # sorted
    cloud = splat_draw._entries["Cloud"].cloud
    bpy.ops.object.mode_set(mode="EDIT")
    edit = bmesh.from_edit_mesh(obj.data)
    edit.verts.ensure_lookup_table()
    edit.verts[0].co.x += 1.0
    bmesh.update_edit_mesh(obj.data)
    bpy.context.view_layer.update()
    np.testing.assert_array_equal(draw_offscreen(camera), before)
    assert splat_gpu.disabled_reason is None and not splat_draw.problems
    assert splat_draw._entries["Cloud"].cloud is cloud, "no re-read per edit step"
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.update()
    draw_offscreen(camera)
    assert splat_draw._entries["Cloud"].gaussians.means[0, 0] == np.float32(obj.data.vertices[0].co.x)
    wait_for_sorts()

def test_depth_order_sorts_back_to_front_and_skinned_depth_follows_the_pose() -> None:
    rng = np.random.default_rng(10)
    depth = rng.normal(size=5000).astype(np.float32)
    order = splat_draw.depth_order(depth)
    assert np.all(np.diff(depth[order]) >= 0.0)
    assert np.array_equal(splat_draw.depth_order(np.ones(4)), np.arange(4))

    n = 500
    indices = rng.integers(0, 3, (n, 4)).astype(np.int32)
    weights = rng.dirichlet(np.ones(4), n).astype(np.float32)
    skin = SplatSkin(("a", "b", "c"), np.array([-1, 0, 1]), np.tile(np.eye(4), (3, 1, 1)), indices, weights)
    g = random_cloud(n, degree=0, seed=11, skin=skin)
    posed = np.tile(np.eye(4), (3, 1, 1))
    for b, angle in enumerate((0.3, -0.8, 1.4)):
        c, s = math.cos(angle), math.sin(angle)
        posed[b, :3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        posed[b, :3, 3] = rng.normal(size=3)
    model_view = np.array(view_matrix(framing_camera(g.means, 64, 64)))
    expected = skin_gaussians(g, posed).means @ model_view[2, :3] + model_view[2, 3]
    np.testing.assert_allclose(splat_draw.view_depth(g, model_view, posed), expected, atol=1e-4)
    np.testing.assert_allclose(splat_draw.view_depth(g, model_view, None),
                               g.means @ model_view[2, :3] + model_view[2, 3], atol=1e-4)


def test_a_gpu_failure_turns_drawing_off_with_a_message(fresh_addon, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_ui import RecordingLayout

    from avatar_capture.panels.splats import VIEW3D_PT_avatar_splats

    create_splat_object(random_cloud(50, degree=0, seed=12), "Cloud")
    bpy.context.view_layer.update()  # what the UI's event loop does before a redraw
    calls = []

    def broken(_coefficients):
        calls.append(1)
        raise AvatarCaptureError("the splat shader does not compile on this GPU (TEST)")

    monkeypatch.setattr(splat_gpu, "shader", broken)
    camera = framing_camera(gaussians_of(bpy.data.objects["Cloud"]).means, 32, 32)
    try:
        draw_offscreen(camera)  # no exception escapes the draw handler
        draw_offscreen(camera)
        assert len(calls) == 1, "after the failure, redraws do nothing"
        assert "does not compile" in splat_gpu.disabled_reason
        drawn: list = []
        context = SimpleNamespace(scene=bpy.context.scene, view_layer=bpy.context.view_layer,
                                  region=SimpleNamespace(width=300), preferences=bpy.context.preferences)
        VIEW3D_PT_avatar_splats.draw(SimpleNamespace(layout=RecordingLayout(drawn)), context)
        labels = " ".join(kwargs.get("text", "") for name, _, kwargs in drawn if name == "label")
        assert "Splats are not drawn" in labels and "1 splat object, 50 splats" in labels
        assert "F12" in labels
        operators = [args[0] for name, args, _ in drawn if name == "operator"]
        assert operators == ["avatar.import_splats", "avatar.export_splats", "avatar.bind_splats",
                             "avatar.render_with_splats"]
    finally:
        splat_gpu.disabled_reason = None


def test_an_object_with_damaged_data_is_skipped_and_named(fresh_addon) -> None:
    good = create_splat_object(random_cloud(60, degree=0, seed=14), "Good")
    bad = create_splat_object(random_cloud(60, degree=0, seed=15, centre=(0.5, 0.0, 0.0)), "Bad")
    bad.data.attributes.remove(bad.data.attributes["splat_rotation"])
    bpy.context.view_layer.update()
    camera = framing_camera(gaussians_of(good).means, 48, 48)
    draw_offscreen(camera)
    wait_for_sorts()
    image = draw_offscreen(camera)  # sorted now
    assert splat_gpu.disabled_reason is None, "one damaged object must not stop the others"
    assert set(splat_draw.problems) == {"Bad"} and "Bad" in splat_draw.problems["Bad"]
    assert psnr(image, render_offscreen(good, camera)) >= 50.0


def test_render_offscreen_without_a_gpu_backend_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splat_gpu, "gpu_unavailable_reason", lambda: "no GPU backend")
    g = random_cloud(10, degree=0, seed=13)
    with pytest.raises(AvatarCaptureError, match="no GPU backend"):
        render_offscreen(g, framing_camera(g.means, 16, 16))


def test_the_update_handlers_survive_opening_another_file(fresh_addon, tmp_path) -> None:
    """Blender drops non-persistent app handlers on file load: mesh edits would then go unnoticed."""
    path = tmp_path / "other.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert splat_draw._mark_dirty in bpy.app.handlers.depsgraph_update_post
    assert splat_draw._forget_all in bpy.app.handlers.load_post


def test_unregister_removes_the_draw_handler() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    avatar_capture.register()
    assert splat_draw.is_registered() and splat_draw._mark_dirty in bpy.app.handlers.depsgraph_update_post
    avatar_capture.unregister()
    assert not splat_draw.is_registered()
    assert splat_draw._mark_dirty not in bpy.app.handlers.depsgraph_update_post
    assert splat_draw._forget_all not in bpy.app.handlers.load_post
    assert not splat_draw._entries


def test_switching_the_armature_modifier_off_shows_the_rest_pose(fresh_addon) -> None:
    """As for meshes: the viewport deforms the splats only while the Armature modifier is on."""
    obj, armature = cloud_on_one_bone(30, seed=4)
    armature.pose.bones["bone"].rotation_mode = "XYZ"
    armature.pose.bones["bone"].rotation_euler = (0.5, 0.0, 0.0)
    bpy.context.view_layer.update()
    g = gaussians_of(obj)
    posed = splat_draw.object_skinning(obj, g)
    assert posed is not None and not np.allclose(posed[0], np.eye(4), atol=1e-4)
    obj.modifiers["Armature"].show_viewport = False
    assert splat_draw.object_skinning(obj, g) is None

"""Splat objects in Blender (real bpy, real files): storage is exact, survives a saved .blend, imports
refuse bad files without debris, binding follows the nearest bones, exports round-trip."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from avatar_capture.blender.armature import edit_mode
from avatar_capture.blender.splat_object import (LOG_SCALE, ROTATION, SKIN_KEY, bind_to_armature,
                                                 create_splat_object, gaussians_from_object, is_splat_object)
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.splats.binding import bone_weights_by_distance, squared_segment_distances
from avatar_capture.core.splats.container import save_splats
from avatar_capture.core.splats.gaussians import (Gaussians, SplatSkin, SurfaceBinding, make_gaussians,
                                                  sh_coefficient_count)
from avatar_capture.core.splats.ply import read_ply, write_ply
from shared_media import REAL_SPLAT_PLY

DATA_KINDS = ("objects", "meshes", "armatures", "collections", "materials")
BONES = ("hips", "spine", "chest")


@pytest.fixture(autouse=True)
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


@pytest.fixture(scope="module")
def addon():
    """The add-on registered as Blender registers it (operators, menus)."""
    import avatar_capture

    avatar_capture.register()
    yield
    avatar_capture.unregister()


def random_cloud(n: int, degree: int, seed: int = 0, skin: bool = False, surface: bool = False) -> Gaussians:
    rng = np.random.default_rng(seed)
    quats = rng.normal(size=(n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    splat_skin = None
    if skin:
        bones = len(BONES)
        # Distinct bones per row in random order, some zero slots (index arbitrary) -- as a file may hold them.
        indices = np.argsort(rng.random((n, bones)), axis=1)[:, :3]
        indices = np.concatenate([indices, rng.integers(0, bones, (n, 1))], axis=1)
        weights = rng.random((n, 4))
        weights[:, 3] = 0.0
        weights[rng.random(n) < 0.3, 2] = 0.0
        weights /= weights.sum(axis=1, keepdims=True)
        rest = np.tile(np.eye(4), (bones, 1, 1))
        rest[:, :3, 3] = rng.normal(size=(bones, 3))
        splat_skin = SplatSkin(BONES, np.array([-1, 0, 1]), rest, indices, weights)
    binding = None
    if surface:
        bary = rng.random((n, 3))
        binding = SurfaceBinding(rng.integers(0, 500, n), bary / bary.sum(axis=1, keepdims=True),
                                 rng.normal(size=(n, 3)) * 0.01)
    return make_gaussians(rng.normal(size=(n, 3)), quats, rng.normal(size=(n, 3)) - 4.0, rng.normal(size=n),
                          rng.normal(size=(n, sh_coefficient_count(degree), 3)), skin=splat_skin, surface=binding)


def dense(skin: SplatSkin) -> np.ndarray:
    """Weights (N, B): what a skin means, independent of slot order."""
    out = np.zeros((len(skin.bone_indices), len(skin.bone_names)), np.float32)
    np.add.at(out, (np.arange(len(out))[:, None], skin.bone_indices), skin.bone_weights)
    return out


def assert_same_cloud(got: Gaussians, expected: Gaussians) -> None:
    for field in ("means", "rotations", "log_scales", "logit_opacities", "sh"):
        a, b = getattr(got, field), getattr(expected, field)
        assert a.dtype == np.float32 and a.shape == b.shape and np.array_equal(a, b), field
    assert (got.surface is None) == (expected.surface is None)
    if expected.surface is not None:
        for field in ("face_indices", "barycentrics", "offsets"):
            assert np.array_equal(getattr(got.surface, field), getattr(expected.surface, field)), field
    assert (got.skin is None) == (expected.skin is None)
    if expected.skin is not None:
        assert got.skin.bone_names == expected.skin.bone_names
        assert np.array_equal(got.skin.bone_parents, expected.skin.bone_parents)
        assert np.array_equal(got.skin.rest_bone_to_object, expected.skin.rest_bone_to_object)
        assert np.array_equal(dense(got.skin), dense(expected.skin))
        assert np.all(np.diff(got.skin.bone_weights, axis=1) <= 0), "slots come back heaviest first"


def data_snapshot() -> dict[str, list[str]]:
    return {kind: sorted(block.name for block in getattr(bpy.data, kind)) for kind in DATA_KINDS}


def two_bone_armature(scene, location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    """Bones "lower" (0,0,0)->(0,0,1) and "upper" (0,0,1)->(0,0,2) in armature space, plus a non-deform "ik"."""
    obj = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    scene.collection.objects.link(obj)
    obj.location = location
    with edit_mode(scene, bpy.context.view_layer, obj):
        lower = obj.data.edit_bones.new("lower")
        lower.head, lower.tail = (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)
        upper = obj.data.edit_bones.new("upper")
        upper.head, upper.tail, upper.parent = (0.0, 0.0, 1.0), (0.0, 0.0, 2.0), lower
        ik = obj.data.edit_bones.new("ik")
        ik.head, ik.tail, ik.use_deform = (3.0, 0.0, 0.0), (3.0, 0.0, 1.0), False
    bpy.context.view_layer.update()
    return obj


@pytest.mark.parametrize("degree", [0, 3])
def test_object_holds_every_field_exactly(scene, degree):
    g = random_cloud(300, degree, seed=degree, skin=True, surface=degree == 3)
    obj = create_splat_object(g, "Cloud")
    assert is_splat_object(obj) and obj["avatar_capture_splats"] == 1 and obj.display_type == "BOUNDS"
    assert obj.name in scene.collection.objects and len(obj.data.vertices) == 300
    assert obj.data.attributes[ROTATION].data_type == "QUATERNION"
    assert {g.name for g in obj.vertex_groups} == set(BONES)
    assert_same_cloud(gaussians_from_object(obj), g)


def test_saved_blend_reopens_exactly_and_moves_with_the_object(scene, tmp_path):
    g = random_cloud(500, 3, seed=7, skin=True)
    obj = create_splat_object(g, "Saved")
    obj.matrix_world = Matrix.Translation((1.0, 2.0, 3.0)) @ Matrix.Rotation(0.7, 4, "Z")
    blend = tmp_path / "splats.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert "Saved" not in bpy.data.objects
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    reopened = bpy.data.objects["Saved"]
    assert is_splat_object(reopened)
    assert_same_cloud(gaussians_from_object(reopened), g)  # means stay in the object frame
    world = np.array(reopened.matrix_world)
    assert np.allclose(world[:3, 3], (1.0, 2.0, 3.0)) and np.isclose(world[0, 0], np.cos(0.7))


def test_reads_the_original_mesh_not_the_deformed_one(scene):
    armature = two_bone_armature(scene)
    g = random_cloud(50, 0, seed=3)
    obj = create_splat_object(g, "Bound")
    bind_to_armature(obj, armature)
    armature.pose.bones["lower"].rotation_mode = "XYZ"
    armature.pose.bones["lower"].rotation_euler = (0.0, 1.0, 0.0)
    bpy.context.view_layer.update()
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    moved = np.array([v.co for v in evaluated.data.vertices])
    assert np.abs(moved - g.means).max() > 0.1  # the Armature modifier really deforms the evaluated mesh
    assert np.array_equal(gaussians_from_object(evaluated).means, g.means)


def test_painted_weights_read_back_as_a_valid_skin(scene):
    names = ("a", "b", "c", "d", "e")
    skin = SplatSkin(names, np.arange(5) - 1, np.tile(np.eye(4), (5, 1, 1)),
                     np.zeros((3, 4), np.int32), np.tile([1.0, 0.0, 0.0, 0.0], (3, 1)))
    base = random_cloud(3, 0)
    obj = create_splat_object(make_gaussians(base.means, base.rotations, base.log_scales, base.logit_opacities,
                                             base.sh, skin=skin), "Painted")
    # Weight painting: splat 0 in all five bones and a non-bone group, splat 1 no longer sums to 1.
    for name, weight in zip("bcde", (0.5, 0.2, 0.1, 0.05)):
        obj.vertex_groups[name].add([0], weight, "REPLACE")
    obj.vertex_groups.new(name="Extra").add([0, 2], 0.9, "REPLACE")
    obj.vertex_groups["a"].add([1], 0.4, "REPLACE")
    obj.vertex_groups["c"].add([1], 0.4, "REPLACE")
    got = gaussians_from_object(obj).skin
    assert list(got.bone_indices[0]) == [0, 1, 2, 3]  # the four heaviest, renormalised
    assert np.allclose(got.bone_weights[0], np.array([1.0, 0.5, 0.2, 0.1]) / 1.8)
    assert list(got.bone_indices[1, :2]) == [0, 2] and np.allclose(got.bone_weights[1], [0.5, 0.5, 0, 0])
    assert np.array_equal(got.bone_weights[2], [1.0, 0.0, 0.0, 0.0])  # an untouched row stays exact
    obj.vertex_groups["a"].remove([2])
    with pytest.raises(AvatarCaptureError, match="1 splat\\(s\\) have no weight in any bone's vertex group"):
        gaussians_from_object(obj)


def test_damaged_object_is_a_clear_error(scene):
    obj = create_splat_object(random_cloud(20, 1), "Damaged")
    obj.data.attributes.remove(obj.data.attributes[LOG_SCALE])
    with pytest.raises(AvatarCaptureError, match="'Damaged' has lost its 'splat_log_scale' attribute"):
        gaussians_from_object(obj)
    plain = bpy.data.objects.new("Plain", bpy.data.meshes.new("Plain"))
    assert not is_splat_object(plain) and not is_splat_object(None)
    with pytest.raises(AvatarCaptureError, match="'Plain' is not a splat object"):
        gaussians_from_object(plain)


def test_import_operator_reads_a_3dgs_ply(scene, addon, tmp_path):
    g = random_cloud(400, 2, seed=11, skin=True)
    path = write_ply(g, tmp_path / "scan.ply")
    before = len(bpy.data.objects)
    assert bpy.ops.avatar.import_splats(filepath=str(path)) == {"FINISHED"}
    assert len(bpy.data.objects) == before + 1
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "scan" and obj.select_get() and is_splat_object(obj)
    assert len(obj.data.vertices) == 400
    assert_same_cloud(gaussians_from_object(obj), read_ply(path))


@pytest.mark.skipif(not REAL_SPLAT_PLY.exists(), reason="shared media (a real 3DGS PLY) not available")
def test_import_operator_reads_a_real_3dgs_file(scene, addon):
    assert bpy.ops.avatar.import_splats(filepath=str(REAL_SPLAT_PLY)) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    g = gaussians_from_object(obj)
    assert g.count == 45624 and g.sh_degree == 0 and g.skin is None
    assert_same_cloud(g, read_ply(REAL_SPLAT_PLY))


def test_import_operator_binds_to_the_active_armature(scene, addon, tmp_path):
    armature = two_bone_armature(scene)
    bpy.context.view_layer.objects.active = armature
    path = write_ply(random_cloud(40, 0, seed=8), tmp_path / "dancer.ply")
    assert bpy.ops.avatar.import_splats(filepath=str(path), bind_armature=True) == {"FINISHED"}
    obj = bpy.data.objects["dancer"]
    assert obj.parent == armature and obj.modifiers["Armature"].object == armature
    assert gaussians_from_object(obj).skin.bone_names == ("lower", "upper")


def test_file_menus_list_the_splat_operators(addon):
    from types import SimpleNamespace

    from avatar_capture.operators import draw_export_menu, draw_import_menu, draw_render_menu

    class Layout:
        def __init__(self):
            self.operators = []

        def operator(self, idname, text="", icon=""):
            self.operators.append((idname, text))

        def separator(self):
            pass

    listed = {}
    for draw in (draw_import_menu, draw_export_menu, draw_render_menu):
        menu = SimpleNamespace(layout=Layout())
        draw(menu, bpy.context)
        listed.update(menu.layout.operators)
    assert listed["avatar.import_splats"] == "Gaussian Splats (.ply/.npz)"
    assert listed["avatar.export_splats"] == "Gaussian Splats (.ply/.glb)"
    assert "avatar.render_with_splats" in listed
    assert draw_render_menu in bpy.types.TOPBAR_MT_render.draw._draw_funcs


def test_import_operator_reads_ascii_and_big_endian_files(scene, addon, tmp_path):
    g = random_cloud(25, 1, seed=13)
    raw = write_ply(g, tmp_path / "binary.ply").read_bytes()
    body = raw.index(b"end_header\n") + len(b"end_header\n")
    rows = np.frombuffer(raw[body:], "<f4").reshape(25, -1)
    header = raw[:body].decode()
    ascii_path, big_path = tmp_path / "text.ply", tmp_path / "big.ply"
    ascii_path.write_text(header.replace("binary_little_endian", "ascii") +
                          "\n".join(" ".join(repr(float(v)) for v in row) for row in rows) + "\n")
    big_path.write_bytes(header.replace("binary_little_endian", "binary_big_endian").encode() +
                         rows.astype(">f4").tobytes())
    for path in (ascii_path, big_path):
        assert bpy.ops.avatar.import_splats(filepath=str(path)) == {"FINISHED"}
        assert_same_cloud(gaussians_from_object(bpy.data.objects[path.stem]), g)


def test_import_operator_reads_the_npz_container(scene, addon, tmp_path):
    g = random_cloud(100, 1, seed=12, surface=True)
    path = save_splats(g, tmp_path / "avatar.npz")
    assert bpy.ops.avatar.import_splats(filepath=str(path)) == {"FINISHED"}
    assert_same_cloud(gaussians_from_object(bpy.data.objects["avatar"]), g)


def _bad_files(folder: Path) -> dict[str, Path]:
    good = write_ply(random_cloud(10, 0, seed=5), folder / "good.ply")
    raw = good.read_bytes()
    body = raw.index(b"end_header\n") + len(b"end_header\n")
    nan = bytearray(raw)
    nan[body + 4:body + 8] = np.float32(np.nan).tobytes()  # y of the first splat
    points = b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n" \
             b"property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n" + \
             bytes(30)
    mesh = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n" \
           b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    files = {"points": points, "mesh": mesh, "truncated": raw[:body + (len(raw) - body) // 2], "nan": bytes(nan),
             "empty": raw[:body].replace(b"element vertex 10", b"element vertex 0")}
    out = {}
    for name, data in files.items():
        out[name] = folder / f"{name}.ply"
        out[name].write_bytes(data)
    return out


@pytest.mark.parametrize("case, problem", [
    ("points", "plain point cloud, not 3D Gaussian splats"),
    ("mesh", "plain mesh, not 3D Gaussian splats"),
    ("truncated", "truncated"),
    ("nan", "NaN"),
    ("empty", "0 splats"),
])
def test_import_operator_refuses_bad_files_and_leaves_no_trace(scene, addon, tmp_path, case, problem):
    path = _bad_files(tmp_path)[case]
    bpy.ops.mesh.primitive_cube_add()
    before = data_snapshot()
    with pytest.raises(RuntimeError) as error:
        bpy.ops.avatar.import_splats(filepath=str(path))
    message = str(error.value)
    assert f"{path.name}: " in message and problem in message and "Traceback" not in message
    assert data_snapshot() == before


def test_failed_bind_during_import_removes_the_new_object(scene, addon, tmp_path):
    path = write_ply(random_cloud(30, 0, seed=2), tmp_path / "cloud.ply")
    empty_rig = bpy.data.objects.new("NoBones", bpy.data.armatures.new("NoBones"))
    scene.collection.objects.link(empty_rig)
    bpy.context.view_layer.objects.active = empty_rig
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="cloud.ply: the armature 'NoBones' has no deform bones"):
        bpy.ops.avatar.import_splats(filepath=str(path), bind_armature=True)
    assert data_snapshot() == before


def test_undo_removes_the_imported_object(scene, addon, tmp_path):
    path = write_ply(random_cloud(30, 0, seed=4), tmp_path / "undoable.ply")
    from avatar_capture.operators.splats import AVATAR_OT_import_splats

    assert "UNDO" in AVATAR_OT_import_splats.bl_options
    bpy.ops.ed.undo_push(message="before import")
    # Positional arguments: execution context, and undo=True (push an undo step as a UI call would).
    assert bpy.ops.avatar.import_splats("EXEC_DEFAULT", True, filepath=str(path)) == {"FINISHED"}
    assert "undoable" in bpy.data.objects and "undoable" in bpy.data.meshes
    bpy.ops.ed.undo()
    assert "undoable" not in bpy.data.objects and "undoable" not in bpy.data.meshes
    bpy.ops.ed.redo()
    assert_same_cloud(gaussians_from_object(bpy.data.objects["undoable"]), read_ply(path))


def test_bind_computes_weights_favouring_the_nearest_bone(scene):
    armature = two_bone_armature(scene, location=(0.5, -1.0, 0.2))
    z = np.linspace(0.05, 1.95, 39)
    means = np.stack([np.full_like(z, 0.02), np.zeros_like(z), z], axis=1)  # along the bones, world = object frame
    g = random_cloud(len(z), 0, seed=9)
    g = make_gaussians(means, g.rotations, g.log_scales, g.logit_opacities, g.sh)
    obj = create_splat_object(g, "Body")
    obj.location = (0.5, -1.0, 0.2)
    bpy.context.view_layer.update()
    world = np.array(obj.matrix_world)
    bind_to_armature(obj, armature)
    bpy.context.view_layer.update()
    assert obj.parent == armature and np.allclose(np.array(obj.matrix_world), world)
    modifier = obj.modifiers["Armature"]
    assert modifier.type == "ARMATURE" and modifier.object == armature and modifier.use_vertex_groups

    skin = gaussians_from_object(obj).skin
    assert skin.bone_names == ("lower", "upper") and list(skin.bone_parents) == [-1, 0]  # "ik" does not deform
    assert np.allclose(skin.bone_weights.sum(axis=1), 1.0, atol=1e-6)
    lower = dense(skin)[:, 0]
    assert np.all(lower[z < 0.9] > 0.9) and np.all(lower[z > 1.1] < 0.1)  # nearest bone dominates
    assert np.all(np.diff(lower) <= 1e-6)  # and hands over smoothly along the chain
    # Rest frames: the bones' rest matrices in the splat object's frame (both objects sit at the same place).
    expected = np.array([np.array(armature.data.bones[n].matrix_local) for n in ("lower", "upper")])
    assert np.allclose(skin.rest_bone_to_object, expected, atol=1e-6)


def test_bind_keeps_a_matching_skin_and_moves_it_with_the_bones(scene):
    armature = two_bone_armature(scene)
    rng = np.random.default_rng(1)
    means = rng.normal(size=(64, 3)) * 0.1 + (0.0, 0.0, 1.5)
    weights = np.zeros((64, 4))
    weights[:, 0] = 1.0
    skin = SplatSkin(("upper",), np.array([-1]), np.eye(4)[None], np.zeros((64, 4), np.int32), weights)
    base = random_cloud(64, 0, seed=1)
    g = make_gaussians(means, base.rotations, base.log_scales, base.logit_opacities, base.sh, skin=skin)
    obj = create_splat_object(g, "Head")
    bind_to_armature(obj, armature)
    got = gaussians_from_object(obj).skin
    assert got.bone_names == ("upper",) and np.array_equal(dense(got), dense(skin))  # kept, not recomputed
    assert np.allclose(got.rest_bone_to_object[0], np.array(armature.data.bones["upper"].matrix_local), atol=1e-6)
    pose = armature.pose.bones["upper"]
    pose.rotation_mode = "XYZ"
    pose.rotation_euler = (0.0, 0.0, 0.0)
    pose.location = (0.0, 0.5, 0.0)  # along the bone's own Y axis (its rest frame)
    bpy.context.view_layer.update()
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    moved = np.array([v.co for v in evaluated.data.vertices])
    rest_y = np.array(armature.data.bones["upper"].matrix_local)[:3, 1]
    assert np.allclose(moved - means, 0.5 * rest_y, atol=1e-5)


def test_bind_replaces_a_skin_for_other_bones(scene):
    armature = two_bone_armature(scene)
    obj = create_splat_object(random_cloud(60, 0, seed=6, skin=True), "Foreign")  # skinned to hips/spine/chest
    obj.vertex_groups.new(name="lower")  # a stray group with a bone's name must not block the new skin
    bind_to_armature(obj, armature)
    assert {g.name for g in obj.vertex_groups} == {"lower", "upper"}
    first = gaussians_from_object(obj).skin
    assert first.bone_names == ("lower", "upper") and np.allclose(first.bone_weights.sum(axis=1), 1.0, atol=1e-6)
    bind_to_armature(obj, armature)  # binding again keeps the skin it made
    again = gaussians_from_object(obj).skin
    assert np.array_equal(dense(again), dense(first)) and len(obj.modifiers) == 1


def test_bind_refuses_what_it_cannot_bind(scene):
    armature = two_bone_armature(scene)
    cloud = create_splat_object(random_cloud(10, 0), "Cloud")
    plain = bpy.data.objects.new("Plain", bpy.data.meshes.new("Plain"))
    with pytest.raises(AvatarCaptureError, match="'Plain' is not a splat object"):
        bind_to_armature(plain, armature)
    with pytest.raises(AvatarCaptureError, match="'Plain' is not an armature"):
        bind_to_armature(cloud, plain)
    for bone in armature.data.bones:
        bone.use_deform = False
    with pytest.raises(AvatarCaptureError, match="'Rig' has no deform bones"):
        bind_to_armature(cloud, armature)
    assert cloud.parent is None and not cloud.modifiers and SKIN_KEY not in cloud


def test_bind_operator_binds_the_selected_clouds(scene, addon):
    armature = two_bone_armature(scene)
    clouds = [create_splat_object(random_cloud(20, 0, seed=s), f"C{s}") for s in range(2)]
    for obj in clouds:
        obj.select_set(True)
    armature.select_set(True)
    bpy.context.view_layer.objects.active = armature
    assert bpy.ops.avatar.bind_splats() == {"FINISHED"}
    assert all(obj.parent == armature and gaussians_from_object(obj).skin is not None for obj in clouds)


def test_export_ply_round_trips_with_and_without_skin(scene, addon, tmp_path):
    g = random_cloud(200, 3, seed=21, skin=True)
    obj = create_splat_object(g, "Out")
    bpy.context.view_layer.objects.active = obj
    full, standard = tmp_path / "full.ply", tmp_path / "standard.ply"
    assert bpy.ops.avatar.export_splats(filepath=str(full), file_format="PLY") == {"FINISHED"}
    assert bpy.ops.avatar.export_splats(filepath=str(standard), file_format="PLY", include_skin=False) == \
        {"FINISHED"}
    assert_same_cloud(read_ply(full), gaussians_from_object(obj))
    plain = read_ply(standard)
    assert plain.skin is None and np.array_equal(plain.sh, g.sh) and np.array_equal(plain.means, g.means)


def test_export_applies_the_object_transform_when_asked(scene, addon, tmp_path):
    g = random_cloud(100, 1, seed=22)
    obj = create_splat_object(g, "Moved")
    obj.matrix_world = Matrix.Translation((2.0, -1.0, 0.5)) @ Matrix.Rotation(0.4, 4, "X") @ Matrix.Scale(2.0, 4)
    bpy.context.view_layer.update()
    bpy.context.view_layer.objects.active = obj
    baked, local = tmp_path / "baked.ply", tmp_path / "local.ply"
    assert bpy.ops.avatar.export_splats(filepath=str(baked), apply_transform=True) == {"FINISHED"}
    assert bpy.ops.avatar.export_splats(filepath=str(local)) == {"FINISHED"}
    matrix = np.array(obj.matrix_world)
    expected = g.means.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
    moved = read_ply(baked)
    assert np.allclose(moved.means, expected, atol=1e-5) and np.abs(moved.means - g.means).max() > 0.5
    assert np.allclose(moved.log_scales, g.log_scales + np.log(2.0), atol=1e-5)
    assert np.array_equal(read_ply(local).means, g.means)


def test_export_glb_writes_the_cloud(scene, addon, tmp_path):
    from avatar_capture.core.splats.gltf import read_glb

    g = random_cloud(50, 0, seed=23)
    obj = create_splat_object(g, "Glb")
    bpy.context.view_layer.objects.active = obj
    path = tmp_path / "cloud.glb"
    assert bpy.ops.avatar.export_splats(filepath=str(path), file_format="GLB") == {"FINISHED"}
    back = read_glb(path)
    assert back.count == 50 and np.allclose(back.means, g.means, atol=1e-6)


def test_distance_weights_follow_segments_not_heads():
    heads = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    tails = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [5.0, 0.0, 0.0]])  # the third is a zero-length bone
    points = np.array([[0.1, 0.0, 0.8], [0.0, 0.3, 1.9], [5.0, 0.0, 0.1], [0.0, 0.0, 1.0]])
    distances = np.sqrt(squared_segment_distances(points, heads, tails))
    assert np.allclose(distances[0], [0.1, np.hypot(0.1, 0.2), np.hypot(4.9, 0.8)])
    assert np.isclose(distances[2, 2], 0.1)
    indices, weights = bone_weights_by_distance(points, heads, tails, k=4)
    assert indices.shape == weights.shape == (4, 4) and indices.dtype == np.int32
    assert list(indices[:3, 0]) == [0, 1, 2] and np.all(weights[:, 3] == 0.0)
    assert np.allclose(weights.sum(axis=1), 1.0) and np.all(np.diff(weights, axis=1) <= 0)
    assert np.isclose(weights[3, 0], weights[3, 1])  # on the joint: both bones alike
    # Chunked batches give the same answer as one batch.
    rng = np.random.default_rng(0)
    many = rng.normal(size=(20000, 3))
    chunked = bone_weights_by_distance(many, heads, tails, k=2)
    single = bone_weights_by_distance(many[-5:], heads, tails, k=2)
    assert np.array_equal(chunked[0][-5:], single[0]) and np.array_equal(chunked[1][-5:], single[1])
    with pytest.raises(AvatarCaptureError, match="need bones"):
        bone_weights_by_distance(points, np.zeros((0, 3)), np.zeros((0, 3)))


def test_a_damaged_skin_property_is_a_clear_error_and_binding_again_repairs_it(scene):
    """The skin property is user-editable: a broken one must read as damaged data (not a KeyError)."""
    obj = create_splat_object(random_cloud(30, 0, seed=31, skin=True), "Broken")
    obj[SKIN_KEY] = {"bone_names": list(BONES)}  # parents and rest frames lost
    with pytest.raises(AvatarCaptureError, match="'Broken' has a damaged 'avatar_capture_splat_skin' property"):
        gaussians_from_object(obj)
    armature = two_bone_armature(scene)
    bind_to_armature(obj, armature)  # weights computed afresh for the armature's bones
    assert gaussians_from_object(obj).skin.bone_names == ("lower", "upper")


def test_bind_operator_checks_every_cloud_before_binding_any(scene, addon):
    armature = two_bone_armature(scene)
    first = create_splat_object(random_cloud(20, 0, seed=32), "First")
    editing = create_splat_object(random_cloud(20, 0, seed=33), "Editing")
    bpy.context.view_layer.objects.active = editing
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.context.view_layer.objects.active = armature  # 'Editing' stays in Edit Mode (Lock Object Modes off)
    assert editing.mode == "EDIT" and armature.mode == "OBJECT"
    for obj in (first, editing, armature):
        obj.select_set(True)
    with pytest.raises(RuntimeError, match="'Editing' is in Edit Mode"):
        bpy.ops.avatar.bind_splats()
    assert first.parent is None and not first.modifiers and SKIN_KEY not in first, "nothing was half bound"


def test_a_cloud_in_edit_mode_is_a_clear_error_and_export_waits_for_object_mode(scene, addon, tmp_path):
    """Blender keeps a mesh's attributes in the edit mesh during Edit Mode, out of foreach_get's reach."""
    obj = create_splat_object(random_cloud(20, 0, seed=34), "Editing")
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    with pytest.raises(AvatarCaptureError, match="'Editing' is in Edit Mode"):
        gaussians_from_object(obj)
    assert not bpy.ops.avatar.export_splats.poll()
    bpy.ops.object.mode_set(mode="OBJECT")
    assert bpy.ops.avatar.export_splats(filepath=str(tmp_path / "out.ply")) == {"FINISHED"}
    assert read_ply(tmp_path / "out.ply").count == 20

"""Splat data beyond PLY: the .npz container, SH rotation, rigid/similarity transforms and LBS skinning.

Covariances are checked against gsplat's own pure-torch quat+scale -> covariance helper
(an independent implementation), colours against sh_to_colour at rotated directions.
"""
import numpy as np
import pytest

from avatar_capture.core.errors import AvatarCaptureError, FileFormatError
from avatar_capture.core.rotations import axis_angle_to_quat, quat_to_matrix
from avatar_capture.core.splats.container import load_splats, save_splats
from avatar_capture.core.splats.gaussians import SplatSkin, SurfaceBinding, make_gaussians, sh_coefficient_count
from avatar_capture.core.splats.sh import sh_to_colour
from avatar_capture.core.splats.skinning import skin_gaussians, skinning_matrices
from avatar_capture.core.splats.transforms import rotate_sh, transform_gaussians


def random_rotations(rng, n=None):
    return quat_to_matrix(axis_angle_to_quat(rng.normal(size=(3,) if n is None else (n, 3))))


def unit_dirs(rng, n):
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def cloud(n=60, degree=3, seed=0, bones=0, surface=False):
    rng = np.random.default_rng(seed)
    skin = bound = None
    if bones:
        rest = np.tile(np.eye(4), (bones, 1, 1))
        rest[:, :3, :3] = random_rotations(rng, bones)
        rest[:, :3, 3] = rng.normal(size=(bones, 3))
        weights = rng.random((n, 4))
        weights /= weights.sum(axis=1, keepdims=True)
        skin = SplatSkin(tuple(f"bone{i}" for i in range(bones)), np.arange(bones) - 1, rest,
                         rng.integers(0, bones, size=(n, 4)), weights)
    if surface:
        bary = rng.random((n, 3))
        bound = SurfaceBinding(rng.integers(0, 10, n), bary / bary.sum(axis=1, keepdims=True), rng.normal(size=(n, 3)))
    # distinct scales per axis so a covariance determines the axes
    log_scales = np.log(np.sort(rng.uniform(0.01, 0.2, size=(n, 3)), axis=1) * [1.0, 1.7, 3.1])
    return make_gaussians(rng.normal(size=(n, 3)), rng.normal(size=(n, 4)), log_scales, rng.normal(size=n),
                          0.3 * rng.normal(size=(n, sh_coefficient_count(degree), 3)), skin=skin, surface=bound)


def covariances(g):
    """World covariances (N, 3, 3) via gsplat's pure-torch helper (independent of our code)."""
    torch = pytest.importorskip("torch")
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    covar, _ = _quat_scale_to_covar_preci(torch.from_numpy(g.rotations.astype(np.float64)),
                                          torch.from_numpy(g.scales.astype(np.float64)), compute_preci=False)
    return covar.numpy()


def rigid(rotation, translation, scale=1.0):
    m = np.eye(4)
    m[:3, :3] = scale * rotation
    m[:3, 3] = translation
    return m


# --- container -------------------------------------------------------------------------------------------

def test_container_round_trip_with_skin_and_surface(tmp_path):
    g = cloud(bones=3, surface=True)
    back = load_splats(save_splats(g, tmp_path / "a.npz"))
    for field in ("means", "rotations", "log_scales", "logit_opacities", "sh"):
        np.testing.assert_array_equal(getattr(back, field), getattr(g, field))
    assert back.skin.bone_names == g.skin.bone_names
    for field in ("bone_parents", "rest_bone_to_object", "bone_indices", "bone_weights"):
        np.testing.assert_array_equal(getattr(back.skin, field), getattr(g.skin, field))
    for field in ("face_indices", "barycentrics", "offsets"):
        np.testing.assert_array_equal(getattr(back.surface, field), getattr(g.surface, field))
    plain = load_splats(save_splats(cloud(degree=0), tmp_path / "b.npz"))
    assert plain.skin is None and plain.surface is None and plain.sh_degree == 0


def test_container_rejects_bad_files(tmp_path):
    g = cloud(n=5, degree=1, bones=2)
    arrays = {k: v for k, v in np.load(save_splats(g, tmp_path / "ok.npz")).items()}

    def broken(name, **changes):
        data = {**arrays, **changes}
        for key in [k for k, v in changes.items() if v is None]:
            data.pop(key)
        np.savez(tmp_path / name, **data)
        return tmp_path / name

    cases = [
        (broken("wrong.npz", format=np.array("avatar-capture/motion")), r"wrong\.npz: not an 'avatar-capture/splats'"),
        (broken("newer.npz", version=np.array(2)), r"version 2 is not supported"),
        (broken("half_skin.npz", skin_bone_weights=None), r"\(field 'skin_bone_weights'\)"),
        (broken("nan.npz", log_scales=np.where(np.eye(5, 3) > 0, np.nan, arrays["log_scales"])),
         r"NaN or infinite values \(field 'log_scales'\)"),
        (broken("sh.npz", sh=np.zeros((5, 5, 3), np.float32)), r"sh has shape \(5, 5, 3\)"),
        (broken("count.npz", means=np.zeros((4, 3), np.float32)), r"does not match the expected \('N', 4\)"),
        (broken("weights.npz", skin_bone_weights=np.full((5, 4), 0.5, np.float32)), r"sum to 1"),
        (broken("empty.npz", **{k: v[:0] for k, v in arrays.items() if v.ndim and len(v) == 5}),
         r"the file holds 0 splats"),
    ]
    for path, expected in cases:
        with pytest.raises(FileFormatError, match=expected) as caught:
            load_splats(path)
        assert str(caught.value).startswith(str(path))


# --- SH rotation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("degree", [1, 2, 3])
def test_rotate_sh_matches_colour_at_rotated_directions(degree):
    rng = np.random.default_rng(degree)
    g = cloud(n=200, degree=degree, seed=degree)
    rotation = random_rotations(rng)
    dirs = unit_dirs(rng, 200)
    turned = rotate_sh(g.sh.astype(np.float64), rotation)
    # colour of the turned splat seen along d == colour of the original seen along R^T d
    np.testing.assert_allclose(sh_to_colour(turned, dirs, degree), sh_to_colour(g.sh, dirs @ rotation, degree),
                               atol=1e-6)
    assert not np.allclose(turned, g.sh, atol=1e-3)  # a non-trivial rotation really changes the coefficients
    np.testing.assert_array_equal(turned[:, 0], g.sh[:, 0])  # band 0 is view-independent


def test_rotate_sh_per_splat_rotations_and_float32():
    rng = np.random.default_rng(7)
    g = cloud(n=300, degree=3)
    rotations = random_rotations(rng, 300)
    dirs = unit_dirs(rng, 300)
    turned = rotate_sh(g.sh, rotations)
    assert turned.dtype == np.float32
    back_dirs = np.einsum("nji,nj->ni", rotations, dirs)
    np.testing.assert_allclose(sh_to_colour(turned, dirs, 3), sh_to_colour(g.sh, back_dirs, 3), atol=2e-5)
    np.testing.assert_allclose(rotate_sh(turned, np.swapaxes(rotations, 1, 2)), g.sh, atol=2e-5)  # inverse
    np.testing.assert_array_equal(rotate_sh(g.sh[:, :1], rotations), g.sh[:, :1])


# --- transforms ------------------------------------------------------------------------------------------

def test_transform_gaussians_similarity_keeps_covariances_and_colours():
    rng = np.random.default_rng(11)
    g = cloud(bones=2)
    rotation, translation, scale = random_rotations(rng), np.array([0.5, -2.0, 1.0]), 1.7
    moved = transform_gaussians(g, rigid(rotation, translation, scale))
    np.testing.assert_allclose(moved.means, scale * g.means @ rotation.T + translation, atol=1e-5)
    expected = scale ** 2 * rotation @ covariances(g) @ rotation.T
    np.testing.assert_allclose(covariances(moved), expected, atol=1e-6, rtol=1e-5)
    dirs = unit_dirs(rng, g.count)
    np.testing.assert_allclose(sh_to_colour(moved.sh, dirs, 3), sh_to_colour(g.sh, dirs @ rotation, 3), atol=2e-5)
    np.testing.assert_allclose(moved.skin.rest_bone_to_object, rigid(rotation, translation, scale)
                               @ g.skin.rest_bone_to_object, atol=1e-12)
    np.testing.assert_array_equal(moved.logit_opacities, g.logit_opacities)
    # a surface-bound cloud's rotations and SH are relative to its triangles, which carry the turn
    bound = cloud(surface=True)
    moved = transform_gaussians(bound, rigid(rotation, translation, scale))
    np.testing.assert_allclose(moved.surface.offsets, scale * bound.surface.offsets, rtol=1e-6)
    np.testing.assert_array_equal(moved.rotations, bound.rotations)
    np.testing.assert_array_equal(moved.sh, bound.sh)


@pytest.mark.parametrize("matrix, expected", [
    (np.diag([1.0, 2.0, 1.0, 1.0]), "non-uniform scale"),
    (np.array([[1.0, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "shear"),
    (np.diag([-1.0, 1.0, 1.0, 1.0]), "mirrors"),
    (np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.5, 1]]), "projective"),
])
def test_transform_gaussians_rejects_what_splats_cannot_follow(matrix, expected):
    with pytest.raises(AvatarCaptureError, match=expected):
        transform_gaussians(cloud(n=3), matrix)


# --- skinning --------------------------------------------------------------------------------------------

def test_skinning_matrices_are_posed_times_inverse_rest():
    g = cloud(bones=3)
    rng = np.random.default_rng(2)
    posed = g.skin.rest_bone_to_object.copy()
    posed[:, :3, :3] = random_rotations(rng, 3)
    deformation = skinning_matrices(g.skin, posed)
    np.testing.assert_allclose(deformation @ g.skin.rest_bone_to_object, posed, atol=1e-12)
    with pytest.raises(AvatarCaptureError, match=r"\(3, 4, 4\)"):
        skinning_matrices(g.skin, posed[:2])


def test_identity_pose_is_identity():
    g = cloud(bones=4)
    posed = skin_gaussians(g, g.skin.rest_bone_to_object)
    np.testing.assert_allclose(posed.means, g.means, atol=1e-6)
    np.testing.assert_allclose(posed.rotations, g.rotations, atol=1e-6)
    np.testing.assert_allclose(posed.log_scales, g.log_scales, atol=1e-6)
    np.testing.assert_allclose(posed.sh, g.sh, atol=1e-6)
    assert posed.skin is g.skin


def test_one_bone_turned_90_degrees_moves_splats_rigidly():
    g = cloud(bones=2)
    weights = np.zeros((g.count, 4), np.float32)
    weights[:, 0] = 1.0
    indices = np.zeros((g.count, 4), np.int32)
    g = make_gaussians(g.means, g.rotations, g.log_scales, g.logit_opacities, g.sh,
                       skin=SplatSkin(g.skin.bone_names, g.skin.bone_parents, g.skin.rest_bone_to_object,
                                      indices, weights))
    rest = g.skin.rest_bone_to_object
    turn = quat_to_matrix(axis_angle_to_quat(np.array([0.0, 0.0, np.pi / 2])))
    posed = rest.copy()
    posed[0, :3, :3] = turn @ rest[0, :3, :3]  # bone 0 turns 90 degrees about Z around its head
    deformation = posed[0] @ np.linalg.inv(rest[0])
    skinned = skin_gaussians(g, posed)
    expected = transform_gaussians(g, deformation)
    np.testing.assert_allclose(skinned.means, expected.means, atol=1e-5)
    head = rest[0, :3, 3]
    np.testing.assert_allclose(skinned.means, (g.means - head) @ turn.T + head, atol=1e-5)
    np.testing.assert_allclose(covariances(skinned), turn @ covariances(g) @ turn.T, atol=1e-7)
    np.testing.assert_allclose(skinned.sh, expected.sh, atol=1e-5)
    np.testing.assert_allclose(skinned.log_scales, g.log_scales, atol=1e-6)


def test_blended_weights_interpolate_means_and_covariances():
    """Two bones, weights (1 - a, a): means and the linear part blend; covariance = M3 Sigma M3^T."""
    rng = np.random.default_rng(5)
    g = cloud(n=50, bones=2, seed=5)
    a = np.linspace(0.0, 1.0, g.count).astype(np.float32)
    weights = np.stack([1.0 - a, a, np.zeros_like(a), np.zeros_like(a)], axis=1)
    indices = np.tile(np.array([0, 1, 0, 0], np.int32), (g.count, 1))
    rest = g.skin.rest_bone_to_object
    g = make_gaussians(g.means, g.rotations, g.log_scales, g.logit_opacities, g.sh,
                       skin=SplatSkin(g.skin.bone_names, g.skin.bone_parents, rest, indices, weights))
    posed = rest.copy()
    posed[1, :3, :3] = random_rotations(rng) @ rest[1, :3, :3]
    posed[1, :3, 3] += [0.3, 0.0, -0.2]
    deformation = posed @ np.linalg.inv(rest)
    blended = (1.0 - a)[:, None, None] * deformation[0] + a[:, None, None] * deformation[1]
    skinned = skin_gaussians(g, posed)
    points = np.einsum("nab,nb->na", blended[:, :3, :3], g.means) + blended[:, :3, 3]
    np.testing.assert_allclose(skinned.means, points, atol=1e-5)
    np.testing.assert_allclose(skinned.means[0], g.means[0], atol=1e-6)  # weight 0 on the moved bone
    linear = blended[:, :3, :3]
    np.testing.assert_allclose(covariances(skinned), linear @ covariances(g) @ np.swapaxes(linear, 1, 2),
                               atol=1e-6, rtol=1e-4)
    # (a left-handed axis frame would have broken the covariance match above); quaternion lengths are kept
    np.testing.assert_allclose(np.linalg.norm(skinned.rotations, axis=1), np.linalg.norm(g.rotations, axis=1),
                               rtol=1e-5)


def test_nearly_rigid_blend_keeps_axis_labels():
    """Bones that barely differ: the re-factored rotation stays next to the rigid answer (no axis swaps)."""
    g = cloud(n=80, bones=2, seed=9)
    rest = g.skin.rest_bone_to_object
    turn = quat_to_matrix(axis_angle_to_quat(np.array([0.4, 0.2, -0.3])))
    posed = rest.copy()
    posed[:, :3, :3] = turn @ rest[:, :3, :3]
    posed[1, :3, :3] = quat_to_matrix(axis_angle_to_quat(np.array([0.0, 0.02, 0.0]))) @ posed[1, :3, :3]
    skinned = skin_gaussians(g, posed)
    reference = transform_gaussians(g, rigid(turn, np.zeros(3)))
    q, r = skinned.rotations, reference.rotations
    dots = np.abs(np.sum(q * r, axis=1)) / (np.linalg.norm(q, axis=1) * np.linalg.norm(r, axis=1))
    assert dots.min() > 0.99
    np.testing.assert_allclose(skinned.log_scales, g.log_scales, atol=0.05)


def test_skin_gaussians_needs_a_skin():
    with pytest.raises(AvatarCaptureError, match="no skin"):
        skin_gaussians(cloud(n=3), np.tile(np.eye(4), (1, 1, 1)))


# --- surface binding -------------------------------------------------------------------------------------

def bumpy_sphere(rng, rings=6, segments=10):
    """A closed, irregular triangle mesh around the origin (vertices (V, 3), faces (F, 3))."""
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]])
    vertices *= rng.uniform(0.8, 1.2, size=(len(vertices), 1))
    faces = [[0, 1 + s, 1 + (s + 1) % segments] for s in range(segments)]
    for r in range(rings - 2):
        for s in range(segments):
            a, b = 1 + r * segments + s, 1 + r * segments + (s + 1) % segments
            faces += [[a, a + segments, b], [b, a + segments, b + segments]]
    last = len(vertices) - 1
    faces += [[last, 1 + (rings - 2) * segments + (s + 1) % segments, 1 + (rings - 2) * segments + s]
              for s in range(segments)]
    return vertices, np.array(faces)


@pytest.mark.parametrize("batch_pairs", [None, 64])  # 64: forces the batch-halving path
def test_nearest_triangles_match_brute_force(monkeypatch, batch_pairs):
    from avatar_capture.core.splats import surface
    from avatar_capture.core.splats.surface import closest_point_barycentrics, nearest_triangles

    if batch_pairs:
        monkeypatch.setattr(surface, "_MAX_PAIRS", batch_pairs)

    rng = np.random.default_rng(21)
    vertices, faces = bumpy_sphere(rng)
    points = np.concatenate([rng.normal(size=(300, 3)) * 0.8, np.zeros((1, 3))])
    tri = vertices[faces]
    pairs = np.broadcast_to(tri, (len(points),) + tri.shape)  # every point against every triangle
    bary_all = closest_point_barycentrics(points[:, None], pairs[..., 0, :], pairs[..., 1, :], pairs[..., 2, :])
    brute = np.linalg.norm(np.einsum("nfc,nfci->nfi", bary_all, pairs) - points[:, None], axis=2).min(axis=1)
    face, bary = nearest_triangles(points, vertices, faces)
    closest = np.einsum("nc,nci->ni", bary, tri[face])
    np.testing.assert_allclose(np.linalg.norm(closest - points, axis=1), brute, atol=1e-12)
    assert np.all(bary >= -1e-12) and np.allclose(bary.sum(axis=1), 1.0)
    # the closest-point routine itself: vertex, edge and inside regions of one triangle
    a, b, c = np.eye(3)[0] * 0, np.array([1.0, 0, 0]), np.array([0.0, 1.0, 0])
    probes = np.array([[-1.0, -1.0, 0.5], [0.5, -1.0, 0.0], [0.2, 0.3, 2.0], [1.0, 1.0, 0.0], [3.0, -0.5, 0.0]])
    expected = np.array([[1, 0, 0], [0.5, 0.5, 0], [0.5, 0.2, 0.3], [0, 0.5, 0.5], [0, 1, 0]])
    np.testing.assert_allclose(closest_point_barycentrics(probes, a, b, c), expected, atol=1e-12)
    face, bary = nearest_triangles(probes, np.stack([a, b, c]), np.array([[0, 1, 2]]))  # a one-triangle mesh
    assert np.all(face == 0)
    np.testing.assert_allclose(bary, expected, atol=1e-12)
    # a point above the middle of a face lands inside it with the right barycentrics
    centre = tri[7].mean(axis=0)
    normal = np.cross(tri[7, 1] - tri[7, 0], tri[7, 2] - tri[7, 0])
    face, bary = nearest_triangles(centre[None] + 0.01 * normal / np.linalg.norm(normal), vertices, faces)
    assert face[0] == 7 and np.allclose(bary, 1.0 / 3.0)


def test_surface_binding_follows_the_mesh():
    from avatar_capture.core.splats.surface import bind_to_surface, follow_surface

    rng = np.random.default_rng(22)
    vertices, faces = bumpy_sphere(rng)
    g = cloud(n=120, degree=2, seed=22)
    g = make_gaussians(g.means / np.linalg.norm(g.means, axis=1, keepdims=True) * rng.uniform(0.7, 1.3, (120, 1)),
                       g.rotations, g.log_scales, g.logit_opacities, g.sh)
    bound = bind_to_surface(g, vertices, faces)
    assert bound.surface is not None and bound.surface.face_indices.max() < len(faces)
    rest = follow_surface(bound, vertices, faces)  # on the rest mesh: the original cloud
    np.testing.assert_allclose(rest.means, g.means, atol=1e-5)
    np.testing.assert_allclose(covariances(rest), covariances(g), atol=1e-7)
    np.testing.assert_allclose(rest.sh, g.sh, atol=1e-5)
    assert rest.surface is None
    # a rigid motion of the mesh moves the splats like the same rigid transform
    rotation, translation = random_rotations(rng), np.array([0.2, 0.4, -1.0])
    moved = follow_surface(bound, vertices @ rotation.T + translation, faces)
    expected = transform_gaussians(g, rigid(rotation, translation))
    np.testing.assert_allclose(moved.means, expected.means, atol=1e-5)
    np.testing.assert_allclose(covariances(moved), covariances(expected), atol=1e-7)
    np.testing.assert_allclose(moved.sh, expected.sh, atol=1e-5)
    # moving the bound cloud with the mesh (similarity) and following it = following, then moving
    similarity = rigid(rotation, translation, 1.4)
    carried = follow_surface(transform_gaussians(bound, similarity), vertices @ (1.4 * rotation).T + translation, faces)
    expected = transform_gaussians(rest, similarity)
    np.testing.assert_allclose(carried.means, expected.means, atol=1e-5)
    np.testing.assert_allclose(covariances(carried), covariances(expected), atol=1e-7)
    np.testing.assert_allclose(carried.sh, expected.sh, atol=1e-5)
    # moving one vertex moves only the splats on triangles that use it
    bent = vertices.copy()
    bent[0] += [0.0, 0.0, 0.5]
    posed = follow_surface(bound, bent, faces)
    touched = np.isin(bound.surface.face_indices, np.nonzero(np.any(faces == 0, axis=1))[0])
    assert touched.any() and (~touched).any()
    np.testing.assert_allclose(posed.means[~touched], g.means[~touched], atol=1e-5)
    assert np.all(np.linalg.norm(posed.means[touched] - g.means[touched], axis=1) > 1e-3)
    with pytest.raises(AvatarCaptureError, match="not bound to a surface"):
        follow_surface(g, vertices, faces)


def test_a_surface_bound_cloud_is_not_written_to_interchange_files(tmp_path):
    """Its rotations and SH are triangle-relative: another tool would draw it wrong."""
    from avatar_capture.core.splats.gltf import write_glb
    from avatar_capture.core.splats.ply import write_ply
    from avatar_capture.core.splats.surface import bind_to_surface, follow_surface

    vertices, faces = bumpy_sphere(np.random.default_rng(3))
    bound = bind_to_surface(cloud(n=20, degree=1, seed=3), vertices, faces)
    for write, name in ((write_ply, "bound.ply"), (write_glb, "bound.glb")):
        with pytest.raises(FileFormatError, match="bound to mesh triangles") as error:
            write(bound, tmp_path / name)
        assert str(tmp_path / name) in str(error.value) and not (tmp_path / name).exists()
    write_ply(follow_surface(bound, vertices, faces), tmp_path / "posed.ply")
    save_splats(bound, tmp_path / "bound.npz")
    assert load_splats(tmp_path / "bound.npz").surface is not None

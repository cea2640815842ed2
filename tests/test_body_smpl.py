"""SMPL / SMPL-X through smplx, on synthetic model files this test writes.

The files have the official vertex and joint counts (the landmark vertex ids are
the official meshes' ids) but a made-up stick-figure body: rings of vertices round
each joint (the J_regressor averages a ring, so it reproduces the joint) and
vertices along each bone blended between its two joints. posedirs are zero so
smplx's forward is plain LBS, which our rig must reproduce exactly.
"""
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from avatar_capture.core.body import models, smpl_body
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.landmarks import LANDMARK_NAMES
from avatar_capture.core.settings import ComputeSettings

# SMPL joints in SMPL's frame (metres, Y up, +Z forward, +X the body's left), T-pose.
SMPL_JOINTS = np.array([
    [0.0, 0.0, 0.0], [0.07, -0.09, 0.0], [-0.07, -0.09, 0.0], [0.0, 0.11, -0.01],
    [0.11, -0.47, 0.0], [-0.11, -0.47, 0.0], [0.0, 0.25, 0.0], [0.09, -0.87, -0.04],
    [-0.09, -0.87, -0.04], [0.0, 0.31, 0.01], [0.12, -0.93, 0.08], [-0.12, -0.93, 0.08],
    [0.0, 0.52, -0.01], [0.08, 0.42, 0.0], [-0.08, 0.42, 0.0], [0.0, 0.6, 0.04],
    [0.18, 0.45, -0.01], [-0.18, 0.45, -0.01], [0.43, 0.43, -0.03], [-0.43, 0.43, -0.03],
    [0.68, 0.44, -0.03], [-0.68, 0.44, -0.03], [0.77, 0.43, -0.04], [-0.77, 0.43, -0.04],
])
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


def smplx_skeleton():
    """SMPL-X's 55 joints: SMPL's first 22, jaw and eyes on the head, five 3-joint fingers per wrist."""
    joints = list(SMPL_JOINTS[:22])
    parents = SMPL_PARENTS[:22]
    head = SMPL_JOINTS[15]
    for offset in ([0.0, -0.05, 0.05], [0.03, 0.03, 0.08], [-0.03, 0.03, 0.08]):
        joints.append(head + offset)
        parents.append(15)
    for wrist, sign in ((20, 1.0), (21, -1.0)):
        for finger in range(5):
            parent = wrist
            for knuckle in range(3):
                joints.append(SMPL_JOINTS[wrist] + [sign * (0.08 + 0.03 * knuckle), 0.0, 0.04 - 0.02 * finger])
                parents.append(parent)
                parent = len(joints) - 1
    return np.array(joints), parents


def write_model(path: Path, joints: np.ndarray, parents: list, vertex_count: int, seed: int,
                extra: dict | None = None, drop: tuple = ()) -> Path:
    rng = np.random.default_rng(seed)
    joint_count = len(joints)
    vertices = np.zeros((vertex_count, 3))
    weights = np.zeros((vertex_count, joint_count))
    regressor = np.zeros((joint_count, vertex_count))
    ring = np.array([[0.02, 0, 0], [-0.02, 0, 0], [0, 0, 0.02], [0, 0, -0.02]])
    for j in range(joint_count):
        rows = slice(4 * j, 4 * j + 4)
        vertices[rows] = joints[j] + ring
        weights[rows, j] = 1.0
        regressor[j, rows] = 0.25
    bones = np.arange(1, joint_count)
    for v in range(4 * joint_count, vertex_count):
        j = bones[v % len(bones)]
        t = rng.uniform()
        vertices[v] = (1 - t) * joints[parents[j]] + t * joints[j] + rng.normal(scale=0.03, size=3)
        weights[v, parents[j]], weights[v, j] = 1 - t, t
    kintree = np.array([[4294967295] + parents[1:], list(range(joint_count))], dtype=np.int64)
    arrays = {
        "v_template": vertices,
        "shapedirs": rng.normal(scale=0.01, size=(vertex_count, 3, 20)),
        "posedirs": np.zeros((vertex_count, 3, 9 * (joint_count - 1)), dtype=np.float32),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": rng.integers(0, vertex_count, size=(2 * vertex_count, 3)).astype(np.int64),
        **(extra or {}),
    }
    for key in drop:
        arrays.pop(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="module")
def smpl_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_model(folder / "smpl" / "SMPL_NEUTRAL.npz", SMPL_JOINTS, SMPL_PARENTS, 6890, seed=1)
    joints, parents = smplx_skeleton()
    hands = {"hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
             "hands_meanl": np.zeros(45), "hands_meanr": np.zeros(45),
             "lmk_faces_idx": np.arange(51), "lmk_bary_coords": np.full((51, 3), 1 / 3)}
    write_model(folder / "SMPLX_NEUTRAL.npz", joints, parents, 10475, seed=2, extra=hands)
    return folder


def smplx_forward(model, betas, pose, transl):
    with torch.no_grad():
        out = model(betas=torch.from_numpy(betas)[None], global_orient=torch.from_numpy(pose[None, 0]),
                    body_pose=torch.from_numpy(pose[None, 1:].reshape(1, -1)),
                    transl=torch.from_numpy(transl[None]), return_verts=True)
    return out.vertices[0].numpy(), out.joints[0].numpy()


def to_world(points, rig, rest_joint0):
    """SMPL-frame points -> our world frame, using the rig's ground lift (rest root head vs SMPL's)."""
    convert = smpl_body.SMPL_TO_WORLD.T
    return points @ convert + (rig.skeleton.rest_heads_world[0] - rest_joint0 @ convert)


@pytest.mark.parametrize("kind", ["smpl", "smplx"])
def test_rig_matches_smplx_forward(kind, smpl_folder):
    path = smpl_body.find_model_file(kind, smpl_folder)
    shape = {"beta0": 1.5, "beta3": -2.0}
    rig = smpl_body.build_smpl_rig(kind, smpl_folder, shape)
    betas = np.zeros(10)
    betas[0], betas[3] = 1.5, -2.0
    if kind == "smpl":
        data = dict(np.load(path))
        model = smplx.SMPL(model_path=str(path), data_struct=smplx.utils.Struct(**data), dtype=torch.float64)
    else:
        model = smplx.SMPLX(model_path=str(path), ext="npz", use_pca=False, dtype=torch.float64)
    joint_count = smpl_body.JOINT_COUNT[kind]
    assert rig.skeleton.joint_names == smpl_body.joint_names(kind)
    assert rig.skeleton.joint_count == joint_count and rig.landmark_names == LANDMARK_NAMES
    assert rig.shape_names == tuple(f"beta{i}" for i in range(10))

    posed_joints = 24 if kind == "smpl" else 22  # smplx's body_pose covers these (SMPL-X: hands apart)
    rest_vertices, rest_joints = smplx_forward(model, betas, np.zeros((posed_joints, 3)), np.zeros(3))
    assert np.min(rig.vertices_rest[:, 2]) == pytest.approx(0.0, abs=1e-12)  # grounded
    assert np.allclose(rig.vertices_rest, to_world(rest_vertices, rig, rest_joints[0]), atol=1e-6)
    assert np.allclose(rig.skeleton.rest_heads_world, to_world(rest_joints[:joint_count], rig, rest_joints[0]),
                       atol=1e-6)  # smplx stores its arrays as float32

    rng = np.random.default_rng(3)
    pose = rng.normal(scale=0.5, size=(posed_joints, 3))
    transl = np.array([0.3, -0.2, 0.5])
    vertices, joints = smplx_forward(model, betas, pose, transl)
    full_pose = np.zeros((1, joint_count, 3))
    full_pose[0, :posed_joints] = pose
    rotations, root = smpl_body.rotations_from_smpl_pose(rig, full_pose, transl[None])
    frames = rig.pose(rotations, root)
    ours = rig.skin(frames)[0]
    assert np.abs(ours - to_world(vertices, rig, rest_joints[0])).max() < 1e-5
    assert np.abs(frames[0, :, :3, 3] - to_world(joints[:joint_count], rig, rest_joints[0])).max() < 1e-5

    # Landmarks: the vertices smplx itself uses, the joints, and the midpoints.
    ids = smplx.vertex_ids.vertex_ids["smplh" if kind == "smpl" else "smplx"]
    landmarks = dict(zip(rig.landmark_names, rig.landmarks(frames)[0]))
    world_vertices = to_world(vertices, rig, rest_joints[0])
    world_joints = to_world(joints, rig, rest_joints[0])
    names = smpl_body.joint_names(kind)
    assert np.allclose(landmarks["nose"], world_vertices[ids["nose"]], atol=1e-6)
    assert np.allclose(landmarks["left_heel"], world_vertices[ids["LHeel"]], atol=1e-6)
    assert np.allclose(landmarks["right_toe"], world_vertices[ids["RBigToe"]], atol=1e-6)
    assert np.allclose(landmarks["left_knee"], world_joints[names.index("left_knee")], atol=1e-6)
    assert np.allclose(landmarks["pelvis"], 0.5 * (landmarks["left_hip"] + landmarks["right_hip"]), atol=1e-9)
    assert np.allclose(landmarks["neck"], 0.5 * (landmarks["left_shoulder"] + landmarks["right_shoulder"]),
                       atol=1e-9)


def test_rig_is_blender_oriented(smpl_folder):
    rig = smpl_body.build_smpl_rig("smpl", smpl_folder)
    s = rig.skeleton
    heads = dict(zip(s.joint_names, s.rest_heads_world))
    assert heads["head"][2] > heads["pelvis"][2] > heads["left_knee"][2]  # Z up
    assert heads["left_shoulder"][0] > 0 > heads["right_shoulder"][0]  # the body's left at +X
    assert heads["left_foot"][1] < heads["left_ankle"][1]  # toes forward, towards -Y
    axes = dict(zip(s.joint_names, s.rest_frames_world[:, :3, 1]))
    to_spine = heads["spine1"] - heads["pelvis"]
    assert np.allclose(axes["pelvis"], to_spine / np.linalg.norm(to_spine))  # the root points up the spine
    assert axes["left_elbow"][0] > 0.99  # T-pose arm along +X
    assert np.all(s.bone_lengths >= 0.01)
    assert rig.skin_weights.shape[1] <= 8 and np.allclose(rig.skin_weights.sum(axis=1), 1.0)


def test_check_model_folder_reports_problems(tmp_path):
    assert "No SMPL model folder is set" in smpl_body.check_model_folder("smpl", "")[0]
    assert "does not exist" in smpl_body.check_model_folder("smpl", tmp_path / "nowhere")[0]

    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(b"\x80")
    problem = smpl_body.check_model_folder("smpl", tmp_path)[0]
    assert "SMPL_NEUTRAL.npz" in problem and "chumpy" in problem and str(tmp_path) in problem

    path = write_model(tmp_path / "SMPL_MALE.npz", SMPL_JOINTS, SMPL_PARENTS, 6890, seed=4,
                       drop=("shapedirs", "weights"))
    problem = smpl_body.check_model_folder("smpl", tmp_path)[0]
    assert str(path) in problem and "missing shapedirs, weights" in problem

    write_model(tmp_path / "smpl" / "SMPL_NEUTRAL.npz", SMPL_JOINTS[:20], SMPL_PARENTS[:20], 300, seed=5)
    problem = smpl_body.check_model_folder("smpl", tmp_path)[0]
    assert "v_template has shape (300, 3), expected (6890, 3)" in problem

    (tmp_path / "smpl" / "SMPL_NEUTRAL.npz").write_bytes(b"not a zip")
    assert "not a readable .npz file" in smpl_body.check_model_folder("smpl", tmp_path)[0]
    assert smpl_body.check_model_folder("smplx", tmp_path)[0].startswith("No SMPL-X model file")


def test_models_cache_smpl_rigs_and_report_folder_problems(smpl_folder, tmp_path):
    settings = ComputeSettings(body_model="smpl", model_folder=str(smpl_folder), cache_dir=str(tmp_path))
    rig, path = models.cached_rig(settings, shape={"beta1": 0.5})
    assert path.is_file() and path.parent == settings.rig_cache_path
    again, same = models.cached_rig(settings, shape={"beta1": 0.5})
    assert same == path and np.array_equal(again.vertices_rest, rig.vertices_rest)
    assert models.rig_cache_file(settings, "smpl", {"beta1": 0.6}) != path
    assert models.default_shape("smpl") == {f"beta{i}": 0.0 for i in range(10)}
    with pytest.raises(AvatarCaptureError, match="no shape parameter 'height'"):
        models.build_rig(settings, {"height": 1.0})

    empty = ComputeSettings(body_model="smplx", model_folder=str(tmp_path / "missing"), cache_dir=str(tmp_path))
    with pytest.raises(AvatarCaptureError, match="does not exist"):
        models.build_rig(empty)

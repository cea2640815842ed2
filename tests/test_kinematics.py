"""Forward/inverse kinematics and rotation helpers against independent constructions."""
import numpy as np
import pytest

from avatar_capture.core import kinematics, rotations


def random_quats(rng, shape):
    return rotations.quat_normalize(rng.normal(size=shape + (4,)))


def chain_skeleton(rng, joints=6):
    """A random tree: parents before children, random rest frames with Y along the bone."""
    parents = np.array([-1] + [int(rng.integers(0, j)) for j in range(1, joints)])
    heads = rng.normal(size=(joints, 3))
    tails = heads + rng.normal(size=(joints, 3))
    frames = kinematics.frames_from_heads_tails(heads, tails, rng.normal(size=(joints, 3)))
    return parents, frames


def test_quaternion_matrix_round_trip():
    rng = np.random.default_rng(0)
    q = random_quats(rng, (200,))
    back = rotations.matrix_to_quat(rotations.quat_to_matrix(q))
    assert np.allclose(back, q, atol=1e-10)
    m = rotations.quat_to_matrix(q)
    assert np.allclose(m @ np.swapaxes(m, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(m), 1.0)


def test_quaternion_product_matches_matrix_product():
    rng = np.random.default_rng(1)
    a, b = random_quats(rng, (50,)), random_quats(rng, (50,))
    lhs = rotations.quat_to_matrix(rotations.quat_multiply(a, b))
    rhs = rotations.quat_to_matrix(a) @ rotations.quat_to_matrix(b)
    assert np.allclose(lhs, rhs, atol=1e-12)


def test_axis_angle_and_rotation_between():
    q = rotations.axis_angle_to_quat(np.array([0.0, 0.0, np.pi / 2]))
    assert np.allclose(rotations.quat_to_matrix(q) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    r = rotations.rotation_between(a, b)
    turned = np.einsum("nij,nj->ni", r, a / np.linalg.norm(a, axis=1, keepdims=True))
    assert np.allclose(turned, b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-9)
    opposite = rotations.rotation_between(np.array([1.0, 0, 0]), np.array([-1.0, 0, 0]))
    assert np.allclose(opposite @ [1.0, 0, 0], [-1.0, 0, 0], atol=1e-9)


def test_frames_are_rigid_and_point_along_bones():
    rng = np.random.default_rng(3)
    heads, tails = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    frames = kinematics.frames_from_heads_tails(heads, tails, np.tile([0.0, -1.0, 0.0], (30, 1)))
    rot = frames[:, :3, :3]
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)
    direction = (tails - heads) / np.linalg.norm(tails - heads, axis=1, keepdims=True)
    assert np.allclose(rot[:, :, 1], direction, atol=1e-12)
    assert np.allclose(frames[:, :3, 3], heads)


def test_rest_pose_reproduces_rest_frames():
    rng = np.random.default_rng(4)
    parents, rest = chain_skeleton(rng)
    identity = np.tile([1.0, 0, 0, 0], (1, len(parents), 1))
    posed = kinematics.forward_kinematics(rest, parents, identity, rest[None, 0, :3, 3])
    assert np.allclose(posed[0], rest, atol=1e-12)


def test_forward_kinematics_matches_per_joint_recursion():
    rng = np.random.default_rng(5)
    parents, rest = chain_skeleton(rng, joints=8)
    q = random_quats(rng, (3, len(parents)))
    root = rng.normal(size=(3, 3))
    posed = kinematics.forward_kinematics(rest, parents, q, root)
    for t in range(3):
        expected = {}
        for j, p in enumerate(parents):
            r = np.eye(4)
            r[:3, :3] = rotations.quat_to_matrix(q[t, j])
            if p < 0:
                m = rest[0] @ r
                m[:3, 3] = root[t]
            else:
                m = expected[p] @ np.linalg.inv(rest[p]) @ rest[j] @ r
            expected[j] = m
            assert np.allclose(posed[t, j], m, atol=1e-10)


def test_local_rotations_inverts_forward_kinematics():
    rng = np.random.default_rng(6)
    parents, rest = chain_skeleton(rng, joints=10)
    q = random_quats(rng, (4, len(parents)))
    root = rng.normal(size=(4, 3))
    posed = kinematics.forward_kinematics(rest, parents, q, root)
    q_back, root_back = kinematics.local_rotations(posed, rest, parents)
    assert np.allclose(q_back, q, atol=1e-9)
    assert np.allclose(root_back, root)


def test_skinning_and_landmark_regression_agree():
    """A landmark folded into bone points equals regressing the skinned vertices."""
    rng = np.random.default_rng(7)
    parents, rest = chain_skeleton(rng, joints=5)
    vertices = rng.normal(size=(40, 3))
    idx = rng.integers(0, 5, size=(40, 3))
    w = rng.random((40, 3))
    w /= w.sum(1, keepdims=True)
    regressor = rng.random((2, 40))
    regressor /= regressor.sum(1, keepdims=True)
    dense = np.zeros((40, 5))
    np.add.at(dense, (np.arange(40)[:, None], idx), w)
    bone_points = np.einsum("lv,vj,vb->ljb", regressor, dense, np.c_[vertices, np.ones(40)])
    posed = kinematics.forward_kinematics(rest, parents, random_quats(rng, (2, 5)), rng.normal(size=(2, 3)))
    deform = kinematics.skinning_matrices(posed, rest)
    skinned = kinematics.skin_points(vertices, idx, w, deform)
    landmarks = kinematics.regress_landmarks(deform, bone_points)
    assert np.allclose(landmarks, np.einsum("lv,tvc->tlc", regressor, skinned), atol=1e-10)


def test_check_parents_rejects_bad_orders():
    with pytest.raises(ValueError):
        kinematics.check_parents(np.array([0, 0]))
    with pytest.raises(ValueError):
        kinematics.check_parents(np.array([-1, 2, 0]))
    kinematics.check_parents(np.array([-1, 0, 1, 1]))


def test_quat_continuous_removes_sign_flips_only():
    rng = np.random.default_rng(8)
    steps = rotations.axis_angle_to_quat(np.cumsum(0.05 * rng.normal(size=(50, 3)), axis=0))
    flipped = steps * np.where(rng.random((50, 1)) < 0.5, -1.0, 1.0)
    smooth = rotations.quat_continuous(flipped)
    assert np.all(np.sum(smooth[1:] * smooth[:-1], axis=-1) > 0)
    assert np.allclose(rotations.quat_to_matrix(smooth), rotations.quat_to_matrix(flipped))

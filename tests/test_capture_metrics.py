"""Benchmark metrics against answers worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from avatar_capture.core.capture.metrics import (
    EVAL_JOINTS, accel_error, eval_joints, feet_of, foot_skating_ratio, mpjpe, pa_mpjpe, root_of,
    similarity_transform, trajectory_error,
)
from avatar_capture.core.landmarks import CONTACT_NAMES, LANDMARK_NAMES
from avatar_capture.core.rotations import axis_angle_to_quat, quat_to_matrix

RNG = np.random.default_rng(3)
WRIST = EVAL_JOINTS.index("left_wrist")
LEFT_HIP = EVAL_JOINTS.index("left_hip")


def sequence(frames: int = 20) -> np.ndarray:
    """A random but body-sized EVAL_JOINTS sequence (T, 12, 3), metres."""
    return RNG.normal(0.0, 0.3, (frames, len(EVAL_JOINTS), 3)) + RNG.normal(0.0, 2.0, (frames, 1, 3))


def random_rotations(frames: int) -> np.ndarray:
    return quat_to_matrix(axis_angle_to_quat(RNG.normal(0.0, 1.0, (frames, 3))))


def test_eval_joints_and_feet_pick_the_named_landmarks():
    landmarks = np.arange(len(LANDMARK_NAMES))[None, :, None] * np.ones((2, 1, 3))
    np.testing.assert_array_equal(eval_joints(landmarks)[0, :, 0], [LANDMARK_NAMES.index(n) for n in EVAL_JOINTS])
    np.testing.assert_array_equal(feet_of(landmarks)[0, :, 0], [LANDMARK_NAMES.index(n) for n in CONTACT_NAMES])
    joints = eval_joints(landmarks)
    assert root_of(joints)[0, 0] == pytest.approx(0.5 * (LANDMARK_NAMES.index("left_hip")
                                                         + LANDMARK_NAMES.index("right_hip")))


def test_mpjpe_ignores_root_translation_and_counts_joint_offsets():
    gt = sequence()
    assert mpjpe(gt + RNG.normal(0, 1, (len(gt), 1, 3)), gt) == pytest.approx(0.0, abs=1e-9)
    moved_wrist = gt.copy()
    moved_wrist[:, WRIST, 0] += 0.012  # 12 mm on one joint of 12
    assert mpjpe(moved_wrist, gt) == pytest.approx(1.0)
    moved_hip = gt.copy()
    moved_hip[:, LEFT_HIP, 1] += 0.024  # moves the root by 12 mm: every joint is 12 mm off relative to it
    assert mpjpe(moved_hip, gt) == pytest.approx(12.0)


def test_frames_with_unknown_prediction_are_left_out():
    gt = sequence()
    pred = gt.copy()
    pred[:, WRIST, 0] += 0.012
    pred[5] = np.nan
    pred[6, 3] = np.nan
    assert mpjpe(pred, gt) == pytest.approx(1.0)
    assert pa_mpjpe(pred, gt) == pytest.approx(pa_mpjpe(np.delete(pred, [5, 6], 0), np.delete(gt, [5, 6], 0)))
    assert np.isnan(mpjpe(np.full_like(gt, np.nan), gt))


def test_pa_mpjpe_removes_per_frame_similarity_but_not_shape():
    gt = sequence()
    rotations = random_rotations(len(gt))
    scales = RNG.uniform(0.5, 2.0, len(gt))
    pred = scales[:, None, None] * np.einsum("tij,tnj->tni", rotations, gt) + RNG.normal(0, 1, (len(gt), 1, 3))
    assert pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert mpjpe(pred, gt) > 100.0
    # A mirror image is not a similarity: the alignment must not reflect.
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert pa_mpjpe(mirrored, gt) > 50.0
    noisy = gt + RNG.normal(0, 0.01, gt.shape)
    assert 0.0 < pa_mpjpe(noisy, gt) < mpjpe(noisy, gt)


def test_similarity_transform_recovers_a_known_transform():
    source = RNG.normal(0, 1, (30, 3))
    rotation = random_rotations(1)[0]
    target = 1.7 * source @ rotation.T + np.array([1.0, -2.0, 0.5])
    s, r, t = similarity_transform(source, target, scale=True)
    assert s == pytest.approx(1.7)
    np.testing.assert_allclose(r, rotation, atol=1e-9)
    np.testing.assert_allclose(t, [1.0, -2.0, 0.5], atol=1e-9)
    s, r, _ = similarity_transform(source, target, scale=False)
    assert s == 1.0
    np.testing.assert_allclose(r, rotation, atol=1e-9)


def test_accel_error_of_alternating_jitter():
    gt = np.repeat(sequence(1), 12, axis=0)
    pred = gt.copy()
    pred[:, WRIST, 2] += 0.003 * (-1.0) ** np.arange(12)  # second difference +-12 mm on one joint of 12
    assert accel_error(pred, gt) == pytest.approx(1.0)
    steady = gt.copy()
    steady[:, WRIST, 0] += 0.05 * np.arange(12)  # constant velocity: no acceleration
    steady += 0.2 * np.arange(12)[:, None, None] ** 2  # the whole body accelerates: the root takes it
    assert accel_error(steady, gt) == pytest.approx(0.0, abs=1e-9)
    gapped = pred.copy()
    gapped[4] = np.nan  # removes the three triples that use frame 4
    assert accel_error(gapped, gt) == pytest.approx(1.0)


def test_foot_skating_ratio_counts_moving_planted_steps():
    frames = 11
    feet = np.zeros((frames, len(CONTACT_NAMES), 3))
    steps = np.full(frames - 1, 0.005)
    steps[[1, 4, 7]] = 0.02  # three of ten steps slide 2 cm
    feet[1:, 0, 0] = np.cumsum(steps)
    feet[:, 2, 1] = 0.5 * np.arange(frames)  # a swinging foot: fast, but never in contact
    contacts = np.zeros((frames, 4))
    contacts[:, 0] = 0.9
    assert foot_skating_ratio(feet, contacts) == pytest.approx(0.3)
    contacts[5, 0] = 0.2  # lifts at frame 5: steps 4-5 and 5-6 are no longer planted
    assert foot_skating_ratio(feet, contacts) == pytest.approx(2 / 8)
    feet[8] = np.nan  # steps 7-8 and 8-9 unknown
    assert foot_skating_ratio(feet, contacts) == pytest.approx(1 / 6)
    assert np.isnan(foot_skating_ratio(feet, np.zeros((frames, 4))))


def test_trajectory_error_is_rigid_and_relative_to_the_distance_travelled():
    frames = 101
    gt = np.zeros((frames, 3))
    gt[:, 0] = np.linspace(0.0, 10.0, frames)
    gt[:, 2] = 0.9 + 0.03 * np.sin(np.arange(frames))  # a bob: not horizontal travel
    rotation = random_rotations(1)[0]
    moved = gt @ rotation.T + np.array([3.0, 4.0, -1.0])
    assert trajectory_error(moved, gt) == pytest.approx(0.0, abs=1e-9)
    # 20 % too long a path cannot be fixed by a rigid transform: mean |0.2 (x - 5)| over the 10 m walked.
    stretched = gt.copy()
    stretched[:, 0] = 5.0 + 1.2 * (gt[:, 0] - 5.0)
    expected = np.mean(np.abs(0.2 * (gt[:, 0] - 5.0))) / 10.0
    assert trajectory_error(stretched, gt) == pytest.approx(expected, rel=1e-6)
    assert np.isnan(trajectory_error(gt, np.zeros_like(gt)))  # no travel, no ratio


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        mpjpe(sequence(3), sequence(4))

"""The whole-sequence fit on synthetic observations of a known motion seen by a known camera.

The observations are what a detector would give: 2D landmarks with pixel noise
and outliers, metric 3D landmarks with a wrong scale and noise, and a few lost
frames. The fit must recover the motion, the camera's height and pitch, and the
foot contacts; pose transfer and reduced rigs are checked against exact answers.
"""
from __future__ import annotations

import numpy as np
import pytest

from avatar_capture.core.capture.fit.initialise import default_intrinsics, ground_tilt
from avatar_capture.core.capture.fit.observations import Observations
from avatar_capture.core.capture.fit.solve import fit_sequence
from avatar_capture.core.demo_motion import make_demo_clip
from avatar_capture.core.landmarks import LANDMARK_NAMES
from avatar_capture.core.pose_transfer import driven_chains, pose_from_landmarks
from avatar_capture.core.rig import expand_rotations
from avatar_capture.core.rotations import axis_angle_to_quat, matrix_to_quat, quat_to_axis_angle

PELVIS = LANDMARK_NAMES.index("pelvis")
IMAGE = (1280, 720)


def camera(pitch_degrees: float, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """world_to_cam rotation and translation of a camera looking along +Y, pitched down."""
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    a = np.radians(pitch_degrees)
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    rotation = pitch @ level
    return rotation, -rotation @ centre


def synthetic_observations(clip, rotation, translation, K, seed=0):
    rng = np.random.default_rng(seed)
    truth = clip.landmarks_world
    cam = truth @ rotation.T + translation
    pixels = K[0, 0] * cam[..., :2] / cam[..., 2:] + K[:2, 2]
    pixels = pixels + rng.normal(0.0, 3.0, pixels.shape)
    outliers = rng.random(pixels.shape[:2]) < 0.03
    pixels[outliers] += rng.normal(0.0, 60.0, (outliers.sum(), 2))
    points = (truth - truth[:, PELVIS:PELVIS + 1]) @ rotation.T * 1.1 + rng.normal(0.0, 0.03, truth.shape)
    weights = np.full(truth.shape[:2], 0.9)
    lost = np.zeros(len(truth), bool)
    lost[20:24] = True
    pixels[lost], points[lost], weights[lost] = np.nan, np.nan, 0.0
    return Observations(pixels, weights, points, lost, IMAGE), cam


@pytest.fixture(scope="module")
def walk(anny_rig):
    return make_demo_clip(anny_rig, seconds=2.5)


def test_fit_recovers_motion_camera_and_contacts(anny_rig, walk):
    rotation, translation = camera(8.0, np.array([0.5, -5.0, 1.3]))
    K = default_intrinsics(IMAGE)
    obs, truth_cam = synthetic_observations(walk, rotation, translation, K)
    fit = fit_sequence(anny_rig, obs, walk.fps, K, quality="balanced")
    landmarks = anny_rig.landmarks(anny_rig.pose(fit.rotations, fit.root_translation))
    fitted_cam = np.einsum("tab,tlb->tla", fit.world_to_cam[:, :3, :3], landmarks) + fit.world_to_cam[:, None, :3, 3]
    error_cam = np.linalg.norm(fitted_cam - truth_cam, axis=-1).mean()
    assert error_cam < 0.05, f"camera-frame landmark error {error_cam * 1000:.0f} mm"
    relative = lambda x: x - x[:, PELVIS:PELVIS + 1]  # noqa: E731
    mpjpe = np.linalg.norm(relative(landmarks) - relative(walk.landmarks_world), axis=-1).mean()
    assert mpjpe < 0.04, f"world root-relative error {mpjpe * 1000:.0f} mm"
    centre = -fit.world_to_cam[0, :3, :3].T @ fit.world_to_cam[0, :3, 3]
    assert abs(centre[2] - 1.3) < 0.1, f"camera height {centre[2]:.2f} m, expected 1.3 m"
    pitch_error = np.degrees(np.linalg.norm(quat_to_axis_angle(matrix_to_quat(fit.world_to_cam[0, :3, :3] @ rotation.T))))
    assert pitch_error < 2.0, f"camera orientation off by {pitch_error:.1f} degrees"
    agreement = ((fit.contacts > 0.5) == (walk.contacts > 0.5)).mean()
    assert agreement > 0.8, f"contacts agree in {agreement:.0%} of frames"
    assert fit.confidence[obs.lost].max() < 0.05
    assert fit.confidence[~obs.lost].mean() > 0.5


def test_pose_transfer_reproduces_a_pose_of_the_same_body(anny_rig, walk):
    rng = np.random.default_rng(1)
    rotations = walk.rotations.copy()
    chains = driven_chains(anny_rig)
    for name in ("left_shoulder", "right_elbow", "left_hip", "right_knee"):
        j = chains[name][0]
        rotations[:, j] = axis_angle_to_quat(quat_to_axis_angle(rotations[:, j]) + rng.normal(0, 0.2, 3))
    targets = anny_rig.landmarks(anny_rig.pose(rotations, walk.root_translation))
    got, root = pose_from_landmarks(anny_rig, targets)
    landmarks = anny_rig.landmarks(anny_rig.pose(got, root))
    error = np.linalg.norm(landmarks - targets, axis=-1)
    assert error[:, PELVIS].max() < 1e-6
    assert error.mean() < 0.02, f"mean landmark error {error.mean() * 1000:.0f} mm"


def test_reduced_rig_matches_the_full_rig(anny_rig):
    keep = [j for joints in driven_chains(anny_rig).values() for j in joints]
    small, kept = anny_rig.reduced(keep)
    rng = np.random.default_rng(2)
    quats = axis_angle_to_quat(rng.normal(0.0, 0.4, (3, len(kept), 3)))
    root = rng.normal(0.0, 1.0, (3, 3))
    full = anny_rig.pose(expand_rotations(quats, kept, len(anny_rig.skeleton.parents)), root)
    reduced = small.pose(quats, root)
    assert np.allclose(small.landmarks(reduced), anny_rig.landmarks(full), atol=1e-9)
    assert np.allclose(small.skin(reduced[:1]), anny_rig.skin(full[:1]), atol=1e-9)


def test_ground_tilt_levels_a_sloped_walk():
    frames = np.linspace(0.0, 4.0, 80)
    slope = np.tan(np.radians(6.0))
    feet = np.zeros((80, 4, 3))
    feet[..., 1] = frames[:, None]
    feet[..., 2] = slope * frames[:, None] + np.where(np.arange(4) % 2, 0.1, 0.0)
    levelled = feet @ ground_tilt(feet).T
    lowest = levelled[..., 2].min(axis=1)
    assert np.ptp(lowest) < 0.005
    assert np.allclose(ground_tilt(feet[:, :, :] * [1, 0, 1]), np.eye(3))  # feet that stay put: level camera

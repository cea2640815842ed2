"""resample_clip: a clip at another frame rate over the same duration (pure numpy)."""
from __future__ import annotations

import numpy as np
import pytest

from avatar_capture.core.clip import Camera, MotionClip
from avatar_capture.core.kinematics import forward_kinematics
from avatar_capture.core.retarget.resample import resample_clip
from avatar_capture.core.rotations import axis_angle_to_quat, quat_multiply, quat_to_axis_angle
from avatar_capture.core.skeleton import Skeleton


def chain_skeleton(joints: int = 4) -> Skeleton:
    """A vertical chain of 10 cm bones, rest frames Y up the chain (world +Z)."""
    frames = np.tile(np.eye(4), (joints, 1, 1))
    frames[:, :3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # columns: X, Y = +Z, Z = -Y
    frames[:, 2, 3] = 1.0 + 0.1 * np.arange(joints)
    return Skeleton(tuple(f"j{i}" for i in range(joints)), np.arange(joints) - 1, frames, np.full(joints, 0.1))


def spinning_clip(fps: float, seconds: float, *, camera: bool = False) -> MotionClip:
    """Joint i turns about a fixed axis at (i + 1) rad/s (angles past pi included); the root moves
    at 1 m/s along X; contacts ramp; landmarks are two points moving linearly."""
    skeleton = chain_skeleton()
    frames = int(round(seconds * fps)) + 1
    time = np.arange(frames) / fps
    axes = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]])
    rotations = axis_angle_to_quat((np.arange(1, 5)[None, :, None] * time[:, None, None]) * axes[None])
    root = np.stack([time, np.zeros_like(time), np.ones_like(time)], axis=1)
    joints = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, rotations, root)[:, :, :3, 3]
    landmarks = np.stack([root, root + [0, 0, 0.5]], axis=1)
    contacts = np.clip(np.stack([time / seconds] * 4, axis=1), 0, 1)
    cam = None
    if camera:
        world_to_cam = np.tile(np.eye(4), (frames, 1, 1))
        angle = 0.5 * time
        world_to_cam[:, 0, 0] = world_to_cam[:, 1, 1] = np.cos(angle)
        world_to_cam[:, 0, 1], world_to_cam[:, 1, 0] = -np.sin(angle), np.sin(angle)
        centre = np.stack([np.zeros_like(time), -3 + time, np.ones_like(time)], axis=1)
        world_to_cam[:, :3, 3] = -np.einsum("tij,tj->ti", world_to_cam[:, :3, :3], centre)
        cam = Camera(np.diag([500.0, 500.0, 1.0]), world_to_cam, (640, 480))
    extras = {"frame_confidence": np.ones(frames), "source_video": np.array("walk.mp4")}
    return MotionClip(fps=fps, skeleton=skeleton, rotations=rotations, root_translation=root,
                      joints_world=joints, landmark_names=("a", "b"), landmarks_world=landmarks,
                      contacts=contacts, body_model="none", body_shape_names=(), body_shape=np.zeros(0),
                      camera=cam, extras=extras)


@pytest.mark.parametrize("source_fps, target_fps", [(120.0, 30.0), (24.0, 60.0), (50.0, 24.0)])
def test_resampled_clip_is_the_same_motion_at_the_new_times(source_fps: float, target_fps: float) -> None:
    seconds = 1.0
    source = spinning_clip(source_fps, seconds, camera=True)
    out = resample_clip(source, target_fps)
    truth = spinning_clip(target_fps, seconds, camera=True)
    assert out.fps == target_fps and out.frame_count == truth.frame_count
    # Constant angular velocity: slerp between frames is exact, whatever the angle (> pi here).
    relative = quat_multiply(out.rotations * [1, -1, -1, -1], truth.rotations)
    assert np.linalg.norm(quat_to_axis_angle(relative), axis=-1).max() < 1e-6
    assert np.all(np.sum(out.rotations[1:] * out.rotations[:-1], axis=-1) >= 0.0)  # keyable as they are
    assert np.allclose(out.root_translation, truth.root_translation, atol=1e-9)
    assert np.allclose(out.joints_world, truth.joints_world, atol=1e-6)
    assert np.allclose(out.landmarks_world, truth.landmarks_world, atol=1e-9)
    assert np.allclose(out.contacts, truth.contacts, atol=1e-9)
    assert np.allclose(out.camera.world_to_cam, truth.camera.world_to_cam, atol=1e-6)
    assert out.camera.image_size == (640, 480) and out.skeleton is source.skeleton
    # Per-frame capture observations describe video frames: dropped; per-clip extras kept.
    assert set(out.extras) == {"source_video"}


@pytest.mark.parametrize("target_fps", [25.0, 29.97])
def test_duration_kept_and_endpoints_exact(target_fps: float) -> None:
    source = spinning_clip(120.0, 1.0)
    out = resample_clip(source, target_fps)
    assert out.frame_count == 31 if target_fps == 29.97 else 26
    assert (out.frame_count - 1) / out.fps == pytest.approx((source.frame_count - 1) / source.fps, abs=0.5 / out.fps)
    # The last frame is clamped to the source's last (29.97 fps: 1.001 s would be past the end).
    dots = np.sum(out.rotations[[0, -1]] * source.rotations[[0, -1]], axis=-1)
    assert np.allclose(np.abs(dots), 1.0)  # q and -q: the same rotation
    assert np.allclose(out.joints_world[-1], source.joints_world[-1], atol=1e-9)


def test_same_rate_returns_the_clip_and_bad_rate_raises() -> None:
    source = spinning_clip(30.0, 0.2)
    assert resample_clip(source, 30.0) is source
    with pytest.raises(ValueError, match="positive"):
        resample_clip(source, 0.0)


def test_short_arc_across_the_sign_flip() -> None:
    """Stored quaternions q and -q for consecutive frames still interpolate the short way."""
    source = spinning_clip(10.0, 0.2)
    rotations = source.rotations.copy()
    rotations[1] *= -1.0
    flipped = MotionClip(**{**source.__dict__, "rotations": rotations})
    out = resample_clip(flipped, 20.0)
    halfway = out.rotations[1]
    expected = resample_clip(source, 20.0).rotations[1]
    assert np.allclose(np.abs(np.sum(halfway * expected, axis=-1)), 1.0, atol=1e-9)

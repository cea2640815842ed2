"""Smooth random motions of a rig for tests that need a clip but not a particular motion."""
from __future__ import annotations

import numpy as np

from avatar_capture.core.clip import MotionClip, clip_from_pose
from avatar_capture.core.rotations import axis_angle_to_quat


def random_clip(
    rig, frames: int, seed: int = 0, fps: float = 30.0, camera=None, amplitude_rad: float = 0.4
) -> MotionClip:
    """Every joint swings on slow random sinusoids (up to amplitude_rad per axis) while the root
    walks forward along -Y and bobs; contacts are random in 0..1."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None]
    joints = rig.skeleton.joint_count
    amplitude = rng.uniform(-amplitude_rad, amplitude_rad, (1, joints, 3))
    period = rng.uniform(20, 80, (1, joints, 3))
    phase = rng.uniform(0, 2 * np.pi, (1, joints, 3))
    rotations = axis_angle_to_quat(amplitude * np.sin(2 * np.pi * t / period + phase))
    root = rig.skeleton.rest_heads_world[0] + np.outer(np.arange(frames), [0.01, -0.02, 0.0])
    root[:, 2] += 0.03 * np.sin(np.arange(frames) / 5.0)
    contacts = rng.uniform(0, 1, size=(frames, 4))
    return clip_from_pose(rig, rotations, root, fps, contacts=contacts, camera=camera)

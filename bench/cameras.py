"""Known cameras for rendered ground truth: pinhole intrinsics from a field of view, look-at poses.

The benchmark and the demo video render the body through cameras whose every
parameter is known, so a capture's camera and world trajectory can be scored.
Conventions are the clip's: OpenCV camera axes (x right, y down, z forward),
world_to_cam (T, 4, 4) matrices, world = Blender's (metres, Z up), and pixel
centres at integer coordinates (blender/camera.py turns these into a Blender camera).
"""
from __future__ import annotations

import numpy as np

from ..core.clip import Camera

_WORLD_UP = np.array([0.0, 0.0, 1.0])


def intrinsics(width: int, height: int, horizontal_fov_degrees: float) -> np.ndarray:
    """K (3, 3) of a camera with square pixels and the principal point at the image centre."""
    focal = 0.5 * width / np.tan(0.5 * np.radians(horizontal_fov_degrees))
    return np.array([[focal, 0.0, 0.5 * (width - 1)], [0.0, focal, 0.5 * (height - 1)], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """world_to_cam (T, 4, 4), OpenCV axes, for cameras at eye (T, 3) looking at target (T, 3), no roll.

    The camera's x axis stays horizontal (world up is +Z), so the views must not look straight up or down.
    """
    eye, target = np.atleast_2d(eye).astype(np.float64), np.atleast_2d(target).astype(np.float64)
    forward = target - eye
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, _WORLD_UP)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    world_to_cam = np.zeros((len(eye), 4, 4))
    world_to_cam[:, :3, :3] = np.stack([right, down, forward], axis=1)
    world_to_cam[:, :3, 3] = -np.einsum("tij,tj->ti", world_to_cam[:, :3, :3], eye)
    world_to_cam[:, 3, 3] = 1.0
    return world_to_cam


def project(camera: Camera, points_world: np.ndarray) -> np.ndarray:
    """Pixels (T, N, 2) of world points (T, N, 3) seen by camera (one world_to_cam per frame)."""
    rotation, translation = camera.world_to_cam[:, None, :3, :3], camera.world_to_cam[:, None, :3, 3]
    in_camera = np.einsum("tnij,tnj->tni", rotation, points_world) + translation
    pixels = np.einsum("ij,tnj->tni", camera.K, in_camera)
    return pixels[..., :2] / pixels[..., 2:]

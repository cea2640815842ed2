"""The fit's first guess: intrinsics, pose from 3D landmarks, depth from 2D ones, camera above the ground.

A whole-sequence optimisation only finds the right minimum from a good start.
The pose comes from the detector's metric 3D landmarks (pose_transfer), the
distance from the camera from the 2D landmarks (a linear least-squares solve per
frame once the pose is known), and the world from the camera held level with
the lowest foot points on Z = 0. A moving camera's unknown translation scale is
the one that makes the body's world path smoothest (closed form).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...landmarks import CONTACT_NAMES, LANDMARK_NAMES
from ...pose_transfer import pose_from_landmarks
from ...rig import RiggedBody
from ...rotations import matrix_to_quat, quat_multiply
from .observations import Observations

# World (Blender: X right, Y forward from the camera, Z up) from a level OpenCV camera (x right, y down, z forward).
WORLD_FROM_LEVEL_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
MIN_DEPTH_M = 0.5
_FOOT = [LANDMARK_NAMES.index(n) for n in CONTACT_NAMES]
_PELVIS = LANDMARK_NAMES.index("pelvis")


@dataclass(frozen=True)
class CameraPath:
    """A camera's motion relative to its first frame: world_to_cam_t = [rotations_t | scale * translations_t] @ first.

    rotations (T, 3, 3), translations (T, 3) up to one unknown scale (zeros for a static camera).
    """

    rotations: np.ndarray
    translations: np.ndarray

    @classmethod
    def static(cls, frames: int) -> "CameraPath":
        return cls(np.repeat(np.eye(3)[None], frames, axis=0), np.zeros((frames, 3)))


@dataclass(frozen=True)
class InitialFit:
    """First guess for a reduced rig: rotations (T, J, 4) wxyz, root_translation (T, 3) world metres,
    first_world_to_cam (4, 4) of frame 0, translation_scale of the camera path."""

    rotations: np.ndarray
    root_translation: np.ndarray
    first_world_to_cam: np.ndarray
    translation_scale: float


def default_intrinsics(image_size: tuple[int, int], fov_degrees: float | None = None) -> np.ndarray:
    """K (3, 3) in pixels: principal point at the centre; focal from the horizontal field of view,
    or, when unknown, equal to the image diagonal (about 53 degrees diagonally, typical of phones)."""
    width, height = image_size
    if fov_degrees is None:
        focal = float(np.hypot(width, height))
    else:
        focal = 0.5 * width / np.tan(np.radians(fov_degrees) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Values (T, ...) with NaN runs filled by linear interpolation in time (ends held); all-NaN series stay NaN."""
    values = np.array(values, dtype=np.float64)
    flat = values.reshape(len(values), -1)
    frames = np.arange(len(values))
    for column in range(flat.shape[1]):
        known = np.isfinite(flat[:, column])
        if known.any() and not known.all():
            flat[:, column] = np.interp(frames, frames[known], flat[known, column])
    return flat.reshape(values.shape)


def initial_fit(rig: RiggedBody, obs: Observations, K: np.ndarray, path: CameraPath) -> InitialFit:
    """First guess of pose, position and camera for the rig (reduced or full) from the observations."""
    cam_rotations = path.rotations @ WORLD_FROM_LEVEL_CAMERA.T  # world_to_cam rotation per frame
    cam_points = fill_gaps(obs.camera_points)
    targets_world = np.einsum("tla,tab->tlb", cam_points, cam_rotations)  # world = R^T cam
    rotations, root = pose_from_landmarks(rig, targets_world)
    posed = rig.landmarks(rig.pose(rotations, root))
    relative_cam = np.einsum("tab,tlb->tla", cam_rotations, posed - posed[:, _PELVIS:_PELVIS + 1])
    depth_shift = fill_gaps(_solve_translations(relative_cam, obs, K))
    depth_shift = _median_filter(depth_shift, 5)
    body_cam = np.einsum("tba,tb->ta", cam_rotations, depth_shift)  # R^T tau
    pelvis_offset = root - posed[:, _PELVIS]
    path_world = np.einsum("tba,tb->ta", cam_rotations, path.translations)
    scale = _smoothest_scale(body_cam, path_world) if np.any(path.translations) else 0.0
    root = pelvis_offset + body_cam - scale * path_world
    # Tilt the world so the ground under the feet is level, then put it at Z = 0 with the origin
    # under the first pelvis. Turning the world turns the root and the camera with it.
    feet = rig.landmarks(rig.pose(rotations, root))[:, _FOOT]
    tilt = ground_tilt(feet)
    rotations = rotations.copy()
    rotations[:, 0] = quat_multiply(matrix_to_quat(_rest_root_turn(rig, tilt)), rotations[:, 0])
    root = root @ tilt.T
    feet = feet @ tilt.T
    pelvis = (root - pelvis_offset @ tilt.T)[0]
    shift = -np.array([pelvis[0], pelvis[1], np.percentile(feet[..., 2], 5)])
    root = root + shift
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3] = cam_rotations[0] @ tilt.T
    world_to_cam[:3, 3] = -world_to_cam[:3, :3] @ shift
    return InitialFit(rotations, root, world_to_cam, float(scale))


def ground_tilt(feet_world: np.ndarray, min_travel_m: float = 0.5) -> np.ndarray:
    """Rotation (3, 3) about the world X axis levelling the ground under the feet (the camera's pitch).

    The lowest foot point of each frame (T, P, 3) lies on the ground in most
    frames; a line through them along the viewing direction (Y), fitted
    robustly (points well above it are steps in the air), gives the camera's
    pitch. Roll stays 0: hand-held and tripod cameras are close to level, and
    the two feet are too close together to measure it. Identity where the feet
    travel less than `min_travel_m` in depth.
    """
    lowest = feet_world[np.arange(len(feet_world)), np.argmin(feet_world[..., 2], axis=1)]
    lowest = lowest[np.isfinite(lowest).all(-1)]
    if len(lowest) < 10 or np.ptp(lowest[:, 1]) < min_travel_m:
        return np.eye(3)
    design = np.column_stack((lowest[:, 1], np.ones(len(lowest))))
    keep = np.ones(len(lowest), bool)
    for _ in range(5):
        slope = np.linalg.lstsq(design[keep], lowest[keep, 2], rcond=None)[0][0]
        residual = lowest[:, 2] - design @ np.linalg.lstsq(design[keep], lowest[keep, 2], rcond=None)[0]
        keep = residual < max(0.03, np.percentile(residual, 60))
    angle = np.arctan(slope)
    if abs(angle) > np.radians(30):  # not a plausible ground for a roughly level camera
        return np.eye(3)
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def _rest_root_turn(rig: RiggedBody, world_turn: np.ndarray) -> np.ndarray:
    """The root's local rotation change (3, 3) that turns the body by world_turn: Rest^T A Rest."""
    rest = rig.skeleton.rest_frames_world[0, :3, :3]
    return rest.T @ world_turn @ rest


def _solve_translations(points_cam: np.ndarray, obs: Observations, K: np.ndarray) -> np.ndarray:
    """Per frame, the camera-frame shift tau (T, 3) putting points_cam + tau on the observed pixels.

    Pinhole projection is linear in tau once multiplied out:
    f (X + tx) - (u - cx)(Z + tz) = 0 and f (Y + ty) - (v - cy)(Z + tz) = 0, weighted
    by the detection confidence. NaN where a frame has under four usable points.
    """
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    u = obs.pixels[..., 0] - cx
    v = obs.pixels[..., 1] - cy
    w = np.where(np.isfinite(u) & np.isfinite(v), obs.weights, 0.0)
    u, v = np.nan_to_num(u), np.nan_to_num(v)
    X, Y, Z = points_cam[..., 0], points_cam[..., 1], points_cam[..., 2]
    zeros = np.zeros_like(u)
    rows = np.concatenate((np.stack((f + zeros, zeros, -u), -1), np.stack((zeros, f + zeros, -v), -1)), 1)
    rhs = np.concatenate((u * Z - f * X, v * Z - f * Y), 1)
    ww = np.concatenate((w, w), 1)
    normal = np.einsum("tn,tna,tnb->tab", ww, rows, rows)
    right = np.einsum("tn,tna,tn->ta", ww, rows, rhs)
    usable = (w > 0.3).sum(1) >= 4
    tau = np.full((len(u), 3), np.nan)
    tau[usable] = np.linalg.solve(normal[usable] + 1e-9 * np.eye(3), right[usable])
    tau[:, 2] = np.where(np.isfinite(tau[:, 2]), np.maximum(tau[:, 2], MIN_DEPTH_M), np.nan)
    return tau


def _median_filter(values: np.ndarray, width: int) -> np.ndarray:
    """Running median over time (T, D), window `width` (odd), shrinking at the ends."""
    half = width // 2
    out = np.empty_like(values)
    for t in range(len(values)):
        out[t] = np.median(values[max(0, t - half):t + half + 1], axis=0)
    return out


def _smoothest_scale(body_world: np.ndarray, path_world: np.ndarray) -> float:
    """The s >= 0 minimising the squared acceleration of body_world - s * path_world (T, 3)."""
    if len(body_world) < 3:
        return 0.0
    a = np.diff(body_world, 2, axis=0)
    b = np.diff(path_world, 2, axis=0)
    denominator = float(np.sum(b * b))
    return max(0.0, float(np.sum(a * b)) / denominator) if denominator > 1e-12 else 0.0

"""Accuracy figures of a motion against ground truth, as used by the capture benchmark.

Why these: together they say whether a capture is usable for animation.
MPJPE and PA-MPJPE measure the pose, acceleration error the jitter, foot
skating the sliding of planted feet, and the world-trajectory error whether the
body goes where the person went. Definitions (all inputs in metres, world or
camera axes, any frame rate; outputs in millimetres or ratios):

  * joints: EVAL_JOINTS, the 12 limb landmarks every source has (shoulders,
    elbows, wrists, hips, knees, ankles); the root is the midpoint of the hips.
  * mpjpe: mean over frames and joints of |pred - gt| after subtracting each
    frame's root from both (mm).
  * pa_mpjpe: the same after aligning each predicted frame to the truth with
    the best similarity transform (rotation, translation, scale; Umeyama) (mm).
  * accel_error: mean over joints and frames of |a_pred - a_gt|, a being the
    second difference x[t-1] - 2 x[t] + x[t+1] of root-relative positions, in
    mm per frame squared (so it depends on the frame rate; the benchmark is 30 fps).
  * foot_skating_ratio: over every foot point (heels and toes) and every pair of
    consecutive frames in which the ground truth has that point in contact at
    both frames, the share where the predicted point moves more than 1 cm (3D
    distance, in the prediction's own world frame) from one frame to the next.
  * trajectory_error: the predicted root path is aligned to the true one with a
    single rigid transform (rotation and translation, no scale: the capture claims
    metric units) over the whole sequence; the mean distance between aligned and
    true roots divided by the true horizontal (XY) distance travelled.
Frames where the prediction is unknown (any NaN among the joints used) are left
out of every figure; a figure with nothing left to measure is NaN.
"""
from __future__ import annotations

import numpy as np

from ..landmarks import CONTACT_NAMES, LANDMARK_NAMES

EVAL_JOINTS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
ROOT_JOINTS = ("left_hip", "right_hip")  # the root is their midpoint
SKATING_THRESHOLD_M = 0.01


def eval_joints(landmarks: np.ndarray, names: tuple[str, ...] = LANDMARK_NAMES) -> np.ndarray:
    """The EVAL_JOINTS (..., 12, 3) of landmarks (..., L, 3) whose columns are named by names."""
    return np.asarray(landmarks, dtype=np.float64)[..., [names.index(n) for n in EVAL_JOINTS], :]


def root_of(joints: np.ndarray) -> np.ndarray:
    """Root (..., 3) of EVAL_JOINTS positions (..., 12, 3): the midpoint of the hips."""
    return joints[..., [EVAL_JOINTS.index(n) for n in ROOT_JOINTS], :].mean(axis=-2)


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Root-aligned mean per-joint position error (mm) of EVAL_JOINTS sequences (T, 12, 3)."""
    pred, gt = _valid_frames(pred, gt)
    return _mean_mm(np.linalg.norm(_root_relative(pred) - _root_relative(gt), axis=-1))


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint error (mm) after a per-frame similarity alignment of pred (T, N, 3) onto gt (T, N, 3)."""
    pred, gt = _valid_frames(pred, gt)
    aligned = np.stack([_apply(similarity_transform(p, g, scale=True), p) for p, g in zip(pred, gt)]) \
        if len(pred) else pred
    return _mean_mm(np.linalg.norm(aligned - gt, axis=-1))


def accel_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean |a_pred - a_gt| (mm / frame^2) of root-relative EVAL_JOINTS sequences (T, 12, 3)."""
    _check_shapes(pred, gt)
    pred, gt = _root_relative(np.asarray(pred, float)), _root_relative(np.asarray(gt, float))
    a_pred = pred[:-2] - 2.0 * pred[1:-1] + pred[2:]
    a_gt = gt[:-2] - 2.0 * gt[1:-1] + gt[2:]
    known = ~np.isnan(a_pred).any(axis=(1, 2))
    return _mean_mm(np.linalg.norm(a_pred[known] - a_gt[known], axis=-1))


def foot_skating_ratio(pred_feet: np.ndarray, gt_contacts: np.ndarray,
                       threshold_m: float = SKATING_THRESHOLD_M) -> float:
    """Share of true contact steps (a foot point in contact at frames t and t+1) where pred moves > threshold.

    pred_feet (T, F, 3) predicted foot points (CONTACT_NAMES order for clips);
    gt_contacts (T, F) true contact flags (bool, or 0..1 taken as contact from 0.5).
    """
    pred_feet = np.asarray(pred_feet, dtype=np.float64)
    contact = np.asarray(gt_contacts) >= 0.5
    planted = contact[:-1] & contact[1:]
    moved = np.linalg.norm(pred_feet[1:] - pred_feet[:-1], axis=-1)  # NaN where either frame is unknown
    counted = planted & ~np.isnan(moved)
    if not counted.any():
        return float("nan")
    return float(np.mean(moved[counted] > threshold_m))


def feet_of(landmarks: np.ndarray, names: tuple[str, ...] = LANDMARK_NAMES) -> np.ndarray:
    """The foot points (..., 4, 3) of landmarks (..., L, 3) in CONTACT_NAMES order."""
    return np.asarray(landmarks, dtype=np.float64)[..., [names.index(n) for n in CONTACT_NAMES], :]


def trajectory_error(pred_root: np.ndarray, gt_root: np.ndarray) -> float:
    """Mean root distance after one rigid alignment of the whole path, over the true horizontal distance travelled.

    pred_root, gt_root (T, 3) world positions (metres). Returns a ratio (0.05 = 5 %).
    """
    _check_shapes(pred_root, gt_root)
    pred_root, gt_root = np.asarray(pred_root, float), np.asarray(gt_root, float)
    travelled = float(np.sum(np.linalg.norm(np.diff(gt_root[:, :2], axis=0), axis=-1)))
    known = ~np.isnan(pred_root).any(axis=-1)
    if known.sum() < 3 or not travelled > 0:
        return float("nan")
    transform = similarity_transform(pred_root[known], gt_root[known], scale=False)
    distance = np.linalg.norm(_apply(transform, pred_root[known]) - gt_root[known], axis=-1)
    return float(distance.mean() / travelled)


def similarity_transform(source: np.ndarray, target: np.ndarray, scale: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising sum |s R source_i + t - target_i|^2 over points (N, 3) (Umeyama); s = 1 unless scale."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(b.T @ a)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0  # a proper rotation, never a reflection
    rotation = (u * d) @ vt
    variance = float(np.sum(a * a))
    s = float(np.sum(sigma * d) / variance) if scale and variance > 0 else 1.0
    return s, rotation, mu_t - s * rotation @ mu_s


def _apply(transform: tuple[float, np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    s, rotation, translation = transform
    return s * points @ rotation.T + translation


def _root_relative(joints: np.ndarray) -> np.ndarray:
    return joints - root_of(joints)[..., None, :]


def _valid_frames(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pred and gt (T, N, 3) without the frames where pred has a NaN."""
    _check_shapes(pred, gt)
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    known = ~np.isnan(pred).any(axis=(1, 2))
    return pred[known], gt[known]


def _check_shapes(pred: np.ndarray, gt: np.ndarray) -> None:
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f"prediction {np.shape(pred)} and ground truth {np.shape(gt)} differ in shape")


def _mean_mm(distances_m: np.ndarray) -> float:
    return float(1000.0 * distances_m.mean()) if distances_m.size else float("nan")

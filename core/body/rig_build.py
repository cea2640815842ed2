"""Steps every body-model backend shares when it turns rest geometry into a RiggedBody.

Anny and SMPL differ in where their heads, skin weights and landmark regressors
come from, but not in how shape parameters are checked, how end bones get a
length, how landmark regressors are folded into per-bone points or how the body
is put on the ground. Keeping those steps here makes both backends agree.

All positions are in the world frame (metres, Z up, -Y forward).
"""
from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from ..errors import AvatarCaptureError

Report = Callable[[str, float, str], None]

# A child head this close to a bone's axis (cosine) is where that bone ends.
_ON_AXIS_COSINE = 0.99
# Shortest bone: Blender deletes zero-length bones, and display needs a visible one.
MIN_BONE_LENGTH = 0.01


def no_report(stage: str, fraction: float, message: str = "") -> None:
    """The report callable used when a caller passes none."""


def scaled_report(report: Report, low: float, high: float) -> Report:
    """A report callable mapping a step's own 0..1 (clamped) onto low..high of the whole job."""

    def scaled(stage: str, fraction: float, message: str = "") -> None:
        report(stage, low + (high - low) * min(1.0, max(0.0, fraction)), message)

    return scaled


def require(module: str, purpose: str) -> None:
    """Check that a heavy optional package imports, or raise AvatarCaptureError saying what is missing and why."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise AvatarCaptureError(
            f"the Python package '{module}' is needed for {purpose} but cannot be imported here ({exc})"
        ) from None


def shape_values(
    model: str, names: tuple[str, ...], defaults: np.ndarray, shape: dict[str, float] | None,
    low: float = -np.inf, high: float = np.inf,
) -> np.ndarray:
    """Shape parameters (S,) in `names` order: `defaults` overridden by `shape`.

    Unknown names or values outside low..high raise AvatarCaptureError naming them,
    so a typo in a clip or on the command line is not silently ignored.
    """
    values = np.array(defaults, dtype=np.float64)
    for name, value in (shape or {}).items():
        if name not in names:
            raise AvatarCaptureError(
                f"{model} has no shape parameter '{name}' (it has {', '.join(names)})"
            )
        value = float(value)
        if not (np.isfinite(value) and low <= value <= high):
            raise AvatarCaptureError(f"{model} shape parameter '{name}' must lie in {low}..{high}, got {value}")
        values[names.index(name)] = value
    return values


def ground_offset(vertices: np.ndarray) -> np.ndarray:
    """Translation (3,) that puts the lowest vertex on Z = 0 (feet on the ground in the rest pose)."""
    return np.array([0.0, 0.0, -float(np.min(vertices[:, 2]))])


def dense_weights(skin_indices: np.ndarray, skin_weights: np.ndarray, joint_count: int) -> np.ndarray:
    """Skin weights (V, J) from their sparse (V, K) form."""
    dense = np.zeros((len(skin_indices), joint_count))
    rows = np.repeat(np.arange(len(skin_indices)), skin_indices.shape[1])
    np.add.at(dense, (rows, skin_indices.ravel()), skin_weights.ravel())
    return dense


def top_k_weights(dense: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse skin weights (indices (V, K), weights (V, K)), K <= k, rows renormalised to 1.

    K is the largest number of non-zero influences any vertex has, capped at k,
    so models with few influences per vertex stay exact.
    """
    dense = np.clip(np.asarray(dense, dtype=np.float64), 0.0, None)
    count = int(min(k, max(1, np.max(np.count_nonzero(dense, axis=1)))))
    indices = np.argsort(-dense, axis=1, kind="stable")[:, :count]
    weights = np.take_along_axis(dense, indices, axis=1)
    total = weights.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise AvatarCaptureError("the body model has vertices without any skin weight")
    return indices.astype(np.int64), weights / total


def bone_lengths(
    heads: np.ndarray,
    directions: np.ndarray,
    parents: np.ndarray,
    vertices: np.ndarray,
    dense_skin: np.ndarray,
    root_length: float,
) -> np.ndarray:
    """Length (J,) of each bone pointing along its unit direction (J, 3) from its head.

    A bone ends at the head of a child lying on its axis (the usual chain). A bone
    without one (hands, feet, head, eyes) ends at the farthest vertex it dominates
    (weight >= 0.5), measured along its direction: fingertips, toe tips, the top of
    the head. Failing both (no vertices, e.g. the root), it gets half its parent's
    length, and the root gets `root_length`.
    """
    joint_count = len(parents)
    lengths = np.zeros(joint_count)
    children: list[list[int]] = [[] for _ in range(joint_count)]
    for j in range(1, joint_count):
        children[parents[j]].append(j)
    for j in range(joint_count):
        length = 0.0
        offsets = heads[children[j]] - heads[j]
        distances = np.linalg.norm(offsets, axis=1)
        along = offsets @ directions[j]
        on_axis = (distances > 1e-4) & (along > _ON_AXIS_COSINE * distances)
        if np.any(on_axis):
            length = float(np.min(along[on_axis]))
        else:
            owned = dense_skin[:, j] >= 0.5
            if np.any(owned):
                length = float(np.max((vertices[owned] - heads[j]) @ directions[j]))
        if length < MIN_BONE_LENGTH:
            length = root_length if j == 0 else 0.5 * lengths[parents[j]]
        lengths[j] = max(length, MIN_BONE_LENGTH)
    return lengths


def landmark_bone_points(
    vertex_regressor: np.ndarray,
    joint_regressor: np.ndarray,
    vertices: np.ndarray,
    heads: np.ndarray,
    dense_skin: np.ndarray,
) -> np.ndarray:
    """Per-bone landmark points (L, J, 4) for kinematics.regress_landmarks.

    Each landmark is a fixed blend of rest vertices (vertex_regressor (L, V)) and
    joint heads (joint_regressor (L, J)); both are folded with the skin weights
    (V, J) so that regress_landmarks gives exactly the regressed skinned mesh plus
    the posed joint heads.
    """
    homogeneous = np.concatenate((vertices, np.ones((len(vertices), 1))), axis=1)  # (V, 4)
    points = np.einsum("lv,vj,vc->ljc", vertex_regressor, dense_skin, homogeneous, optimize=True)
    points[:, :, :3] += joint_regressor[:, :, None] * heads[None]
    points[:, :, 3] += joint_regressor
    return points

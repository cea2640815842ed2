"""Forward kinematics, inverse (pose read-back) and linear blend skinning.

Model-independent: every body model, BVH skeleton or user rig is described by
rest bone frames in the world (J, 4, 4) plus a parent list, and every pose by
local rotations relative to those rest frames. This is exactly Blender's
pose-bone convention (``pose_bone.matrix = parent.matrix @ rest_local @ basis``),
so clips, armatures and exporters agree without per-model code.

Frames: world = Blender's (metres, Z up, -Y forward). A rest frame's columns are
the bone's X, Y, Z axes in world; Y points from the bone's head to its tail;
the translation column is the head.
"""
from __future__ import annotations

import numpy as np

from .rotations import matrix_to_quat, quat_to_matrix


def check_parents(parents: np.ndarray) -> None:
    """Raise ValueError unless parents (J,) has the root first and every parent before its child."""
    parents = np.asarray(parents)
    if parents.ndim != 1 or len(parents) == 0 or parents[0] != -1:
        raise ValueError("the first joint must be the root (parent -1)")
    j = np.arange(len(parents))
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= j[1:]):
        raise ValueError("every joint after the first needs a parent listed before it")


def rest_local_transforms(rest_frames_world: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Rest transforms (J, 4, 4) of each bone in its parent's frame (the root's in the world)."""
    rest = np.asarray(rest_frames_world, dtype=np.float64)
    local = rest.copy()
    inv = np.linalg.inv(rest)
    local[1:] = inv[parents[1:]] @ rest[1:]
    return local


def forward_kinematics(
    rest_frames_world: np.ndarray,
    parents: np.ndarray,
    rotations: np.ndarray,
    root_translation: np.ndarray,
) -> np.ndarray:
    """Posed bone frames in the world (T, J, 4, 4).

    rotations (T, J, 4) are wxyz local rotations relative to the rest frames;
    root_translation (T, 3) is the world position of the root joint in metres.
    """
    rest_local = rest_local_transforms(rest_frames_world, parents)
    rot = quat_to_matrix(rotations)  # (T, J, 3, 3)
    frames = len(rot)
    out = np.zeros((frames, len(parents), 4, 4))
    out[:, :, 3, 3] = 1.0
    out[:, 0, :3, :3] = rest_local[0, :3, :3] @ rot[:, 0]
    out[:, 0, :3, 3] = root_translation
    for j in range(1, len(parents)):
        parent = out[:, parents[j]]
        out[:, j, :3, :3] = parent[:, :3, :3] @ rest_local[j, :3, :3] @ rot[:, j]
        out[:, j, :3, 3] = parent[:, :3, :3] @ rest_local[j, :3, 3] + parent[:, :3, 3]
    return out


def local_rotations(
    frames_world: np.ndarray, rest_frames_world: np.ndarray, parents: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of forward_kinematics: (rotations (T, J, 4) wxyz, root_translation (T, 3)).

    Only the rotation part of each posed frame is read (bones do not stretch);
    the root's world position is returned as the root translation.
    """
    frames_world = np.asarray(frames_world, dtype=np.float64)
    rest_local = rest_local_transforms(rest_frames_world, parents)
    rot_world = frames_world[..., :3, :3]
    parent_rot = rot_world[:, parents[1:]]
    rel = np.empty_like(rot_world)
    rel[:, 0] = rest_local[0, :3, :3].T @ rot_world[:, 0]
    rel[:, 1:] = (
        np.swapaxes(rest_local[1:, :3, :3], -1, -2)
        @ np.swapaxes(parent_rot, -1, -2)
        @ rot_world[:, 1:]
    )
    return matrix_to_quat(rel), frames_world[:, 0, :3, 3].copy()


def skinning_matrices(frames_world: np.ndarray, rest_frames_world: np.ndarray) -> np.ndarray:
    """Per-bone deformation (T, J, 4, 4): posed frame times inverse rest frame."""
    return np.asarray(frames_world, dtype=np.float64) @ np.linalg.inv(rest_frames_world)


def skin_points(
    points_rest: np.ndarray,
    skin_indices: np.ndarray,
    skin_weights: np.ndarray,
    deformation: np.ndarray,
) -> np.ndarray:
    """Linear blend skinning of rest points (V, 3) -> posed points (T, V, 3).

    skin_indices/skin_weights (V, K) name each point's bones and weights (rows sum
    to 1); deformation (T, J, 4, 4) comes from skinning_matrices. Loops over frames
    so memory stays O(V * K) whatever the clip length.
    """
    points = np.asarray(points_rest, dtype=np.float64)
    weights = np.asarray(skin_weights, dtype=np.float64)[..., None, None]
    out = np.empty((len(deformation), len(points), 3))
    for t, mats in enumerate(np.asarray(deformation, dtype=np.float64)):
        blended = np.sum(mats[skin_indices, :3, :] * weights, axis=1)  # (V, 3, 4)
        out[t] = np.einsum("vab,vb->va", blended[:, :, :3], points) + blended[:, :, 3]
    return out


def regress_landmarks(deformation: np.ndarray, bone_points: np.ndarray) -> np.ndarray:
    """Landmarks (T, L, 3) from deformation (T, J, 4, 4) and bone_points (L, J, 4).

    bone_points[l, j] = sum_v R[l, v] * w[v, j] * (x_v, y_v, z_v, 1) folds a vertex
    regressor R and the skin weights w together, so a landmark costs J matrix
    products instead of skinning the whole mesh; the result equals regressing the
    skinned mesh exactly.
    """
    return np.einsum("tjab,ljb->tla", np.asarray(deformation)[:, :, :3, :], bone_points)


def frames_from_heads_tails(heads: np.ndarray, tails: np.ndarray, z_hint: np.ndarray) -> np.ndarray:
    """Rest frames (J, 4, 4) with Y from head to tail and Z as close to z_hint (J, 3) as allowed.

    Where z_hint is nearly parallel to the bone, world up (or forward, for
    vertical bones) is used instead, so every frame is well defined.
    """
    heads = np.asarray(heads, dtype=np.float64)
    y = np.asarray(tails, dtype=np.float64) - heads
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    hint = np.asarray(z_hint, dtype=np.float64)
    hint = hint / np.linalg.norm(hint, axis=-1, keepdims=True)
    parallel = np.abs(np.sum(hint * y, axis=-1, keepdims=True)) > 0.98
    alternative = np.where(np.abs(y[:, 2:3]) > 0.9, [0.0, -1.0, 0.0], [0.0, 0.0, 1.0])
    hint = np.where(parallel, alternative, hint)
    z = hint - np.sum(hint * y, axis=-1, keepdims=True) * y
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(y, z)
    frames = np.zeros((len(heads), 4, 4))
    frames[:, :3, 0], frames[:, :3, 1], frames[:, :3, 2] = x, y, z
    frames[:, :3, 3] = heads
    frames[:, 3, 3] = 1.0
    return frames

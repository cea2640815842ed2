"""Automatic skin weights for a splat cloud that has none: each splat follows its nearest bones.

A cloud imported from a plain 3DGS file carries no skin, yet binding it to an
armature must make it follow the bones at once. The nearest bone *segments*
(head to tail, not just heads) decide, because a splat halfway along a long
bone belongs to that bone rather than to the joint at either end; inverse
distance falloff blends smoothly across joints. Batched numpy in chunks keeps
memory bounded (chunk x bones distances) for million-splat clouds.
"""
from __future__ import annotations

import numpy as np

from ..errors import AvatarCaptureError

# Splats per batch: the few 8192 x B float64 work arrays stay in cache (B = 160 bones: 10 MB each).
_CHUNK = 8192
# Distances below this (metres) count as this, so a splat on a bone gets a finite, dominant weight.
_MIN_DISTANCE = 1e-4
# Weight = distance^-_FALLOFF_POWER: inverse square keeps joints smooth and far bones negligible.
_FALLOFF_POWER = 2.0


def bone_weights_by_distance(means: np.ndarray, heads: np.ndarray, tails: np.ndarray,
                             k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Skin weights of N points to the k nearest of B bone segments.

    means (N, 3), heads (B, 3), tails (B, 3): metres, all in the same frame (the
    splat object's). Returns indices (N, k) int32 into the bones, nearest first,
    and weights (N, k) float32 proportional to distance^-2, each row summing to 1.
    With fewer than k bones the extra slots get index 0 and weight 0.
    """
    means = np.asarray(means, dtype=np.float64).reshape(-1, 3)
    heads = np.asarray(heads, dtype=np.float64).reshape(-1, 3)
    tails = np.asarray(tails, dtype=np.float64).reshape(-1, 3)
    if len(heads) == 0 or len(heads) != len(tails):
        raise AvatarCaptureError(f"automatic skin weights need bones ({len(heads)} heads, {len(tails)} tails given)")
    used = min(k, len(heads))
    indices = np.zeros((len(means), k), dtype=np.int32)
    weights = np.zeros((len(means), k), dtype=np.float32)
    for start in range(0, len(means), _CHUNK):
        stop = start + _CHUNK
        squared = squared_segment_distances(means[start:stop], heads, tails)
        rows = np.arange(len(squared))
        nearest = np.empty((len(squared), used), np.int64)
        near = np.empty((len(squared), used))
        for slot in range(used):  # k argmin passes: much faster than a per-row argpartition for k << B
            nearest[:, slot] = squared.argmin(axis=1)
            near[:, slot] = squared[rows, nearest[:, slot]]
            squared[rows, nearest[:, slot]] = np.inf
        inverse = np.maximum(np.sqrt(near), _MIN_DISTANCE) ** -_FALLOFF_POWER
        indices[start:stop, :used] = nearest
        weights[start:stop, :used] = inverse / inverse.sum(axis=1, keepdims=True)
    return indices, weights


def squared_segment_distances(points: np.ndarray, heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """Squared distances (N, B) from points (N, 3) to the segments heads[b] -> tails[b] (B, 3), metres^2.

    Zero-length segments are points. Written with matrix products and in-place updates
    (no (N, B, 3) temporaries): |r - t a|^2 = |r|^2 + t (t |a|^2 - 2 r.a) for r = point - head,
    a = tail - head, t = clip(r.a / |a|^2, 0, 1). Coordinates are taken relative to the bones'
    centre first, so the squares stay small and keep their precision far from the origin.
    """
    centre = heads.mean(axis=0)
    points, heads = points - centre, heads - centre
    axis = tails - centre - heads
    length2 = np.einsum("bi,bi->b", axis, axis)
    along = points @ axis.T
    along -= np.einsum("bi,bi->b", heads, axis)
    squared = points @ heads.T
    squared *= -2.0
    squared += np.einsum("ni,ni->n", points, points)[:, None]
    squared += np.einsum("bi,bi->b", heads, heads)
    t = along / np.where(length2 > 0.0, length2, 1.0)
    np.clip(t, 0.0, 1.0, out=t)
    along *= -2.0
    along += t * length2
    along *= t
    squared += along
    return np.maximum(squared, 0.0, out=squared)

"""Quaternion and rotation-matrix helpers, vectorised over any leading shape.

Quaternions are (w, x, y, z) everywhere in this project, as in Blender's
``rotation_quaternion``; keeping one convention here means no other module
ever reorders components.
"""
from __future__ import annotations

import numpy as np


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4), with w >= 0 so equal rotations compare equal."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0.0, -q, q)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (..., 4) quaternions (apply b, then a)."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        axis=-1,
    )


def quat_matrix_entries(w, x, y, z) -> tuple:
    """The 9 entries, row-major, of the rotation matrix of UNIT quaternions with components w, x, y, z.

    Plain arithmetic, so it works on numpy arrays and torch tensors alike (the
    differentiable splat projection stacks them with torch): one formula for both.
    """
    return (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4); q need not be unit."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    m = np.stack(quat_matrix_entries(*np.moveaxis(q, -1, 0)), axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4), w >= 0, from rotation matrices (..., 3, 3).

    Picks the numerically largest of the four Shepperd candidates per element so
    the result is accurate for every rotation angle.
    """
    m = np.asarray(m, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = np.stack(
        (
            np.stack((1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2],
                      m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]), -1),
            np.stack((m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22,
                      m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]), -1),
            np.stack((m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1],
                      1 - m00 + m11 - m22, m[..., 2, 1] + m[..., 1, 2]), -1),
            np.stack((m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                      m[..., 2, 1] + m[..., 1, 2], 1 - m00 - m11 + m22), -1),
        ),
        axis=-2,
    )
    diag = np.stack((m00 + m11 + m22, m00, m11, m22), axis=-1)
    best = np.argmax(diag, axis=-1)[..., None, None]
    q = np.take_along_axis(candidates, np.broadcast_to(best, best.shape[:-1] + (4,)), axis=-2)[..., 0, :]
    return quat_normalize(q)


def axis_angle_to_quat(axis_angle: np.ndarray) -> np.ndarray:
    """Quaternions (..., 4) from rotation vectors (..., 3) (axis times angle in radians)."""
    v = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(half)/angle, with its limit 1/2 at angle 0.
    scale = np.where(angle > 1e-12, np.sin(half) / np.maximum(angle, 1e-12), 0.5)
    return np.concatenate((np.cos(half), v * scale), axis=-1)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) (axis times angle in radians, angle <= pi) from quaternions (..., 4)."""
    q = quat_normalize(q)
    q = np.where(q[..., :1] < 0, -q, q)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    # angle / sin(half), with its limit 2 at angle 0.
    scale = np.where(sin_half > 1e-12, angle / np.maximum(sin_half, 1e-12), 2.0)
    return q[..., 1:] * scale


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation matrices (..., 3, 3) turning directions a onto b (both (..., 3))."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos = np.sum(a * b, axis=-1, keepdims=True)
    # Opposite vectors: any axis perpendicular to a.
    fallback = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    axis = np.where(sin > 1e-9, axis, fallback)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(sin, cos)
    return quat_to_matrix(axis_angle_to_quat(axis * angle))


def quat_continuous(quats: np.ndarray) -> np.ndarray:
    """Quaternions (T, ..., 4) with signs flipped so consecutive frames have dot >= 0.

    q and -q are the same rotation, but interpolating between keys of opposite
    sign swings the long way round; this keeps in-between frames smooth.
    """
    quats = np.asarray(quats, dtype=np.float64)
    dots = np.sum(quats[1:] * quats[:-1], axis=-1)
    signs = np.cumprod(np.where(dots < 0.0, -1.0, 1.0), axis=0)
    out = quats.copy()
    out[1:] *= signs[..., None]
    return out

"""Foot contacts from a fitted motion: which foot points rest on the ground in which frames.

HuMoR predicts contacts with its motion model; without a learned model, a foot
point that is low and slow is on the ground. Thresholds are in metres and
metres per second, so they hold at any frame rate.
"""
from __future__ import annotations

import numpy as np

HEIGHT_LIMIT_M = 0.065  # a foot point this close to its standing height may be in contact
SPEED_LIMIT_M_S = 0.65  # and it must move slower than this


def detect_contacts(foot_points_world: np.ndarray, fps: float, rest_heights: np.ndarray | None = None) -> np.ndarray:
    """Contacts (T, P) as 0/1 for foot points (T, P, 3) world metres (heels and toes, CONTACT_NAMES order).

    A point is in contact when it is within HEIGHT_LIMIT_M of its height when
    standing flat (rest_heights (P,), metres above the sole; 0 when not given),
    measured from the ground or from the lowest the point gets (so a slightly
    floating fit still finds its contacts), and slower than SPEED_LIMIT_M_S;
    one-frame gaps and one-frame blips are closed.
    """
    points = np.asarray(foot_points_world, dtype=np.float64)
    standing = np.zeros(points.shape[1]) if rest_heights is None else np.asarray(rest_heights)
    above = points[..., 2] - standing
    height = above - min(0.0, np.percentile(above, 2))
    speed = np.zeros(height.shape)
    if len(points) > 1:
        step = np.linalg.norm(np.diff(points, axis=0), axis=-1) * fps
        speed[1:-1] = np.minimum(step[:-1], step[1:])
        speed[0], speed[-1] = step[0], step[-1]
    contact = (height < HEIGHT_LIMIT_M) & (speed < SPEED_LIMIT_M_S)
    return _close_gaps(contact).astype(np.float64)


def _close_gaps(contact: np.ndarray) -> np.ndarray:
    """Fill single-frame holes and drop single-frame contacts, per column."""
    out = contact.copy()
    if len(out) < 3:
        return out
    hole = ~out[1:-1] & out[:-2] & out[2:]
    out[1:-1] |= hole
    blip = out[1:-1] & ~out[:-2] & ~out[2:]
    out[1:-1] &= ~blip
    return out

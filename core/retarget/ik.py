"""Two-bone IK on posed skeletons: foot locking on contact frames and optional hand reaching.

Why: rotation transfer copies directions, so a target with other leg proportions than
the source slides its feet while the source's stand still (the root is scaled by one
ratio, the feet land where the target's own limbs put them). Locking moves the ankle
back onto a fixed point during each contact with an analytic two-bone solve (hip and
knee turn; the knee stays in the plane it bends in), and gives the foot back its world
rotation, so the sole keeps the source's orientation. Hand IK does the same for the
wrists, towards the source's hand positions relative to its hips, scaled.

All frames are world frames (T, J, 4, 4), metres, Blender's world (Z up). A bone and
everything below it turn rigidly about its head, so rigs with twist or helper bones in
the chain (Rigify's thigh.001) are solved through the mapped joints alone.
"""
from __future__ import annotations

import numpy as np

from ..rotations import rotation_between

# Corrections fade in and out over this long around each contact, so locking never pops.
LOCK_BLEND_S = 0.1


def descendants(parents: np.ndarray, joint: int) -> np.ndarray:
    """Indices of joint and every joint below it (parents listed before children)."""
    inside = np.zeros(len(parents), dtype=bool)
    inside[joint] = True
    for j in range(joint + 1, len(parents)):
        inside[j] = parents[j] >= 0 and inside[parents[j]]
    return np.flatnonzero(inside)


def turn_subtree(frames_world: np.ndarray, joints: np.ndarray, rotation: np.ndarray, pivot: np.ndarray,
                 where: np.ndarray) -> None:
    """Rotate the frames of joints (n,) by rotation (F, 3, 3) about pivot (F, 3) on frames `where` (F,), in place."""
    block = frames_world[where][:, joints]  # (F, n, 4, 4)
    block[..., :3, :3] = rotation[:, None] @ block[..., :3, :3]
    offset = block[..., :3, 3] - pivot[:, None]
    block[..., :3, 3] = np.einsum("fij,fnj->fni", rotation, offset) + pivot[:, None]
    frames_world[np.ix_(where, joints)] = block


def two_bone_ik(frames_world: np.ndarray, parents: np.ndarray, upper: int, lower: int, end: int,
                targets: np.ndarray) -> np.ndarray:
    """frames_world with the end joint's head moved onto targets (T, 3) where it is not there already.

    upper, lower, end: the chain's joints (hip, knee, ankle); the heads of upper and lower
    are the pivots. Out-of-reach targets straighten the chain towards them. The bend stays
    in the plane of the current pose (the knee points where it pointed); a fully straight
    chain bends towards its last bent frame's side. The end bone keeps its world rotation.
    """
    out = np.array(frames_world, dtype=np.float64, copy=True)
    a, b, c = (out[:, j, :3, 3] for j in (upper, lower, end))
    where = np.flatnonzero(np.linalg.norm(targets - c, axis=-1) > 1e-9)
    if len(where) == 0:
        return out
    a, b, c, goal = a[where], b[where], c[where], targets[where]
    upper_length = np.linalg.norm(b - a, axis=-1)
    lower_length = np.linalg.norm(c - b, axis=-1)
    reach = goal - a
    distance = np.linalg.norm(reach, axis=-1)
    along = reach / np.maximum(distance, 1e-12)[:, None]
    bend = _bend_directions(b - a, along)
    distance = np.clip(distance, np.abs(upper_length - lower_length) + 1e-9,
                       (upper_length + lower_length) * (1.0 - 1e-9))
    cos = np.clip((upper_length ** 2 + distance ** 2 - lower_length ** 2) / (2.0 * upper_length * distance), -1, 1)
    knee = a + upper_length[:, None] * (cos[:, None] * along + np.sqrt(1.0 - cos ** 2)[:, None] * bend)
    end_rotation = out[where, end, :3, :3]

    turn_subtree(out, descendants(parents, upper), rotation_between(b - a, knee - a), a, where)
    moved_end = out[where, end, :3, 3]
    goal_reached = a + distance[:, None] * along
    turn_subtree(out, descendants(parents, lower), rotation_between(moved_end - knee, goal_reached - knee), knee,
                 where)
    restore = end_rotation @ np.swapaxes(out[where, end, :3, :3], -1, -2)
    turn_subtree(out, descendants(parents, end), restore, out[where, end, :3, 3], where)
    return out


def _bend_directions(upper: np.ndarray, along: np.ndarray) -> np.ndarray:
    """Unit directions (F, 3) perpendicular to along in which the middle joint sits; straight
    frames take the previous bent frame's direction (world -Y, forward, before any)."""
    side = upper - np.sum(upper * along, axis=-1, keepdims=True) * along
    norm = np.linalg.norm(side, axis=-1)
    bent = norm > 1e-6 * np.linalg.norm(upper, axis=-1)
    out = np.where(bent[:, None], side / np.maximum(norm, 1e-12)[:, None], 0.0)
    previous = np.array([0.0, -1.0, 0.0])
    for f in np.flatnonzero(~bent):
        earlier = np.flatnonzero(bent[:f])
        direction = out[earlier[-1]] if len(earlier) else previous
        direction = direction - np.dot(direction, along[f]) * along[f]
        if np.linalg.norm(direction) < 1e-6:
            direction = np.cross(along[f], [1.0, 0.0, 0.0])
        out[f] = direction / np.linalg.norm(direction)
    return out


def contact_locks(points_world: np.ndarray, contact: np.ndarray, blend_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Where a point should stay during its contacts: (lock positions (T, 3), weights (T,) 0..1).

    Each run of contact frames (contact > 0.5) locks the point at its mean position
    over the run (weight 1); the weight falls linearly to 0 over blend_frames on
    either side, towards the nearer run's lock. Gaps of up to blend_frames between two
    runs are closed first: no foot lifts and lands again that fast, so a flickering
    contact is one contact, not two locks a few millimetres apart.
    """
    frames = len(points_world)
    locks = np.array(points_world, dtype=np.float64, copy=True)
    weights = np.zeros(frames)
    on = np.asarray(contact) > 0.5
    on = _close_short_gaps(on, blend_frames)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], on.astype(np.int8), [0]))))
    runs = list(zip(edges[::2], edges[1::2]))  # [start, stop)
    gap = np.full(frames, np.inf)
    for start, stop in runs:
        lock = points_world[start:stop].mean(axis=0)
        t = np.arange(frames)
        distance = np.where(t < start, start - t, np.where(t >= stop, t - stop + 1, 0))
        weight = np.clip(1.0 - distance / (blend_frames + 1.0), 0.0, 1.0)
        nearer = (distance < gap) & (weight > 0)
        locks[nearer], weights[nearer], gap[nearer] = lock, weight[nearer], distance[nearer]
    return locks, weights


def _close_short_gaps(on: np.ndarray, longest: int) -> np.ndarray:
    """on (T,) with runs of False of at most `longest` frames between two True runs set True."""
    out = on.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], on.astype(np.int8), [0]))))
    starts, stops = edges[::2], edges[1::2]
    for stop, start in zip(stops[:-1], starts[1:]):
        if start - stop <= longest:
            out[stop:start] = True
    return out


def lock_feet(frames_world: np.ndarray, parents: np.ndarray, legs: dict[str, tuple[int, int, int, int | None]],
              contacts: np.ndarray, fps: float) -> np.ndarray:
    """frames_world with each foot held still while the clip says it is on the ground.

    legs: side -> (upper_leg, lower_leg, foot, toes or None) joint indices; contacts
    (T, 4) in CONTACT_NAMES order (left heel, left toe, right heel, right toe). A heel
    contact locks the ankle; a toe contact without the heel (pushing off) locks the
    toes' head, the ankle following it with the foot's own rotation. Without a toes
    joint either contact locks the ankle; with both down the foot also turns about the ankle
    to point its toes at their lock. Where a held foot is out of the leg's reach
    (a target with shorter legs than the motion needs, at toe-off), the whole body is
    lowered just enough (drop_to_reach) and the other foot keeps its place.
    """
    out = np.array(frames_world, dtype=np.float64, copy=True)
    blend = max(1, int(round(LOCK_BLEND_S * fps)))
    goals, toe_holds = {}, {}
    for column, side in ((0, "left"), (2, "right")):
        if side not in legs:
            continue
        _upper, _lower, foot, toes = legs[side]
        heel_on, toe_on = contacts[:, column], contacts[:, column + 1]
        ankle = out[:, foot, :3, 3]
        if toes is None:
            locks, weight = contact_locks(ankle, np.maximum(heel_on, toe_on), blend)
            goals[side] = ankle + weight[:, None] * (locks - ankle)
        else:
            toe = out[:, toes, :3, 3]
            heel_locks, heel_weight = contact_locks(ankle, heel_on, blend)
            toe_locks, toe_weight = contact_locks(toe, toe_on, blend)
            goals[side] = ankle + heel_weight[:, None] * (heel_locks - ankle) \
                + ((1.0 - heel_weight) * toe_weight)[:, None] * (toe_locks - toe)
            toe_holds[side] = (toe_locks, toe_weight)
    drop = drop_to_reach(out, {side: legs[side][:3] for side in goals}, goals, blend)
    out[..., 2, 3] -= drop[:, None]
    for side, goal in goals.items():
        upper, lower, foot, toes = legs[side]
        out = two_bone_ik(out, parents, upper, lower, foot, goal)
        if side in toe_holds:
            _aim_foot(out, parents, foot, toes, *toe_holds[side])
    return out


def _aim_foot(frames_world: np.ndarray, parents: np.ndarray, foot: int, toes: int, toe_locks: np.ndarray,
              toe_weight: np.ndarray) -> None:
    """Turn the foot about the ankle, in place, so the toes' head points at its lock (T, 3) as far as
    toe_weight (T,) says: with heel and toes both down, the ankle lock alone lets a rolling foot slide
    its toes."""
    where = np.flatnonzero(toe_weight > 0)
    if len(where) == 0:
        return
    ankle, toe = frames_world[where, foot, :3, 3], frames_world[where, toes, :3, 3]
    wanted = toe + toe_weight[where, None] * (toe_locks[where] - toe)
    turn_subtree(frames_world, descendants(parents, foot), rotation_between(toe - ankle, wanted - ankle), ankle,
                 where)


# Never lower the body more than this to reach a held foot: a bigger miss is left to the leg.
MAX_DROP_M = 0.1


def drop_to_reach(frames_world: np.ndarray, legs: dict[str, tuple[int, int, int]], goals: dict[str, np.ndarray],
                  blend_frames: int) -> np.ndarray:
    """How far (T,) metres to lower the body so every leg reaches its ankle goal (T, 3).

    Per frame the least drop that brings the farthest goal that moves a foot within 99.9 % of the leg's
    length (hip over the goal, vertical only), capped at MAX_DROP_M, then widened by
    a running maximum and smoothed by a running mean over blend_frames either side:
    the smoothed drop is at least the needed one and never pops.
    """
    frames = len(frames_world)
    need = np.zeros(frames)
    for side, (upper, lower, foot) in legs.items():
        hip = frames_world[:, upper, :3, 3]
        knee, ankle = frames_world[0, lower, :3, 3], frames_world[0, foot, :3, 3]
        reach = 0.999 * (np.linalg.norm(knee - frames_world[0, upper, :3, 3]) + np.linalg.norm(ankle - knee))
        offset = goals[side] - hip
        level = np.minimum(np.linalg.norm(offset[:, :2], axis=-1), reach)
        drop = -offset[:, 2] - np.sqrt(reach ** 2 - level ** 2)
        held = np.linalg.norm(goals[side] - frames_world[:, foot, :3, 3], axis=-1) > 1e-9
        need = np.maximum(need, np.where(held, np.clip(drop, 0.0, MAX_DROP_M), 0.0))
    if not need.any():
        return need
    window = 2 * blend_frames + 1
    padded = np.pad(need, blend_frames, mode="edge")
    widest = np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)
    return np.convolve(np.pad(widest, blend_frames, mode="edge"), np.ones(window) / window, mode="valid")


def reach_hands(frames_world: np.ndarray, parents: np.ndarray, arms: dict[str, tuple[int, int, int]],
                hands_from_hips: dict[str, np.ndarray], hips: np.ndarray) -> np.ndarray:
    """frames_world with each hand's head at hips (T, 3) + hands_from_hips[side] (T, 3), the
    source's hand offsets from its mid-hip point scaled to the target; arms: side ->
    (upper_arm, lower_arm, hand) joints. The shoulders stay; the hands keep their world rotation."""
    out = np.array(frames_world, dtype=np.float64, copy=True)
    for side, (upper, lower, hand) in arms.items():
        out = two_bone_ik(out, parents, upper, lower, hand, hips + hands_from_hips[side])
    return out

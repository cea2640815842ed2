"""How well a retargeted clip follows its source: the figures the benchmark and tests report.

Why here: the benchmark, the tests and the sidebar report must measure alike, and each
figure needs a stated definition because two rigs never share proportions.

- position error, "uniform": mapped joints relative to the mid-hip point (mean of the
  upper-leg heads), the source's scaled by the leg-length ratio the retarget uses for the
  root; distance as a share of the target's stature. Differences of proportion count in
  full (a longer neck is an error), so this bounds what any retarget without bone
  stretching can reach.
- position error, "proportional": the reference is the source motion on the target's own
  proportions: from the target's mid-hip point, each canonical segment (parent joint ->
  child joint mapped on both rigs) points where the source's points and has the target's
  rest length. This is the ground truth the retargeting literature compares against
  (the same motion performed by the target character, e.g. Aberman et al. 2020,
  "Skeleton-Aware Networks for Deep Motion Retargeting", error normalised by height).
  Segments shorter than 2 cm on either rig (CMU's zero-length neck base) have no direction
  and take the target's own posed offset. The mid-hip -> hips and hips -> spine segments,
  where their rest directions differ by over 30 degrees, join points the two rigs place
  differently (the hips bone 1 cm above the hip joints on one rig, 10 cm above and behind
  on another): their direction is a rig convention, so they turn with the source bone of
  their upper joint instead (its world rotation change from rest applied to the target's
  rest segment).
- contact foot speed: metres per frame of the ankle (foot head) on heel-contact frames and
  of the toes' head on toe-contact frames, counted for steps whose both frames are in contact.
- twist flips: frame-to-frame changes of a local rotation over 90 degrees.
Positions in metres, Blender's world frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..clip import MotionClip
from ..kinematics import forward_kinematics
from ..rotations import quat_multiply, quat_to_axis_angle
from ..skeleton import Skeleton
from .humanoid import CANONICAL_JOINTS, CANONICAL_PARENTS, SIDES, BoneMapping

SHORT_SEGMENT_M = 0.02
SAME_DIRECTION_DEG = 30.0
# Joints that rigs place where they like around the pelvis (their segments from the mid-hip point
# or the hips); limbs that point elsewhere at rest are a rest pose, compared by direction.
_PLACED_BY_CONVENTION = ("hips", "spine")


def stature(skeleton: Skeleton) -> float:
    """Rest height (m) from the lowest joint head to the highest bone tail."""
    return float(skeleton.rest_tails_world[:, 2].max() - skeleton.rest_heads_world[:, 2].min())


def leg_length(skeleton: Skeleton, mapping: BoneMapping) -> float:
    """Upper-leg head to lower-leg head to foot head at rest (m), mean of both sides."""
    heads = skeleton.rest_heads_world
    lengths = []
    for side in SIDES:
        a, b, c = (heads[skeleton.index(mapping.bones[f"{side}_{p}"])] for p in ("upper_leg", "lower_leg", "foot"))
        lengths.append(np.linalg.norm(b - a) + np.linalg.norm(c - b))
    return float(np.mean(lengths))


def twist_flips(rotations: np.ndarray) -> int:
    """Frame-to-frame local rotation changes (T, J, 4 wxyz) over 90 degrees."""
    step = quat_multiply(rotations[1:] * [1, -1, -1, -1], rotations[:-1])
    return int(np.sum(np.degrees(np.linalg.norm(quat_to_axis_angle(step), axis=-1)) > 90.0))


def contact_foot_speeds(clip: MotionClip, mapping: BoneMapping) -> np.ndarray:
    """Speeds (m/frame) of the planted foot points over steps between two contact frames, all sides."""
    speeds = []
    for column, side in ((0, "left"), (2, "right")):
        for offset, part in ((0, "foot"), (1, "toes")):
            bone = mapping.bones.get(f"{side}_{part}")
            if bone is None:
                continue
            point = clip.joints_world[:, clip.skeleton.index(bone)]
            on = clip.contacts[:, column + offset] > 0.5
            both = on[1:] & on[:-1]
            speeds.append(np.linalg.norm(np.diff(point, axis=0), axis=-1)[both])
    return np.concatenate(speeds) if speeds else np.zeros(0)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _world_rotation_changes(clip: MotionClip) -> np.ndarray:
    """Each bone's world rotation times its inverse rest rotation (T, J, 3, 3)."""
    skeleton = clip.skeleton
    posed = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, clip.rotations, clip.root_translation)
    return posed[..., :3, :3] @ np.swapaxes(skeleton.rest_frames_world[:, :3, :3], -1, -2)


def _mid_hips(joints_world: np.ndarray, skeleton: Skeleton, mapping: BoneMapping) -> np.ndarray:
    return joints_world[:, [skeleton.index(mapping.bones[f"{s}_upper_leg"]) for s in SIDES]].mean(axis=1)


def measured_joints(source_map: BoneMapping, target_map: BoneMapping) -> tuple[str, ...]:
    """Canonical joints compared: mapped on both rigs, fingers, eyes and jaw left out."""
    skip = ("thumb", "index", "middle", "ring", "little", "eye", "jaw")
    return tuple(j for j in CANONICAL_JOINTS if j in source_map.bones and j in target_map.bones
                 and not any(part in j for part in skip))


@dataclass(frozen=True)
class PositionErrors:
    """Per frame and joint (T, K) errors as shares of the target's stature (see the module docstring)."""

    joints: tuple[str, ...]
    uniform: np.ndarray
    proportional: np.ndarray


def position_errors(source: MotionClip, source_map: BoneMapping, out: MotionClip,
                    target_map: BoneMapping) -> PositionErrors:
    """Both position errors of out, the source retargeted onto target_map's rig, for measured_joints."""
    src, tgt = source.skeleton, out.skeleton
    joints = measured_joints(source_map, target_map)
    s_idx = np.array([src.index(source_map.bones[j]) for j in joints])
    t_idx = np.array([tgt.index(target_map.bones[j]) for j in joints])
    s_mid, t_mid = _mid_hips(source.joints_world, src, source_map), _mid_hips(out.joints_world, tgt, target_map)
    height = stature(tgt)
    scale = leg_length(tgt, target_map) / leg_length(src, source_map)
    measured = out.joints_world[:, t_idx] - t_mid[:, None]
    uniform = np.linalg.norm(measured - (source.joints_world[:, s_idx] - s_mid[:, None]) * scale, axis=-1)

    s_rest = src.rest_heads_world[s_idx] - src.rest_heads_world[s_idx[[joints.index(f"{s}_upper_leg")
                                                                      for s in SIDES]]].mean(axis=0)
    t_rest = tgt.rest_heads_world[t_idx] - tgt.rest_heads_world[t_idx[[joints.index(f"{s}_upper_leg")
                                                                       for s in SIDES]]].mean(axis=0)
    s_pos = source.joints_world[:, s_idx] - s_mid[:, None]
    s_turn = _world_rotation_changes(source)[:, s_idx]
    hips = joints.index("hips") if "hips" in joints else None
    reference = np.zeros_like(measured)
    for k, joint in enumerate(joints):
        parent = CANONICAL_PARENTS[joint]
        while parent is not None and parent not in joints:
            parent = CANONICAL_PARENTS[parent]
        if parent is None or joint.endswith("upper_leg"):  # hung from the mid-hip point, turned by the hips
            p, turn_with = None, hips
            base_s, base_t, base_ref = np.zeros(3), np.zeros(3), np.zeros((len(measured), 3))
        else:
            p = turn_with = joints.index(parent)
            base_s, base_t, base_ref = s_rest[p], t_rest[p], reference[:, p]
        t_segment, s_segment = t_rest[k] - base_t, s_rest[k] - base_s
        if min(np.linalg.norm(t_segment), np.linalg.norm(s_segment)) < SHORT_SEGMENT_M or turn_with is None:
            reference[:, k] = base_ref + measured[:, k] - (measured[:, p] if p is not None else 0.0)
        elif joint not in _PLACED_BY_CONVENTION or _angle_deg(t_segment, s_segment) < SAME_DIRECTION_DEG:
            direction = s_pos[:, k] - (s_pos[:, p] if p is not None else 0.0)
            reference[:, k] = base_ref + np.linalg.norm(t_segment) * direction / np.linalg.norm(
                direction, axis=-1, keepdims=True)
        else:
            reference[:, k] = base_ref + s_turn[:, turn_with] @ t_segment
    proportional = np.linalg.norm(measured - reference, axis=-1)
    return PositionErrors(joints, uniform / height, proportional / height)

"""Retarget a motion clip onto another skeleton through the canonical humanoid mapping.

Why world-rotation transfer: rigs disagree on rest poses (T-pose vs A-pose) and bone
rolls, so copying local rotations bends the wrong way. Instead each mapped bone's
WORLD rotation change from its own rest, D(t) = S_world(t) S_rest^-1, is applied to
the target bone after turning the target's rest bone direction onto the source's with the
smallest rotation A. A bone's direction is the way to the head of its canonical child mapped
on both rigs (the middle finger for a hand, the neck for the upper chest) where both are over
1 mm away, else its Y axis (head -> tail): many rigs' tails do not touch their children
(Anny's do not), and the limb is what must point the same way.

    T_world(t) = D(t) A T_rest

so the target bone points where the source bone points, and twists as it twists,
whatever either rig's rest pose or roll. The hips use A = identity: a root bone's
direction is a rig convention (up, forward or down), not a body direction, and both
rigs stand upright facing -Y at rest.

Chains (BoneMapping.spine_chain / neck_chain) of different lengths: anchors are the
chain bones mapped to canonical segment joints on both rigs, plus the chain's last bone
(paired with the source chain's last bone when both rigs list a chain). The bones from
one anchor (or the chain's parent) p to the next anchor a, b_1 .. b_m = a, share the
turn between them equally:

    Delta = (W_p^-1 W_a) (R_p^-1 R_a)^-1,   W_b_i = W_p Delta^(i/m) R_p^-1 R_b_i

(W posed, R rest world rotations), so each gets an equal slerp share of the segment's
rotation and the anchor lands exactly on its transferred rotation. Chain bones past
the last anchor and every other unmapped target bone keep their rest local rotation
(identity); chains that are not a parent -> child path are not spread.

Root: the target hips follow the source hips' horizontal displacement from rest, and the
target's mid-hip point (mean of the upper-leg heads, where leg length is measured from) the
source's height above the ground (z = 0), both scaled by the leg-length ratio (upper_leg +
lower_leg rest lengths, target over source, mean of both sides). For rigs standing on the
ground at rest this is the hips' displacement from rest; heights are taken from the floor
because BVH files keep their rest hips at the origin, and from the mid-hip point because rigs
put the hips bone anywhere from 1 cm (Anny) to 10 cm (CMU) above the hip joints. in_place
drops the horizontal part and keeps the vertical. A target whose hips are not its root bone
moves its root by the same amount.

Contacts: foot_lock (default; not with in_place, which has no ground to hold on to) holds each
foot still during the clip's contact runs with two-bone IK (ik.lock_feet), because the target's
other leg proportions make its feet slide where the source's stood. hand_ik puts the hands at the
source's hand offsets from its mid-hip point, scaled by the rigs' reach ratio (ik.reach_hands),
for motion where the hands touch something.
World frame: Blender's (metres, Z up, -Y forward); quaternions wxyz.
"""
from __future__ import annotations

import numpy as np

from ..clip import MotionClip
from ..errors import AvatarCaptureError
from ..kinematics import forward_kinematics, local_rotations, rest_local_transforms
from ..landmarks import LANDMARK_NAMES
from ..rotations import (axis_angle_to_quat, matrix_to_quat, quat_continuous, quat_to_axis_angle,
                         quat_to_matrix, rotation_between)
from ..skeleton import Skeleton
from .humanoid import CANONICAL_JOINTS, CANONICAL_PARENTS, SIDES, BoneMapping, landmark_bones
from .ik import lock_feet, reach_hands
from .metrics import leg_length


def retarget(source: MotionClip, source_map: BoneMapping, target: Skeleton, target_map: BoneMapping, *,
             in_place: bool = False, foot_lock: bool = True, hand_ik: bool = False) -> MotionClip:
    """The source motion on the target skeleton (body_model "none", the source's fps and contacts).

    See the module docstring for the rules; foot_lock and hand_ik add the IK passes described there.
    AvatarCaptureError when a mapping names bones its rig lacks, or either rig lacks the hips or
    legs needed for the root scale.
    """
    src = source.skeleton
    for rig, mapping, which in ((src, source_map, "source"), (target, target_map, "target")):
        missing = mapping.missing_in_rig(rig.joint_names)
        if missing:
            raise AvatarCaptureError(f"the {which} bone mapping names bones the {which} rig lacks: "
                                     f"{', '.join(missing)}")
    scale = leg_ratio(src, source_map, target, target_map)
    pairs = _bone_pairs(source_map, target_map, src, target)

    source_frames = forward_kinematics(src.rest_frames_world, src.parents, source.rotations,
                                       source.root_translation)
    src_rest = src.rest_frames_world[:, :3, :3]
    tgt_rest = target.rest_frames_world[:, :3, :3]
    hips_target = target.index(target_map.bones["hips"])
    wanted: dict[int, np.ndarray] = {}  # target joint -> (T, 3, 3) transferred world rotation
    for (s, t), (s_aim, t_aim) in pairs.items():
        change = source_frames[:, s, :3, :3] @ src_rest[s].T
        if t == hips_target:
            align = np.eye(3)
        else:
            target_dir, source_dir, aimed = _directions(src, target, s, t, s_aim, t_aim)
            align = rotation_between(target_dir, source_dir)
            if aimed and src.parents[s_aim] != s:
                change = _follow_aim(change, source_dir, source_frames[:, s_aim, :3, 3] - source_frames[:, s, :3, 3])
        wanted[t] = change @ align @ tgt_rest[t]

    shares = _chain_shares(target, target_map, set(wanted))
    rest_local = rest_local_transforms(target.rest_frames_world, target.parents)[:, :3, :3]
    frames = len(source_frames)
    world = np.zeros((frames, target.joint_count, 4, 4))
    world[..., 3, 3] = 1.0
    for j in range(target.joint_count):
        parent = target.parents[j]
        if j in shares:
            p, a, fraction = shares[j]
            delta = world[:, p, :3, :3].transpose(0, 2, 1) @ wanted[a] @ (tgt_rest[p].T @ tgt_rest[a]).T
            part = quat_to_matrix(axis_angle_to_quat(fraction * quat_to_axis_angle(matrix_to_quat(delta))))
            world[:, j, :3, :3] = world[:, p, :3, :3] @ part @ tgt_rest[p].T @ tgt_rest[j]
        elif j in wanted:
            world[:, j, :3, :3] = wanted[j]
        elif parent < 0:
            world[:, j, :3, :3] = tgt_rest[j]
        else:
            world[:, j, :3, :3] = world[:, parent, :3, :3] @ rest_local[j]
    world[:, 0, :3, 3] = target.rest_heads_world[0]
    rotations, root_translation = local_rotations(world, target.rest_frames_world, target.parents)
    posed = forward_kinematics(target.rest_frames_world, target.parents, rotations, root_translation)

    hips_source = src.index(source_map.bones["hips"])
    source_legs = [src.index(source_map.bones[f"{side}_upper_leg"]) for side in SIDES]
    target_legs = [target.index(target_map.bones[f"{side}_upper_leg"]) for side in SIDES]
    shift = np.empty((frames, 3))
    travel = (source.joints_world[:, hips_source, :2] - src.rest_heads_world[hips_source, :2]) * scale
    shift[:, :2] = target.rest_heads_world[hips_target, :2] + (0.0 if in_place else travel) \
        - posed[:, hips_target, :2, 3]
    shift[:, 2] = source.joints_world[:, source_legs, 2].mean(axis=1) * scale \
        - posed[:, target_legs, 2, 3].mean(axis=1)
    posed[..., :3, 3] += shift[:, None]
    if foot_lock and not in_place:
        posed = lock_feet(posed, target.parents, _limbs(target, target_map, "leg"), source.contacts, source.fps)
    if hand_ik:
        posed = _reach_source_hands(posed, source, source_map, target, target_map)
    rotations, root_translation = local_rotations(posed, target.rest_frames_world, target.parents)
    rotations = quat_continuous(rotations)
    joints = posed[..., :3, 3]

    bones = landmark_bones(target_map)
    landmark_names = tuple(name for name in LANDMARK_NAMES if name in bones)
    columns = [target.index(bones[name]) for name in landmark_names]
    return MotionClip(
        fps=source.fps,
        skeleton=target,
        rotations=rotations,
        root_translation=root_translation,
        joints_world=joints,
        landmark_names=landmark_names,
        landmarks_world=joints[:, columns],
        contacts=np.array(source.contacts, dtype=np.float64),
        body_model="none",
        body_shape_names=(),
        body_shape=np.zeros(0),
    )


def _limbs(rig: Skeleton, mapping: BoneMapping, limb: str) -> dict:
    """side -> joint indices of a limb's chain mapped on rig: legs (upper_leg, lower_leg, foot, toes or
    None), arms (upper_arm, lower_arm, hand); sides whose chain is not fully mapped are left out."""
    parts = ("upper_leg", "lower_leg", "foot") if limb == "leg" else ("upper_arm", "lower_arm", "hand")
    out = {}
    for side in SIDES:
        names = [mapping.bones.get(f"{side}_{part}") for part in parts]
        if all(names):
            chain = tuple(rig.index(n) for n in names)
            if limb == "leg":
                toes = mapping.bones.get(f"{side}_toes")
                chain += (rig.index(toes) if toes else None,)
            out[side] = chain
    return out


def _reach_source_hands(posed: np.ndarray, source: MotionClip, source_map: BoneMapping, target: Skeleton,
                        target_map: BoneMapping) -> np.ndarray:
    """posed (T, J, 4, 4) with the hands at the source's hand offsets from its mid-hip point, scaled by
    the rigs' reach ratio (mid-hip to shoulder plus upper and lower arm at rest, target over source):
    the legs' ratio would put the hands out of reach of rigs with other trunk proportions."""
    src = source.skeleton
    reach, hips = [], {}
    for which, rig, mapping in (("source", src, source_map), ("target", target, target_map)):
        hips[which] = [rig.index(mapping.bones[f"{side}_upper_leg"]) for side in SIDES]
        heads = rig.rest_heads_world
        middle = heads[hips[which]].mean(axis=0)
        arms = [[heads[rig.index(mapping.bones[f"{side}_{part}"])] for part in ("upper_arm", "lower_arm", "hand")]
                for side in SIDES]
        reach.append(np.mean([np.linalg.norm(s - middle) + np.linalg.norm(e - s) + np.linalg.norm(h - e)
                              for s, e, h in arms]))
    source_hips = source.joints_world[:, hips["source"]].mean(axis=1)
    offsets = {side: (source.joints_world[:, src.index(source_map.bones[f"{side}_hand"])] - source_hips)
               * (reach[1] / reach[0]) for side in SIDES}
    target_hips = posed[:, hips["target"]][..., :3, 3].mean(axis=1)
    return reach_hands(posed, target.parents, _limbs(target, target_map, "arm"), offsets, target_hips)


def _directions(src: Skeleton, target: Skeleton, s: int, t: int, s_aim: int | None,
                t_aim: int | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Rest directions (target, source) of a bone pair and whether they aim at joints: towards the aim
    joints' heads, else the Y axes (also where either aim is under 1 mm away, as CMU's Spine1 -> Neck is)."""
    if s_aim is not None:
        target_dir = target.rest_heads_world[t_aim] - target.rest_heads_world[t]
        source_dir = src.rest_heads_world[s_aim] - src.rest_heads_world[s]
        if min(np.linalg.norm(target_dir), np.linalg.norm(source_dir)) > 1e-3:
            return target_dir, source_dir, True
    return target.rest_frames_world[t, :3, 1], src.rest_frames_world[s, :3, 1], False


def _follow_aim(change: np.ndarray, rest_direction: np.ndarray, posed_direction: np.ndarray) -> np.ndarray:
    """The source bone's rotation change (T, 3, 3), swung so the rest direction lands on the posed one.

    Where unmapped bones sit between a mapped bone and its aim (Anny's upperarm02 between
    upperarm01 and the elbow), the bone's own rotation does not say where the limb points:
    the smallest extra turn from where it would point to where the aim joint really is
    (posed_direction (T, 3)) fixes the direction and keeps the bone's twist.
    """
    return rotation_between(change @ rest_direction, posed_direction) @ change


def leg_ratio(src: Skeleton, source_map: BoneMapping, target: Skeleton, target_map: BoneMapping) -> float:
    """Target leg length (upper_leg + lower_leg, rest heads, mean of both sides) over the source's."""
    lengths = []
    for rig, mapping in ((src, source_map), (target, target_map)):
        needed = ["hips"] + [f"{side}_{part}" for side in SIDES for part in ("upper_leg", "lower_leg", "foot")]
        absent = [j for j in needed if j not in mapping.bones]
        if absent:
            raise AvatarCaptureError(f"cannot retarget: the mapping '{mapping.name}' has no {', '.join(absent)}")
        lengths.append(leg_length(rig, mapping))
    if not lengths[0] > 0:
        raise AvatarCaptureError("cannot retarget: the source legs have zero length at rest")
    return float(lengths[1] / lengths[0])


def _bone_pairs(source_map: BoneMapping, target_map: BoneMapping, src: Skeleton,
                target: Skeleton) -> dict[tuple[int, int], tuple[int | None, int | None]]:
    """(source joint, target joint) -> the joints whose heads they aim at, (None, None) to use the Y axes.

    Pairs: every canonical joint mapped on both rigs, plus the chain ends. The aim is the canonical
    child mapped on both (the middle finger for a hand, the neck for the upper chest), else none.
    """
    both = [j for j in CANONICAL_JOINTS if j in source_map.bones and j in target_map.bones]

    def joints(canonical: str | None) -> tuple[int | None, int | None]:
        if canonical is None:
            return None, None
        return src.index(source_map.bones[canonical]), target.index(target_map.bones[canonical])

    def aim(canonical: str) -> str | None:
        children = [k for k in both if CANONICAL_PARENTS[k] == canonical]
        return next((k for k in children if k.endswith("middle_1")), children[0] if children else None)

    pairs = {joints(j): joints(aim(j)) for j in both}
    taken = {t for _s, t in pairs}
    for attribute, after in (("spine_chain", "neck"), ("neck_chain", "head")):
        source_chain, target_chain = getattr(source_map, attribute), getattr(target_map, attribute)
        if source_chain and target_chain and target.index(target_chain[-1]) not in taken:
            end = (src.index(source_chain[-1]), target.index(target_chain[-1]))
            pairs[end] = joints(after if after in both else None)
    return pairs


def _chain_shares(target: Skeleton, target_map: BoneMapping,
                  anchors: set[int]) -> dict[int, tuple[int, int, float]]:
    """Target chain bone -> (previous anchor p, next anchor a, share i/m) for the spreading rule."""
    shares = {}
    for chain_names in (target_map.spine_chain, target_map.neck_chain):
        chain = [target.index(b) for b in chain_names]
        if not chain or target.parents[chain[0]] < 0 or any(
                target.parents[b] != a for a, b in zip(chain, chain[1:])):
            continue
        previous, pending = int(target.parents[chain[0]]), []
        for bone in chain:
            pending.append(bone)
            if bone in anchors:
                shares.update({b: (previous, bone, (i + 1) / len(pending)) for i, b in enumerate(pending)
                               if len(pending) > 1})
                previous, pending = bone, []
    return shares

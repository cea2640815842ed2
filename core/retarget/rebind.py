"""Rebind meshes and splat clouds skinned to a source rig onto a target rig (LBS rebinding).

Why: a captured avatar (the Anny mesh, or a splat cloud bound to its armature) should be
driven by the user's own rig. Retargeting (transfer.py) gives target bone t the world
rotation D(s) A_t T_rest(t), where D(s) is the mapped source bone's rotation change from its
rest and A_t turns the target's rest bone direction onto the source's. So while the source
stands in its rest pose the target stands in "P0": retarget(source at rest), bone frames
P0(t) with rotations A_t T_rest(t). The rebound geometry is the scaled source rest geometry
S(p) taken back from P0 to the target's rest pose through the target's own skinning:

    q = G^-1 S(p),   G = sum_b w_b P0(t_b) T_rest(t_b)^-1      (t_b: target bone taking weight b)

so the target in P0 shows exactly the scaled source rest mesh, and posed by retarget(motion)
bone t turns it by D(s) about its own joint. One bone: q = head_t + A_t^-1 (S(p) - P0 head_t).
Where the rigs have the same proportions P0 head_t = S(head_s) and this is
q = head_t + A_t^-1 (S(p) - S(head_s)): the geometry then moves exactly like the source
geometry (scaled). Where they differ, taking the heads of the scaled source instead would
tear the mesh at rest by the joint mismatch (measured Anny -> MPFB2 Mixamo: its spine bone
starts 14.5 cm higher than Anny's spine05, so the belly would jump 14.5 cm); with P0's heads the
mesh keeps its shape and only the pivots differ while it moves.

S scales the source by the leg-length ratio k that retarget uses for the root, about the
ground point under the source's rest hips, and puts that point under the target's rest hips:
S(p) = c_t + k (p - c_s). The avatar gets the target's size.

Blending: q inverts the blended map G, not the blend of the inverse maps, so P0 reproduces
the scaled source geometry even where a point's bones have different A (an A-posed arm
meeting a T-posed shoulder). Over motion such points are close but not exact: no single rest
position of a linear blend can be. Where inverting G would stretch a point more than 2x (its
bones' A over ~120 degrees apart, as for a forearm folded back in the target's rest pose), the
blend of the inverse maps is used instead.

Weight transfer (source bone -> target bone that takes its weight and its map):
1. a source bone mapped to a canonical joint that the target also maps: that target bone;
2. spine / neck chain bones (BoneMapping.spine_chain / neck_chain, else the mapped segment
   bones) not paired by 1: the target chain bone at the nearest relative position along the
   chain, bone i of n sitting at (i + 0.5) / n, so chains of any lengths pair evenly;
3. any other source bone (fingers, toes or eyes the target lacks, twist or helper bones): its
   nearest paired source ancestor's target bone (the geometry moves rigidly with it, as it
   does while that bone stays at rest); bones with no paired ancestor (a root above the hips)
   go to the hips.
Several source bones landing on one target bone have their weights summed.
Frames: points, skeletons and clouds share one frame (Blender's world: metres, Z up).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..clip import MotionClip
from ..errors import AvatarCaptureError
from ..kinematics import forward_kinematics, skinning_matrices
from ..skeleton import Skeleton
from ..splats.gaussians import Gaussians, SplatSkin
from ..splats.skinning import deform_covariances, polar_rotations
from ..splats.transforms import rotate_sh
from .humanoid import CANONICAL_JOINTS, NECK_SEGMENT, SPINE_SEGMENT, BoneMapping
from .transfer import leg_ratio, retarget

# Smallest singular value of a point's blended bind map below which inverting it would blow the point
# up more than 2x (bones turned over ~120 degrees apart): use the blend of the inverse maps instead.
_MIN_SINGULAR_VALUE = 0.5
# The splat skin's rest frames may differ from the source skeleton's by this much (metres / unit axes).
_REST_TOLERANCE = 1e-4


@dataclass(frozen=True)
class RebindPlan:
    """How geometry skinned to the source moves to the target (module docstring).

    target_joint (Js,): the target joint taking each source joint's weight;
    pose0_deformation (Jt, 4, 4): each target bone's skinning map P0 T_rest^-1 (target rest ->
    scaled source rest, rotation part A); similarity (4, 4): S.
    """

    target_joint: np.ndarray
    pose0_deformation: np.ndarray
    similarity: np.ndarray


def rebind_plan(source: Skeleton, source_map: BoneMapping, target: Skeleton, target_map: BoneMapping) -> RebindPlan:
    """The weight transfer and per-bone maps for geometry skinned to source, rebound to target.

    AvatarCaptureError when a mapping names bones its rig lacks or the legs needed for the
    scale are unmapped (retarget's own checks).
    """
    pose0 = _pose_with_source_at_rest(source, source_map, target, target_map)
    scale = leg_ratio(source, source_map, target, target_map)
    s_hips = source.rest_heads_world[source.index(source_map.bones["hips"])]
    t_hips = target.rest_heads_world[target.index(target_map.bones["hips"])]
    similarity = np.eye(4)
    similarity[:3, :3] *= scale
    similarity[:2, 3] = t_hips[:2] - scale * s_hips[:2]
    return RebindPlan(_weight_transfer(source, source_map, target, target_map),
                      skinning_matrices(pose0, target.rest_frames_world), similarity)


def rebind_points(points_world: np.ndarray, skin_indices: np.ndarray, skin_weights: np.ndarray,
                  source: Skeleton, source_map: BoneMapping, target: Skeleton, target_map: BoneMapping,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points skinned to source (rest pose), rebound to target: (points in the target rest, same shape,
    skin_indices into target joints (N, K), skin_weights (N, K), heaviest first, rows summing to 1).

    points_world (N, 3) metres in the source's rest pose, or (S, N, 3) for S versions of the same
    skinned points (a mesh's shape keys: each moves with the same per-point map, so a key's offsets
    turn into the target's rest pose with their vertex); skin_indices (N, K) into source joints,
    skin_weights (N, K) rows summing to 1. See the module docstring for the rules.
    """
    plan = rebind_plan(source, source_map, target, target_map)
    points, _linear = _move(plan, points_world, skin_indices, skin_weights)
    indices, weights = _transfer_weights(plan.target_joint[np.asarray(skin_indices)], skin_weights)
    return points, indices, weights


def rebind_gaussians(g: Gaussians, source: Skeleton, source_map: BoneMapping, target: Skeleton,
                     target_map: BoneMapping) -> Gaussians:
    """A splat cloud skinned to source (g.skin), rebound to target: means, covariances and SH moved
    into the target's rest pose, with a SplatSkin on the target bones that take weight.

    The cloud's frame must be the skeletons' frame: g.skin's rest frames must be source's
    (within 0.1 mm), else AvatarCaptureError (bind the cloud to this skeleton, or move it
    into the skeleton's frame first). The new skin lists the weighted target bones in target
    order (parents before children), each bone's parent being its nearest listed ancestor.
    """
    skin = g.skin
    if skin is None:
        raise AvatarCaptureError("these splats have no skin; bind them to the source armature first")
    absent = [name for name in skin.bone_names if name not in source.joint_names]
    if absent:
        raise AvatarCaptureError(f"the splat skin names bones the source rig lacks: {', '.join(absent[:5])}")
    joints = np.array([source.index(name) for name in skin.bone_names])
    error = np.abs(skin.rest_bone_to_object - source.rest_frames_world[joints]).max()
    if error > _REST_TOLERANCE:
        raise AvatarCaptureError(f"the splats' skin rest frames differ from the source rig's by {error:.4g} "
                                 "(not bound to this rig in this frame)")
    plan = rebind_plan(source, source_map, target, target_map)
    source_indices = joints[skin.bone_indices]
    means, linear = _move(plan, g.means.astype(np.float64), source_indices, skin.bone_weights)
    polar = polar_rotations(linear)
    rotations, log_scales = deform_covariances(linear, polar, g.rotations, g.log_scales)
    indices, weights = _transfer_weights(plan.target_joint[source_indices], skin.bone_weights)
    used = np.unique(indices[weights > 0])
    position = np.full(target.joint_count, -1)
    position[used] = np.arange(len(used))
    parents = np.array([_nearest_listed_ancestor(target.parents, j, position) for j in used], np.int32)
    new_skin = SplatSkin(tuple(target.joint_names[j] for j in used), parents, target.rest_frames_world[used],
                         np.where(weights > 0, position[indices], 0).astype(np.int32),
                         weights.astype(np.float32))
    return replace(g, means=means.astype(np.float32), rotations=rotations.astype(np.float32),
                   log_scales=log_scales.astype(np.float32), sh=rotate_sh(g.sh, polar), skin=new_skin)


def _pose_with_source_at_rest(source: Skeleton, source_map: BoneMapping, target: Skeleton,
                              target_map: BoneMapping) -> np.ndarray:
    """Target world frames (Jt, 4, 4) retargeted from the source standing still in its rest pose ("P0")."""
    joints = source.joint_count
    rest = MotionClip(fps=1.0, skeleton=source, rotations=np.tile([1.0, 0.0, 0.0, 0.0], (1, joints, 1)),
                      root_translation=source.rest_heads_world[None, 0].copy(),
                      joints_world=source.rest_heads_world[None].copy(), landmark_names=(),
                      landmarks_world=np.zeros((1, 0, 3)), contacts=np.zeros((1, 4)), body_model="none",
                      body_shape_names=(), body_shape=np.zeros(0))
    clip = retarget(rest, source_map, target, target_map, foot_lock=False)
    return forward_kinematics(target.rest_frames_world, target.parents, clip.rotations, clip.root_translation)[0]


def _weight_transfer(source: Skeleton, source_map: BoneMapping, target: Skeleton,
                     target_map: BoneMapping) -> np.ndarray:
    """The target joint (Js,) taking each source joint's weight; rules in the module docstring."""
    paired: dict[int, int] = {}
    for joint in CANONICAL_JOINTS:
        if joint in source_map.bones and joint in target_map.bones:
            paired[source.index(source_map.bones[joint])] = target.index(target_map.bones[joint])
    for attribute, segment in (("spine_chain", SPINE_SEGMENT), ("neck_chain", NECK_SEGMENT)):
        source_chain = _chain(source_map, attribute, segment)
        target_chain = _chain(target_map, attribute, segment)
        if not source_chain or not target_chain:
            continue
        at = (np.arange(len(target_chain)) + 0.5) / len(target_chain)
        for i, bone in enumerate(source_chain):
            s = source.index(bone)
            if s not in paired:
                paired[s] = target.index(target_chain[int(np.argmin(np.abs(at - (i + 0.5) / len(source_chain))))])
    hips = source.index(source_map.bones["hips"])
    anchor = np.empty(source.joint_count, np.int64)
    for j in range(source.joint_count):  # parents come before children
        parent = source.parents[j]
        anchor[j] = j if j in paired else (hips if parent < 0 else anchor[parent])
    return np.array([paired[a] for a in anchor], np.int64)


def _chain(mapping: BoneMapping, attribute: str, segment: tuple[str, ...]) -> tuple[str, ...]:
    """The mapping's chain, else its mapped segment bones (root side first)."""
    return getattr(mapping, attribute) or tuple(mapping.bones[j] for j in segment if j in mapping.bones)


def _move(plan: RebindPlan, points: np.ndarray, source_indices: np.ndarray,
          weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points (..., N, 3) moved into the target rest, each point's linear map source rest -> target rest
    (N, 3, 3)); points (..., N, 3) source rest, any leading axes sharing the skin (N, K)."""
    weights = np.asarray(weights, np.float64)
    maps = plan.pose0_deformation[plan.target_joint[np.asarray(source_indices)], :3, :]  # (N, K, 3, 4)
    blended = np.einsum("nk,nkab->nab", weights, maps)
    scaled = np.asarray(points, np.float64) @ plan.similarity[:3, :3].T + plan.similarity[:3, 3]
    linear = np.empty((len(weights), 3, 3))
    ok = np.linalg.svd(blended[:, :, :3], compute_uv=False)[:, -1] >= _MIN_SINGULAR_VALUE
    linear[ok] = np.linalg.inv(blended[ok, :, :3])
    moved = np.einsum("nab,...nb->...na", linear, scaled - blended[:, :, 3])
    if not ok.all():  # the blend of the inverse maps: q = sum_b w_b A_b^T (S(p) - offset_b)
        inverses = maps[~ok, :, :, :3].transpose(0, 1, 3, 2)
        linear[~ok] = np.einsum("nk,nkab->nab", weights[~ok], inverses)
        each = np.einsum("nkab,...nkb->...nka", inverses, scaled[..., ~ok, None, :] - maps[~ok, :, :, 3])
        moved[..., ~ok, :] = np.einsum("nk,...nka->...na", weights[~ok], each)
    return moved, linear * plan.similarity[0, 0]


def _transfer_weights(target_indices: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (N, K) of target joints and weights with repeated joints merged (summed), heaviest first;
    freed slots get weight 0 and the row's first joint."""
    indices = np.asarray(target_indices, np.int64).copy()
    weights = np.asarray(weights, np.float64).copy()
    slots = indices.shape[1]
    for k in range(1, slots):
        for earlier in range(k):
            same = (indices[:, k] == indices[:, earlier]) & (weights[:, earlier] > 0)
            weights[same, earlier] += weights[same, k]
            weights[same, k] = 0.0
    order = np.argsort(-weights, axis=1, kind="stable")
    indices = np.take_along_axis(indices, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    indices[weights <= 0] = np.broadcast_to(indices[:, :1], indices.shape)[weights <= 0]
    return indices, weights / weights.sum(axis=1, keepdims=True)


def _nearest_listed_ancestor(parents: np.ndarray, joint: int, position: np.ndarray) -> int:
    """position (in the listed bones) of joint's nearest ancestor that is listed, -1 when none is."""
    parent = parents[joint]
    while parent >= 0 and position[parent] < 0:
        parent = parents[parent]
    return int(position[parent]) if parent >= 0 else -1

"""Bake a motion clip onto any armature as a new action, and retarget a clip onto an armature.

Why a separate baker from action.write_clip_action: that one keys our own
armatures (object at identity, quaternion bones). A user's rig is anything: an
FBX import rotated 90 degrees about X and scaled 0.01, parented to an empty,
with Euler or axis-angle bones. The clip's skeleton is read from the armature
with readback.read_skeleton (world rest frames, object transform applied, scale
removed), and in that convention each bone's local rotation relative to its
rest frame is exactly Blender's pose-bone rotation (rest_local = parent rest^-1
@ rest is the same in world and armature space up to the object's uniform
scale, which moves only the translations). So the rotations key as they are, in
the bone's own rotation mode, and only the root's location needs the object
transform: it is keyed in the root bone's local units, i.e. divided by the
object's scale.

Assumptions (those of every rig exporter): the object's scale is uniform (a
non-uniform scale shears rotated bones, which no keys can undo), bones inherit
rotation and scale from their parents, and the object transform is the one it
has while baking (an animated parent object moves the baked motion with it).
Frame mapping: clip frame t -> Blender frame t + action.FIRST_FRAME.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.clip import MotionClip
from ..core.retarget.humanoid import BoneMapping
from ..core.retarget.transfer import retarget
from ..core.rotations import quat_continuous, quat_normalize, quat_to_matrix
from .action import FIRST_FRAME, assign_new_action, key_channels
from .retarget_mapping import body_skeleton

# A channel whose values move less than this over the clip is keyed once (constant).
_CONSTANT_TOLERANCE = 1e-9
_AXES = {"X": 0, "Y": 1, "Z": 2}


def bake_clip(armature: bpy.types.Object, clip: MotionClip, *, action_name: str,
              replace_action: bool = False) -> bpy.types.Action:
    """Key clip onto armature as a new layered action, assigned to it; returns the action.

    clip.skeleton must be the armature's, or one root bone's hierarchy of it, as
    readback.read_skeleton gives it (same bone names in the same order; its world rest
    frames); bones outside it get no keys. Every bone's rotation is
    keyed in the bone's own rotation_mode (quaternions sign-continuous, Euler angles
    in its order kept continuous like Blender's compatible Euler, axis-angle as
    (angle, x, y, z)); the root bone's location in its local units. Channels that do
    not move over the clip (bones the clip leaves at rest, for instance) get ONE key
    at the first frame: they are held at their value (identity for bones at rest)
    whatever pose an earlier action left, and the action stays small. The pose's
    other unkeyed channels (location of non-root bones, scale) are reset to rest.

    An armature that already has an action: replace_action False keeps the old
    action (a fake user is set so it survives saving) and assigns the new one;
    True assigns the new one and removes the old one when nothing else uses it
    (another object, the NLA, a fake user the user set). Keys are LINEAR, so Blender
    evaluates the clip's own values at every frame.
    """
    names = tuple(clip.skeleton.joint_names)
    pose_bones = armature.pose.bones
    missing = [n for n in names if pose_bones.get(n) is None]
    if missing:
        raise ValueError(f"the clip's skeleton is not bones of '{armature.name}' (missing: {', '.join(missing[:5])})")
    anim = armature.animation_data
    old = anim.action if anim is not None else None
    old_slot = getattr(anim, "action_slot", None) if old is not None else None
    old_fake_user = old.use_fake_user if old is not None else False
    if old is not None:
        anim.action = None
    action = None
    try:
        action, new_fcurve = assign_new_action(armature, action_name)
        _key_clip(armature, clip, new_fcurve)
    except Exception:
        # All or nothing: no half-keyed action, the old one assigned as before.
        if action is not None:
            bpy.data.actions.remove(action)
        if old is not None:
            armature.animation_data.action = old
            if old_slot is not None:
                armature.animation_data.action_slot = old_slot
        raise
    if old is not None:
        old.use_fake_user = old_fake_user or not replace_action
        if replace_action and old.users == 0:
            bpy.data.actions.remove(old)
    return action


def _key_clip(armature: bpy.types.Object, clip: MotionClip, new_fcurve) -> None:
    """Every bone's rotation in its own mode and the root's location (see bake_clip)."""
    names = clip.skeleton.joint_names
    pose_bones = armature.pose.bones
    rotations = quat_continuous(quat_normalize(np.asarray(clip.rotations, dtype=np.float64)))
    modes = [pose_bones[name].rotation_mode for name in names]
    values: dict[int, tuple[str, np.ndarray]] = {}
    for mode in set(modes):
        bones = [j for j, m in enumerate(modes) if m == mode]
        if mode == "QUATERNION":
            channel, converted = "rotation_quaternion", rotations[:, bones]
        elif mode == "AXIS_ANGLE":
            channel, converted = "rotation_axis_angle", quat_to_blender_axis_angle(rotations[:, bones])
        else:  # all bones of one Euler order at once: the continuity pass loops over frames only
            channel, converted = "rotation_euler", quat_to_euler_continuous(rotations[:, bones], mode)
        values.update({j: (channel, converted[:, k]) for k, j in enumerate(bones)})
    for j, name in enumerate(names):
        bone = pose_bones[name]
        path = f'pose.bones["{bpy.utils.escape_identifier(name)}"]'
        channel, keys = values[j]
        _key(new_fcurve, f"{path}.{channel}", keys, name)
        bone.location = (0.0, 0.0, 0.0)
        bone.scale = (1.0, 1.0, 1.0)
        if j == 0:
            _key(new_fcurve, f"{path}.location", root_location(armature, clip), name)


def _key(new_fcurve, data_path: str, values: np.ndarray, group: str) -> None:
    """key_channels, with one key instead of T when the values do not move."""
    if np.ptp(values, axis=0).max() <= _CONSTANT_TOLERANCE:
        values = values[:1]
    key_channels(new_fcurve, data_path, values, group)


def root_location(armature: bpy.types.Object, clip: MotionClip) -> np.ndarray:
    """The root pose bone's location (T, 3) in its local units placing its head at clip.root_translation.

    Blender poses the root at matrix_world @ matrix_local @ Translation(location) @ ...,
    so location = (matrix_world @ matrix_local)^-1 applied to the world point; the
    object's scale divides it (an FBX import at scale 0.01 gets locations in centimetres).
    """
    root = armature.data.bones[clip.skeleton.joint_names[0]]
    to_bone = np.linalg.inv(np.array(armature.matrix_world, dtype=np.float64)
                            @ np.array(root.matrix_local, dtype=np.float64))
    points = np.asarray(clip.root_translation, dtype=np.float64)
    return points @ to_bone[:3, :3].T + to_bone[:3, 3]


def quat_to_euler_continuous(quats: np.ndarray, order: str) -> np.ndarray:
    """Blender Euler angles (T, ..., 3) (x, y, z radians) in order ("XYZ" ... "ZYX") for quats (T, ..., 4) wxyz.

    Blender's order "XYZ" rotates about X first: R = Rz @ Ry @ Rx. Each frame takes,
    of the two angle triples giving its rotation, each shifted by whole turns to the
    nearest of the previous frame's angles, the one closest to them (what Blender's
    compatible Euler does), so keys interpolate without 360 degree jumps.
    """
    i, j, k = (_AXES[a] for a in order)
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    m = quat_to_matrix(np.asarray(quats, dtype=np.float64))
    sin_b = np.clip(-sign * m[..., k, i], -1.0, 1.0)
    b = np.arcsin(sin_b)
    locked = np.abs(sin_b) > 1.0 - 1e-9
    a = np.where(locked, np.arctan2(-sign * m[..., j, k], m[..., j, j]),
                 np.arctan2(sign * m[..., k, j], m[..., k, k]))
    c = np.where(locked, 0.0, np.arctan2(sign * m[..., j, i], m[..., i, i]))
    first = np.empty(m.shape[:-1])
    first[..., i], first[..., j], first[..., k] = a, b, c
    second = np.empty_like(first)
    second[..., i], second[..., j], second[..., k] = a + np.pi, np.pi - b, c + np.pi
    out = np.empty_like(first)
    previous = _wrap(first[0])
    for t in range(len(m)):
        one, two = _nearest_turn(first[t], previous), _nearest_turn(second[t], previous)
        closer = np.abs(two - previous).sum(axis=-1, keepdims=True) < np.abs(one - previous).sum(axis=-1,
                                                                                                  keepdims=True)
        previous = np.where(closer, two, one)
        out[t] = previous
    return out


def _wrap(angles: np.ndarray) -> np.ndarray:
    return (angles + np.pi) % (2.0 * np.pi) - np.pi


def _nearest_turn(angles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """angles shifted by whole turns (each axis) to lie within half a turn of reference."""
    return angles + 2.0 * np.pi * np.round((reference - angles) / (2.0 * np.pi))


def quat_to_blender_axis_angle(quats: np.ndarray) -> np.ndarray:
    """Blender axis-angle values (T, ..., 4) = (angle, x, y, z) for sign-continuous quats (T, ..., 4) wxyz.

    The angle runs 0..2 pi, continuous with the quaternions; where it is zero the
    axis is undefined and the previous frame's (Blender's default +Y at the start) is kept.
    """
    q = np.asarray(quats, dtype=np.float64)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    out = np.empty(q.shape)
    out[..., 0] = 2.0 * np.arctan2(sin_half[..., 0], q[..., 0])
    axis = np.broadcast_to(np.array([0.0, 1.0, 0.0]), q.shape[1:-1] + (3,))
    for t in range(len(q)):
        axis = np.where(sin_half[t] > 1e-9, q[t, ..., 1:] / np.maximum(sin_half[t], 1e-12), axis)
        out[t, ..., 1:] = axis
    return out


def retarget_onto_armature(scene: bpy.types.Scene, target: bpy.types.Object, source: MotionClip,
                           source_map: BoneMapping, target_map: BoneMapping, *, in_place: bool = False,
                           foot_lock: bool = True, hand_ik: bool = False, action_name: str | None = None,
                           replace_action: bool = False) -> tuple[bpy.types.Action, MotionClip]:
    """Retarget source onto the target armature and bake it; returns (the new action, the target clip).

    One key per source frame at the source's fps: the caller resamples the clip
    (core.retarget.resample.resample_clip) or sets the scene's frame rate first. The
    scene's frame range is set to the action's (frames FIRST_FRAME .. FIRST_FRAME + T - 1).
    See bake_clip for what happens to an action the target already has.
    The body is the hierarchy of the bone mapped as the hips: bones beside it (a loose IK or
    prop bone at the top level) are neither moved nor keyed. Raises AvatarCaptureError from
    core retarget (a mapping naming bones outside that hierarchy ...), before anything is changed.
    """
    target_clip = retarget(source, source_map, body_skeleton(target, target_map), target_map,
                           in_place=in_place, foot_lock=foot_lock, hand_ik=hand_ik)
    action = bake_clip(target, target_clip, action_name=action_name or f"{target.name} Retarget",
                       replace_action=replace_action)
    scene.frame_start = FIRST_FRAME
    scene.frame_end = FIRST_FRAME + target_clip.frame_count - 1
    return action, target_clip

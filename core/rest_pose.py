"""T-pose and A-pose rest frames, and moving clips and rigs onto a new rest pose.

Game engines and retargeting tools expect a T-pose (or A-pose) bind pose, while
Anny rests in a relaxed pose with bent elbows. A new rest pose here is always a
*pose of the same skeleton*: some bones are turned about their heads and every
other bone stays rigidly attached to its parent, so each child's offset from its
parent (in the parent's frame) and every bone length are unchanged. That is what
lets a clip keep exactly the same world motion on the new rest.

Mesh: moving the rig onto a new rest re-skins the rest vertices into that pose
(v' = sum_j w_j Rest'_j inv(Rest_j) v). Per bone, G_j inv(Rest'_j) v' equals
G_j inv(Rest_j) v, so vertices moved by one rest change (all their bones share
it) and all landmarks skin exactly as before; vertices blended across bones whose
rest changed differently (around a shoulder turned to the T) differ slightly, as
in any linear-blend rig re-bound in another pose (Blender's "apply pose as rest").
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .clip import MotionClip
from .errors import AvatarCaptureError
from .kinematics import forward_kinematics, local_rotations, rest_local_transforms, skin_points
from .rig import RiggedBody
from .rotations import matrix_to_quat, rotation_between
from .skeleton import Skeleton

REST_POSES = ("T", "A")
A_POSE_DEGREES = 45.0  # arms this far below horizontal

# Named joints of each body model: "{side}" is filled with the model's side names.
# shoulder..wrist is the arm chain (plus hand_end where the model has a separate
# hand bone); hip..ankle the leg chain, the ankle bone being the foot;
# spine_base..chest the spine chain, neck..head the neck chain.
BODY_JOINTS: dict[str, dict[str, str]] = {
    "anny": {
        "shoulder": "upperarm01.{side}", "elbow": "lowerarm01.{side}", "wrist": "wrist.{side}",
        "hip": "upperleg01.{side}", "knee": "lowerleg01.{side}", "ankle": "foot.{side}",
        "spine": "spine03", "spine_base": "spine05", "chest": "spine01", "neck": "neck01", "head": "head",
    },
    "smpl": {
        "shoulder": "{side}_shoulder", "elbow": "{side}_elbow", "wrist": "{side}_wrist",
        "hand_end": "{side}_hand",
        "hip": "{side}_hip", "knee": "{side}_knee", "ankle": "{side}_ankle",
        "spine": "spine2", "spine_base": "spine1", "chest": "spine3", "neck": "neck", "head": "head",
    },
    "smplx": {
        "shoulder": "{side}_shoulder", "elbow": "{side}_elbow", "wrist": "{side}_wrist",
        "hip": "{side}_hip", "knee": "{side}_knee", "ankle": "{side}_ankle",
        "spine": "spine2", "spine_base": "spine1", "chest": "spine3", "neck": "neck", "head": "head",
    },
}
SIDE_NAMES = {"anny": {"left": "L", "right": "R"}, "smpl": {"left": "left", "right": "right"},
              "smplx": {"left": "left", "right": "right"}}
SIDES = (("left", 1.0), ("right", -1.0))  # the body's left is +X in the world


def body_joint(skeleton: Skeleton, body_model: str, part: str, side: str = "left") -> int:
    """Index of a named body joint ("hip", "knee", ... from BODY_JOINTS) on one side."""
    if body_model not in BODY_JOINTS:
        raise AvatarCaptureError(f"no named joints are known for body model '{body_model}'")
    return skeleton.index(BODY_JOINTS[body_model][part].format(side=SIDE_NAMES[body_model][side]))


def chain(skeleton: Skeleton, first: int, last: int) -> list[int]:
    """Joints from `first` down to `last` (both included), parents first."""
    path = [last]
    while path[-1] != first:
        if path[-1] <= 0:
            raise AvatarCaptureError(
                f"'{skeleton.joint_names[last]}' does not descend from '{skeleton.joint_names[first]}'"
            )
        path.append(int(skeleton.parents[path[-1]]))
    return path[::-1]


def rest_frames_for(skeleton: Skeleton, body_model: str, pose: str) -> np.ndarray:
    """Rest frames (J, 4, 4) of `skeleton` in a T-pose or A-pose (world frame, metres).

    Arms (shoulder to hand) point sideways, horizontally for "T" or A_POSE_DEGREES
    down for "A"; legs (hip to ankle) point straight down; feet keep their world
    orientation so they stay flat; all other bones follow their parents rigidly.
    """
    if pose not in REST_POSES:
        raise AvatarCaptureError(f"unknown rest pose '{pose}' (choose T or A)")
    drop = 0.0 if pose == "T" else np.radians(A_POSE_DEGREES)
    aims: dict[int, np.ndarray] = {}
    keep: set[int] = set()
    for side, sign in SIDES:
        arm = chain(skeleton, body_joint(skeleton, body_model, "shoulder", side),
                    body_joint(skeleton, body_model, "wrist", side))
        if "hand_end" in BODY_JOINTS[body_model]:
            arm.append(body_joint(skeleton, body_model, "hand_end", side))
        ankle = body_joint(skeleton, body_model, "ankle", side)
        leg = chain(skeleton, body_joint(skeleton, body_model, "hip", side), ankle)[:-1]
        aims.update({j: np.array([sign * np.cos(drop), 0.0, -np.sin(drop)]) for j in arm})
        aims.update({j: np.array([0.0, 0.0, -1.0]) for j in leg})
        keep.add(ankle)

    rest = skeleton.rest_frames_world
    local = rest_local_transforms(rest, skeleton.parents)
    world = np.empty((skeleton.joint_count, 3, 3))
    delta = np.empty((skeleton.joint_count, 3, 3))
    for j in range(skeleton.joint_count):
        current = local[j, :3, :3] if j == 0 else world[skeleton.parents[j]] @ local[j, :3, :3]
        if j in aims:
            world[j] = rotation_between(current[:, 1], aims[j]) @ current
        elif j in keep:
            world[j] = rest[j, :3, :3]
        else:
            world[j] = current
        delta[j] = current.T @ world[j]
    return forward_kinematics(rest, skeleton.parents, matrix_to_quat(delta)[None], rest[None, 0, :3, 3])[0]


def rebase_clip(clip: MotionClip, new_rest_frames: np.ndarray) -> MotionClip:
    """The same world motion with rotations relative to new rest frames (a pose of the same skeleton).

    joints_world, landmarks_world, root_translation and contacts are unchanged.
    """
    skeleton = _rebased_skeleton(clip.skeleton, new_rest_frames)
    old = clip.skeleton
    frames = forward_kinematics(old.rest_frames_world, old.parents, clip.rotations, clip.root_translation)
    rotations, _ = local_rotations(frames, skeleton.rest_frames_world, skeleton.parents)
    return dataclasses.replace(clip, skeleton=skeleton, rotations=rotations)


def rebase_rig(rig: RiggedBody, new_rest_frames: np.ndarray) -> RiggedBody:
    """The rig bound in new rest frames: rest vertices and landmark points moved into that pose."""
    skeleton = _rebased_skeleton(rig.skeleton, new_rest_frames)
    change = skeleton.rest_frames_world @ np.linalg.inv(rig.skeleton.rest_frames_world)  # (J, 4, 4)
    vertices = skin_points(rig.vertices_rest, rig.skin_indices, rig.skin_weights, change[None])[0]
    bone_points = np.einsum("jab,ljb->lja", change, rig.landmark_bone_points)
    return dataclasses.replace(rig, skeleton=skeleton, vertices_rest=vertices, landmark_bone_points=bone_points)


def _rebased_skeleton(skeleton: Skeleton, new_rest_frames: np.ndarray) -> Skeleton:
    new_rest_frames = np.asarray(new_rest_frames, dtype=np.float64)
    if new_rest_frames.shape != skeleton.rest_frames_world.shape:
        raise AvatarCaptureError(
            f"new rest frames have shape {new_rest_frames.shape}, the skeleton needs {skeleton.rest_frames_world.shape}"
        )
    offsets = rest_local_transforms(skeleton.rest_frames_world, skeleton.parents)[1:, :3, 3]
    new_offsets = rest_local_transforms(new_rest_frames, skeleton.parents)[1:, :3, 3]
    if not np.allclose(offsets, new_offsets, atol=1e-6) or not np.allclose(
        new_rest_frames[0, :3, 3], skeleton.rest_frames_world[0, :3, 3], atol=1e-6
    ):
        raise AvatarCaptureError("the new rest pose must be a pose of the same skeleton (bone offsets changed)")
    return dataclasses.replace(skeleton, rest_frames_world=new_rest_frames)

"""Import a BVH file as a motion clip, so retargeting, export and the viewer take mocap like a capture.

Why a clip: every consumer reads core.clip.MotionClip, so a BVH file becomes one
skeleton-only clip (body_model "none") and needs no path of its own downstream.

The skeleton is built as Blender's BVH importer builds its armature, so the
clip and an imported BVH armature agree bone for bone:
  * heads are the joints' rest positions (every rotation zero, joints at their
    OFFSETs) in Blender's world frame (metres, Z up, -Y forward; core.bvh does
    the axes and the unit);
  * a bone's tail is its End Site, else its only child's head, else the mean of
    its children's heads; a bone shorter than 0.001 file units gets 0.1 file
    units added upwards (file +Y, Blender +Z), as the importer does;
  * the rest frame's Y runs from head to tail with the importer's roll 0: the
    smallest turn taking the file's +Y onto the bone in the file's axes, then
    the file-to-Blender axes turn.
Local rotations (wxyz) relative to those rest frames come from core.kinematics,
so forward kinematics of the clip gives core.bvh.world_pose's joint positions
(joints_world stores them exactly). A non-root joint with position channels
that move it away from its OFFSET cannot be carried by rotations: joints_world
keeps the file's motion and a warning says the rotations do not.

Landmarks: the subset of core.landmarks.LANDMARK_NAMES that joints give directly, found
through the humanoid bone mapping (retarget.auto_map: presets, names, topology); heels
and face points are not joints in BVH files and are left out. Contacts (T, 4) use the ankle joint
for the heel and the toe tip (the toe joint's End Site, else the toe joint) for
the toe, detected by core.capture.fit.contacts.detect_contacts (low and slow:
within 6.5 cm of standing height, under 0.65 m/s) above a ground level
estimated from the lowest foot heights (see foot_contacts).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from ..bvh import BVH_TO_BLENDER, BvhMotion, read_bvh, unit_scale, world_pose
from ..capture.fit.contacts import detect_contacts
from ..clip import MotionClip
from ..errors import AvatarCaptureError, FileFormatError
from ..kinematics import forward_kinematics, local_rotations
from ..landmarks import CONTACT_NAMES, LANDMARK_NAMES
from ..rotations import quat_continuous, rotation_between
from ..skeleton import Skeleton
from .auto_map import auto_map
from .humanoid import BoneMapping, landmark_bones

log = logging.getLogger(__name__)
MAX_STANDING_M = 0.15  # highest a foot point (the ankle) sits above the floor with the foot flat

def clip_from_bvh(path: str | Path, *, scale: float | None = None) -> MotionClip:
    """Read a BVH file as a skeleton-only clip in Blender's world frame; see the module docstring.

    scale: metres per file unit; None guesses it from the rest height (core.bvh.unit_scale).
    FileFormatError names the file for unreadable files, files without frames (read_bvh)
    and a non-positive scale.
    """
    bvh = read_bvh(path)
    if scale is None:
        scale = unit_scale(bvh)
    elif not (np.isfinite(scale) and scale > 0):
        raise FileFormatError(path, f"the unit scale must be a positive number of metres, got {scale}")
    pose = world_pose(bvh, scale)
    heads, ends = _rest_heads_and_ends(bvh, scale)
    tails = _tails(bvh, heads, ends, scale)
    rest = _rest_frames(heads, tails)
    skeleton = Skeleton(joint_names=bvh.joint_names, parents=bvh.parents, rest_frames_world=rest,
                        bone_lengths=np.linalg.norm(tails - heads, axis=-1))

    # BVH rest frames are the file axes, so a joint's posed bone frame is its world rotation times its rest frame.
    posed = np.zeros((bvh.frame_count, len(heads), 4, 4))
    posed[..., :3, :3] = pose.rotations @ rest[:, :3, :3]
    posed[..., :3, 3] = pose.positions
    posed[..., 3, 3] = 1.0
    rotations, root_translation = local_rotations(posed, rest, bvh.parents)
    rotations = quat_continuous(rotations)
    _warn_if_joints_translate(path, skeleton, rotations, root_translation, pose.positions)

    names = _landmark_joints(bvh.joint_names, bvh.parents)
    points = {name: pose.positions[:, joint] for name, joint in names.items()}
    for side in ("left", "right"):  # the toe landmark is the toe tip where the file gives one
        toe = names.get(f"{side}_toe")
        if toe is not None and not np.isnan(bvh.end_sites[toe, 0]):
            points[f"{side}_toe"] = pose.end_sites[:, toe]
    landmark_names = tuple(name for name in LANDMARK_NAMES if name in points)
    landmarks = np.stack([points[name] for name in landmark_names], axis=1) if landmark_names \
        else np.zeros((bvh.frame_count, 0, 3))
    return MotionClip(
        fps=bvh.fps,
        skeleton=skeleton,
        rotations=rotations,
        root_translation=root_translation,
        joints_world=pose.positions,
        landmark_names=landmark_names,
        landmarks_world=landmarks,
        contacts=foot_contacts(path, points, bvh.frame_count, bvh.fps),
        body_model="none",
        body_shape_names=(),
        body_shape=np.zeros(0),
    )


def _rest_heads_and_ends(bvh: BvhMotion, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Rest joint heads and End Sites (J, 3) in Blender's world: one frame with zero rotations, joints at OFFSETs."""
    row = np.zeros((1, bvh.motion.shape[1]))
    for joint, names in enumerate(bvh.channels):
        for column, name in zip(bvh.channel_columns(joint), names):
            if name.endswith("position"):
                row[0, column] = bvh.offsets[joint, "XYZ".index(name[0])]
    rest = world_pose(dataclasses.replace(bvh, motion=row), scale)
    return rest.positions[0], rest.end_sites[0]


def _tails(bvh: BvhMotion, heads: np.ndarray, ends: np.ndarray, scale: float) -> np.ndarray:
    """Bone tails (J, 3) by the rules of Blender's BVH importer (module docstring)."""
    tails = heads.copy()
    for joint in range(len(heads)):
        children = np.flatnonzero(bvh.parents == joint)
        if not np.isnan(ends[joint, 0]):
            tails[joint] = ends[joint]
        elif len(children):
            tails[joint] = heads[children].mean(axis=0)
        if np.linalg.norm(tails[joint] - heads[joint]) <= 0.001 * scale:
            tails[joint] = tails[joint] + BVH_TO_BLENDER @ np.array([0.0, 0.1 * scale, 0.0])
    return tails


def _rest_frames(heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """Rest frames (J, 4, 4): roll 0 in the file's axes (smallest turn from file +Y), then into Blender's axes."""
    bone_in_file = (tails - heads) @ BVH_TO_BLENDER  # rows: BVH_TO_BLENDER.T @ direction
    frames = np.zeros((len(heads), 4, 4))
    frames[:, :3, :3] = BVH_TO_BLENDER @ rotation_between(np.array([0.0, 1.0, 0.0]), bone_in_file)
    frames[:, :3, 3] = heads
    frames[:, 3, 3] = 1.0
    return frames


def _warn_if_joints_translate(path, skeleton: Skeleton, rotations: np.ndarray, root_translation: np.ndarray,
                              joints_world: np.ndarray) -> None:
    """Log a warning when the clip's forward kinematics misses the file's joints (non-root position channels)."""
    fk = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, rotations, root_translation)[..., :3, 3]
    miss = np.linalg.norm(fk - joints_world, axis=-1).max(axis=0)
    moved = [skeleton.joint_names[j] for j in np.flatnonzero(miss > 1e-4)]
    if moved:
        log.warning("%s: joints %s move away from their parents (position channels); the clip's rotations do not "
                    "carry that, only joints_world does", path, ", ".join(moved))


def _landmark_joints(joint_names: tuple[str, ...], parents: np.ndarray) -> dict[str, int]:
    """Landmark name -> joint index, through the humanoid bone mapping (presets, names, topology).

    Empty when the skeleton is not a recognisable humanoid: the clip then has no landmarks.
    """
    try:
        mapping, _report = auto_map(joint_names, parents)
    except AvatarCaptureError as exc:
        log.warning("no humanoid landmarks: %s", exc)
        return {}
    index = {name: joint for joint, name in enumerate(joint_names)}
    return {landmark: index[bone] for landmark, bone in landmark_bones(mapping).items()}


def contacts_from_mapping(clip: MotionClip, mapping: BoneMapping, where: str) -> np.ndarray:
    """Contacts (T, 4) of a clip that carries none (an armature's action read back), from the joints
    mapped as ankles (foot) and toes, by foot_contacts; where names the source in warnings."""
    bones = landmark_bones(mapping)
    points = {name: clip.joints_world[:, clip.skeleton.index(bones[name])]
              for name in ("left_ankle", "left_toe", "right_ankle", "right_toe") if name in bones}
    return foot_contacts(where, points, clip.frame_count, clip.fps)


def foot_contacts(path, points: dict[str, np.ndarray], frames: int, fps: float) -> np.ndarray:
    """Contacts (T, 4) in CONTACT_NAMES order: the ankle stands in for the heel; a side without feet stays 0.

    The ground is the lowest the feet get (1st percentile of every foot point's height over the clip);
    each point's standing height above it is the 2nd percentile of its own height (an ankle rides
    ~8 cm above the floor with the foot flat), capped at MAX_STANDING_M so a foot that never comes
    down is not taken to stand where it hovers. Rest poses are not used: BVH rest feet are often
    not flat (CMU's ankles are 2.5 cm above their toes at rest, 7 cm when standing).
    """
    contacts = np.zeros((frames, len(CONTACT_NAMES)))
    feet, columns, missing = [], [], []
    for side in ("left", "right"):
        if f"{side}_ankle" not in points or f"{side}_toe" not in points:
            missing.append(side)
            continue
        feet += [points[f"{side}_ankle"], points[f"{side}_toe"]]
        columns += [CONTACT_NAMES.index(f"{side}_heel"), CONTACT_NAMES.index(f"{side}_toe")]
    if missing:
        log.warning("%s: no ankle and toe joints recognised on the %s side; their contacts are left at 0", path,
                    " and ".join(missing))
    if not columns:
        return contacts
    foot_points = np.stack(feet, axis=1)  # (T, P, 3)
    heights = foot_points[..., 2] - np.percentile(foot_points[..., 2], 1.0)
    standing = np.minimum(np.percentile(heights, 2.0, axis=0), MAX_STANDING_M)
    grounded = foot_points.copy()
    grounded[..., 2] = heights
    contacts[:, columns] = detect_contacts(grounded, fps, standing)
    return contacts

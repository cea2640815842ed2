"""A procedural walk: motion for `make demo` and for tests until capture exists.

The gait is built so the feet do not slide, which is what makes it a fair test
input for import, export and contact handling:
  * each hip sweeps back linearly while its foot is on the ground (60 % of the
    cycle: constant angular speed gives a nearly constant foot speed) and swings
    forward on a cosine; knees straighten in stance and flex in swing; ankles
    keep the feet flat; arms swing against the legs and the chest twists with them;
  * the root moves forward (-Y) exactly as far as the planted foot moves back
    relative to it, and up or down so the lowest foot landmark stays at its
    standing height, which gives the small bob of a real walk;
  * the hip sweep is sized from the rig's leg length for the requested speed.
Contacts (0..1) come from each foot landmark's height above its standing height
and its horizontal speed. Joints come from rest_pose.BODY_JOINTS, so any body
model listed there (Anny, SMPL, SMPL-X) can walk.
"""
from __future__ import annotations

import numpy as np

from .clip import MotionClip, clip_from_pose
from .landmarks import CONTACT_NAMES
from .rest_pose import SIDES, body_joint
from .rig import RiggedBody
from .rotations import axis_angle_to_quat, matrix_to_quat, quat_to_matrix

STRIDE_HZ = 1.0  # gait cycles per second (two steps)
STANCE = 0.6  # fraction of the cycle a foot is on the ground
KNEE_SWING_DEGREES = 55.0
ARM_SWING = 0.6  # arm swing relative to the opposite hip sweep
ELBOW_FLEX_DEGREES = 15.0  # elbow bend while walking, whatever the rest pose's bend
ARM_HANG_DEGREES = 10.0  # upper arm angle from vertical, seen from the front
TORSO_TWIST_DEGREES = 4.0  # the chest turns with the arm swing; the pelvis does not, so planted feet stay put
CONTACT_HEIGHT = 0.03  # metres above standing height where contact fades to 0
CONTACT_SPEED = 0.4  # metres per second where contact fades to 0


def make_demo_clip(rig: RiggedBody, seconds: float = 4.0, fps: float = 30.0, speed: float = 1.2) -> MotionClip:
    """A walk of `seconds` at `fps` moving along -Y at about `speed` m/s, feet on Z = 0."""
    skeleton, model = rig.skeleton, rig.body_model
    frame_count = max(2, int(round(seconds * fps)))
    cycle = STRIDE_HZ * np.arange(frame_count) / fps
    rest_pose = rig.pose(_identity(1, skeleton.joint_count), skeleton.rest_heads_world[:1])
    feet = [rig.landmark_names.index(name) for name in CONTACT_NAMES]
    standing = rig.landmarks(rest_pose)[0, feet, 2]  # (4,) rest heights of the foot landmarks

    hip_height = skeleton.rest_heads_world[body_joint(skeleton, model, "hip"), 2]
    leg = hip_height - float(np.mean(standing))
    sweep = float(np.arcsin(min(0.9, speed * STANCE / (2.0 * leg * STRIDE_HZ))))

    angles: dict[int, np.ndarray] = {}  # joint -> angle (T,) about the world X axis at rest, radians
    hips = {}
    for side, _ in SIDES:
        phase = (cycle + (0.0 if side == "left" else 0.5)) % 1.0
        swing = np.clip((phase - STANCE) / (1.0 - STANCE), 0.0, 1.0)
        hip = np.where(phase < STANCE, sweep * (1.0 - 2.0 * phase / STANCE), -sweep * np.cos(np.pi * swing))
        knee = np.radians(KNEE_SWING_DEGREES) * np.sin(np.pi * swing)
        hips[side] = hip
        # Forward (-Y) swings are negative rotations about +X; knee flexion is positive.
        angles[body_joint(skeleton, model, "hip", side)] = -hip
        angles[body_joint(skeleton, model, "knee", side)] = knee
        angles[body_joint(skeleton, model, "ankle", side)] = hip - knee
    for side, _ in SIDES:
        other = hips["right" if side == "left" else "left"]
        angles[body_joint(skeleton, model, "shoulder", side)] = -ARM_SWING * other
        elbow = body_joint(skeleton, model, "elbow", side)
        rest_flex = _bend(skeleton.rest_heads_world[[body_joint(skeleton, model, "shoulder", side), elbow,
                                                     body_joint(skeleton, model, "wrist", side)]])
        angles[elbow] = np.full(frame_count, rest_flex - np.radians(ELBOW_FLEX_DEGREES))

    rest_rotations = skeleton.rest_frames_world[:, :3, :3]
    rotations = _identity(frame_count, skeleton.joint_count)
    for joint, angle in angles.items():
        axis = rest_rotations[joint].T @ np.array([1.0, 0.0, 0.0])
        rotations[:, joint] = axis_angle_to_quat(angle[:, None] * axis)
    for side, sign in SIDES:
        shoulder = body_joint(skeleton, model, "shoulder", side)
        arm = skeleton.rest_heads_world[body_joint(skeleton, model, "elbow", side)] - skeleton.rest_heads_world[shoulder]
        # Turning about world +Y lowers the left arm (+X side) and raises the right one, hence the sign.
        lower = sign * (np.arctan2(sign * arm[0], -arm[2]) - np.radians(ARM_HANG_DEGREES))
        hang = rest_rotations[shoulder].T @ quat_to_matrix(axis_angle_to_quat(np.array([0.0, lower, 0.0])))
        # The hang is applied in the world before the swing; both are expressed in the bone's rest frame.
        rotations[:, shoulder] = matrix_to_quat(quat_to_matrix(rotations[:, shoulder]) @ (hang @ rest_rotations[shoulder]))
    spine = body_joint(skeleton, model, "spine")
    twist = np.radians(TORSO_TWIST_DEGREES) * np.sin(2.0 * np.pi * cycle)
    rotations[:, spine] = axis_angle_to_quat(twist[:, None] * (rest_rotations[spine].T @ np.array([0.0, 0.0, 1.0])))

    fixed_root = np.repeat(skeleton.rest_heads_world[:1], frame_count, axis=0)
    relative = rig.landmarks(rig.pose(rotations, fixed_root))[:, feet]  # (T, 4, 3), root held still
    lift = relative[:, :, 2] - standing
    root = fixed_root.copy()
    root[:, 2] -= lift.min(axis=1)
    foot_y = 0.5 * (relative[:, 0::2, 1] + relative[:, 1::2, 1])  # (T, 2): left, right foot
    planted = np.argmin(0.5 * (lift[:, 0::2] + lift[:, 1::2]), axis=1)  # the lower foot carries the body
    steps = foot_y[1:, :] - foot_y[:-1, :]
    root[1:, 1] -= np.cumsum(steps[np.arange(frame_count - 1), planted[1:]])

    world = relative + (root - fixed_root)[:, None, :]
    height = world[:, :, 2] - standing
    horizontal_speed = np.linalg.norm(np.gradient(world[:, :, :2], 1.0 / fps, axis=0), axis=-1)
    low = np.clip(1.0 - height / CONTACT_HEIGHT, 0.0, 1.0)
    still = np.clip(1.0 - horizontal_speed / CONTACT_SPEED, 0.0, 1.0)
    contacts = low * still
    return clip_from_pose(rig, rotations, root, fps, contacts)


def _bend(points: np.ndarray) -> float:
    """Angle (radians) between the segments points[0]->points[1] and points[1]->points[2]."""
    first, second = points[1] - points[0], points[2] - points[1]
    return float(np.arccos(np.clip(first @ second / np.linalg.norm(first) / np.linalg.norm(second), -1.0, 1.0)))


def _identity(frames: int, joints: int) -> np.ndarray:
    rotations = np.zeros((frames, joints, 4))
    rotations[..., 0] = 1.0
    return rotations

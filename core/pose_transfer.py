"""Pose a body so its landmarks point where observed 3D landmarks point.

Whole-sequence fitting needs a good first guess, and benchmarks need a body that
performs recorded mocap. Both reduce to one problem: given target landmark
positions (T, L, 3) in the world (LANDMARK_NAMES order, NaN = not observed),
turn the body's bones so that its own landmarks point the same way. Lengths are
the body's own: only directions are transferred, so targets from another
skeleton (a BVH, BlazePose's average-sized world landmarks) work.

Order: the hips frame turns the root; the shoulders frame turns the spine
(spread over its bones); the ears/nose frame turns neck and head; then each limb
bone is turned so its landmark segment matches, upper limbs and thighs also
matching the plane of the limb so elbows and knees bend as hinges. The root is
finally moved so the pelvis landmark lands on the target pelvis.
"""
from __future__ import annotations

import numpy as np

from .kinematics import forward_kinematics, regress_landmarks, skinning_matrices
from .landmarks import LANDMARK_NAMES
from .rest_pose import body_joint, chain
from .rig import RiggedBody, expand_rotations
from .rotations import (
    axis_angle_to_quat, matrix_to_quat, quat_multiply, quat_to_axis_angle, quat_to_matrix, rotation_between,
)

_L = {name: i for i, name in enumerate(LANDMARK_NAMES)}
# (bone part, landmark from, landmark to, landmark of the next segment end or None)
_LIMBS = (
    ("shoulder", "shoulder", "elbow", "wrist"),
    ("elbow", "elbow", "wrist", None),
    ("hip", "hip", "knee", "ankle"),
    ("knee", "knee", "ankle", None),
    ("ankle", "heel", "toe", None),
)


def pose_from_landmarks(
    rig: RiggedBody, landmarks_world: np.ndarray, passes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (T, J, 4) wxyz and root_translation (T, 3) making the rig's landmarks follow the targets.

    landmarks_world (T, 23, 3) metres in LANDMARK_NAMES order; NaN rows are
    unobserved and leave the bones they would drive at their rest rotation (or
    at what the parent implies). `passes` repeats the limb alignment, since each
    limb landmark is blended from neighbouring bones.
    """
    targets = np.asarray(landmarks_world, dtype=np.float64)
    if targets.ndim != 3 or targets.shape[1:] != (len(LANDMARK_NAMES), 3):
        raise ValueError(f"landmarks_world must be (T, {len(LANDMARK_NAMES)}, 3), got {targets.shape}")
    chains = driven_chains(rig)
    small, kept = rig.reduced([j for joints in chains.values() for j in joints])
    position = {int(j): k for k, j in enumerate(kept)}
    chains = {name: [position[j] for j in joints] for name, joints in chains.items()}
    frames = len(targets)
    rotations = np.zeros((frames, len(kept), 4))
    rotations[..., 0] = 1.0
    root = np.repeat(small.skeleton.rest_frames_world[None, 0, :3, 3], frames, axis=0)
    state = _Posed(small, rotations, root)

    state.turn([0], _frame_rotation(state.landmarks(), targets, ("left_hip", "right_hip"), ("pelvis", "neck")))
    state.turn(chains["spine"], _frame_rotation(
        state.landmarks(), targets, ("left_shoulder", "right_shoulder"), ("pelvis", "neck")))
    state.turn(chains["head"], _frame_rotation(
        state.landmarks(), targets, ("left_ear", "right_ear"), ("neck", "nose")))
    for _ in range(passes):
        for side in ("left", "right"):
            for part, start, end, after in _LIMBS:
                names = [f"{side}_{n}" for n in (start, end) + ((after,) if after else ())]
                state.turn(chains[f"{side}_{part}"], _segment_rotation(state.landmarks(), targets, names))
    pelvis = _L["pelvis"]
    shift = targets[:, pelvis] - state.landmarks()[:, pelvis]
    root = state.root + np.where(np.isfinite(shift), shift, 0.0)
    return expand_rotations(state.rotations, kept, len(rig.skeleton.parents)), root


def driven_chains(rig: RiggedBody) -> dict[str, list[int]]:
    """The joints that follow observed landmarks, by name: root, spine, head and each limb part per side.

    The rest of the skeleton (fingers, toes, face, twist bones) stays at rest
    relative to these; the whole-sequence fit turns the same joints.
    """
    skeleton = rig.skeleton

    def joint(part: str, side: str = "left") -> int:
        return body_joint(skeleton, rig.body_model, part, side)

    chains = {
        "root": [0],
        "spine": chain(skeleton, joint("spine_base"), joint("chest")),
        "head": chain(skeleton, joint("neck"), joint("head")),
    }
    for side in ("left", "right"):
        for part, *_ in _LIMBS:
            chains[f"{side}_{part}"] = [joint(part, side)]
    return chains


class _Posed:
    """A pose being edited: local rotations, root position, and world frames kept in step."""

    def __init__(self, rig: RiggedBody, rotations: np.ndarray, root: np.ndarray) -> None:
        self.rig = rig
        self.rotations = rotations
        self.root = root
        self._update()

    def _update(self) -> None:
        s = self.rig.skeleton
        self.frames = forward_kinematics(s.rest_frames_world, s.parents, self.rotations, self.root)

    def landmarks(self) -> np.ndarray:
        deformation = skinning_matrices(self.frames, self.rig.skeleton.rest_frames_world)
        return regress_landmarks(deformation, self.rig.landmark_bone_points)

    def turn(self, joints: list[int], world_turn: np.ndarray | None) -> None:
        """Turn the chain `joints` by world rotations (T, 3, 3) about their heads, spread evenly.

        Each of the n bones takes the n-th root of the turn, applied in the world
        frame, so the last bone ends up turned by the whole rotation.
        """
        if world_turn is None:
            return
        step = axis_angle_to_quat(quat_to_axis_angle(matrix_to_quat(world_turn)) / len(joints))
        for j in joints:
            world = self.frames[:, j, :3, :3]
            local = np.einsum("tba,tbc,tcd->tad", world, quat_to_matrix(step), world)  # W^T A W
            self.rotations[:, j] = quat_multiply(self.rotations[:, j], matrix_to_quat(local))
            self._update()


def _orthonormal(primary: np.ndarray, secondary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, 3, 3) with columns (primary, secondary made orthogonal, their cross), and a validity mask."""
    e1 = primary / np.linalg.norm(primary, axis=-1, keepdims=True)
    e2 = secondary - np.sum(secondary * e1, axis=-1, keepdims=True) * e1
    norm = np.linalg.norm(e2, axis=-1, keepdims=True)
    valid = np.isfinite(e1).all(-1) & np.isfinite(norm[..., 0]) & (norm[..., 0] > 1e-6)
    e2 = e2 / np.where(norm > 1e-12, norm, 1.0)
    frames = np.stack((e1, e2, np.cross(e1, e2)), axis=-1)
    return np.where(valid[:, None, None], frames, np.eye(3)), valid


def _frame_rotation(current: np.ndarray, targets: np.ndarray, across: tuple[str, str],
                    along: tuple[str, str]) -> np.ndarray:
    """World turns (T, 3, 3) taking the current (across, along) frame onto the target's; identity where unknown."""
    def frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = points[:, _L[across[0]]] - points[:, _L[across[1]]]
        b = points[:, _L[along[1]]] - points[:, _L[along[0]]]
        return _orthonormal(a, b)

    have, _ = frame(current)
    want, valid = frame(targets)
    turn = want @ np.swapaxes(have, -1, -2)
    return np.where(valid[:, None, None], turn, np.eye(3))


def _segment_rotation(current: np.ndarray, targets: np.ndarray, names: list[str]) -> np.ndarray:
    """World turns (T, 3, 3) aligning the segment names[0]->names[1], and the limb plane when names[2] is given.

    Falls back to the smallest turn of the segment where the limb is straight
    (no plane), and to identity where the targets are unknown.
    """
    idx = [_L[n] for n in names]
    have_dir = current[:, idx[1]] - current[:, idx[0]]
    want_dir = targets[:, idx[1]] - targets[:, idx[0]]
    swing = _smallest_turn(have_dir, want_dir)
    if len(idx) == 3:
        have_lower = current[:, idx[2]] - current[:, idx[1]]
        want_lower = targets[:, idx[2]] - targets[:, idx[1]]
        have, ok_have = _orthonormal(have_dir, np.cross(have_dir, have_lower))
        want, ok_want = _orthonormal(want_dir, np.cross(want_dir, want_lower))
        bent = ok_have & ok_want & (_bend_sine(have_dir, have_lower) > 0.2) & (_bend_sine(want_dir, want_lower) > 0.2)
        swing = np.where(bent[:, None, None], want @ np.swapaxes(have, -1, -2), swing)
    return swing


def _bend_sine(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Sine of the bend between two limb segments (T,), 0 where unknown; the plane is unreliable when small."""
    denom = np.linalg.norm(upper, axis=-1) * np.linalg.norm(lower, axis=-1)
    sine = np.linalg.norm(np.cross(upper, lower), axis=-1) / np.where(denom > 1e-12, denom, np.inf)
    return np.nan_to_num(sine)


def _smallest_turn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations (T, 3, 3) taking direction a onto b; identity where either is unknown or zero."""
    valid = np.isfinite(a).all(-1) & np.isfinite(b).all(-1) \
        & (np.linalg.norm(np.nan_to_num(a), axis=-1) > 1e-9) & (np.linalg.norm(np.nan_to_num(b), axis=-1) > 1e-9)
    safe_a = np.where(valid[:, None], a, [0.0, 0.0, 1.0])
    safe_b = np.where(valid[:, None], b, [0.0, 0.0, 1.0])
    return np.where(valid[:, None, None], rotation_between(safe_a, safe_b), np.eye(3))

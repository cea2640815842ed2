"""A rigged body for one shape: skeleton, rest mesh, skin weights and landmark regressors.

Every body model backend (Anny, SMPL, SMPL-X) reduces to this, so posing,
skinning, Blender import and export never depend on which model made it. It is
also what the worker writes to the cache for Blender to build a mesh from, so
Blender itself never has to import torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import kinematics
from .errors import FileFormatError
from .npz_schema import Field, check_fields, load_npz, save_npz_atomic
from .skeleton import SKELETON_FIELDS, Skeleton

RIG_FORMAT = "avatar-capture/rig"
RIG_VERSION = 1

_RIG_FIELDS = SKELETON_FIELDS + (
    Field("body_model", "U", ()),
    Field("shape_names", "U", ("S",)),
    Field("shape_values", "f", ("S",)),
    Field("vertices_rest", "f", ("V", 3)),
    Field("faces", "i", ("F", 3)),
    Field("skin_indices", "i", ("V", "K")),
    Field("skin_weights", "f", ("V", "K")),
    Field("landmark_names", "U", ("L",)),
    Field("landmark_bone_points", "f", ("L", "J", 4)),
)


@dataclass(frozen=True)
class RiggedBody:
    """A skinned body mesh in its rest pose, world frame (metres, Z up, -Y forward).

    vertices_rest (V, 3); faces (F, 3) triangles; skin_indices / skin_weights
    (V, K) with rows summing to 1; landmark_bone_points (L, J, 4) as described in
    kinematics.regress_landmarks; shape_names / shape_values are the model's own
    shape parameters (Anny phenotypes, SMPL betas).
    """

    body_model: str
    shape_names: tuple[str, ...]
    shape_values: np.ndarray
    skeleton: Skeleton
    vertices_rest: np.ndarray
    faces: np.ndarray
    skin_indices: np.ndarray
    skin_weights: np.ndarray
    landmark_names: tuple[str, ...]
    landmark_bone_points: np.ndarray

    def pose(self, rotations: np.ndarray, root_translation: np.ndarray) -> np.ndarray:
        """Posed bone frames (T, J, 4, 4) for local rotations (T, J, 4) and root positions (T, 3)."""
        s = self.skeleton
        return kinematics.forward_kinematics(s.rest_frames_world, s.parents, rotations, root_translation)

    def deformation(self, frames_world: np.ndarray) -> np.ndarray:
        """Skinning matrices (T, J, 4, 4) for posed frames."""
        return kinematics.skinning_matrices(frames_world, self.skeleton.rest_frames_world)

    def skin(self, frames_world: np.ndarray) -> np.ndarray:
        """Posed vertices (T, V, 3) in metres."""
        return kinematics.skin_points(
            self.vertices_rest, self.skin_indices, self.skin_weights, self.deformation(frames_world)
        )

    def landmarks(self, frames_world: np.ndarray) -> np.ndarray:
        """Posed landmarks (T, L, 3) in metres, in landmark_names order."""
        return kinematics.regress_landmarks(self.deformation(frames_world), self.landmark_bone_points)

    def reduced(self, keep: list[int]) -> tuple["RiggedBody", np.ndarray]:
        """This rig with only the joints `keep` (the root always kept), and their indices (K,) in this rig.

        A dropped joint stays at its rest pose relative to its nearest kept
        ancestor, so its deformation equals that ancestor's: skin weights and
        landmark bone points fold onto the ancestor and the reduced rig skins and
        regresses landmarks exactly like the full one posed with identity
        rotations on the dropped joints. Fitting turns few joints, and a small
        skeleton makes each evaluation cheap.
        """
        s = self.skeleton
        kept = np.array(sorted(set(int(j) for j in keep) | {0}))
        position = np.full(len(s.parents), -1)
        position[kept] = np.arange(len(kept))
        owner = np.arange(len(s.parents))  # nearest kept ancestor (or self)
        for j in range(1, len(s.parents)):
            owner[j] = j if position[j] >= 0 else owner[s.parents[j]]
        parents = np.array([-1] + [position[owner[s.parents[j]]] for j in kept[1:]])
        skeleton = Skeleton(
            joint_names=tuple(s.joint_names[j] for j in kept), parents=parents,
            rest_frames_world=s.rest_frames_world[kept], bone_lengths=s.bone_lengths[kept],
        )
        bone_points = np.zeros((len(self.landmark_names), len(kept), 4))
        np.add.at(bone_points, (slice(None), position[owner]), self.landmark_bone_points)
        rig = RiggedBody(
            body_model=self.body_model, shape_names=self.shape_names, shape_values=self.shape_values,
            skeleton=skeleton, vertices_rest=self.vertices_rest, faces=self.faces,
            skin_indices=position[owner][self.skin_indices], skin_weights=self.skin_weights,
            landmark_names=self.landmark_names, landmark_bone_points=bone_points,
        )
        return rig, kept

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "format": np.array(RIG_FORMAT),
            "version": np.array(RIG_VERSION),
            **self.skeleton.to_arrays(),
            "body_model": np.array(self.body_model),
            "shape_names": np.array(self.shape_names, dtype=str),
            "shape_values": np.asarray(self.shape_values, dtype=np.float64),
            "vertices_rest": np.asarray(self.vertices_rest, dtype=np.float64),
            "faces": np.asarray(self.faces, dtype=np.int32),
            "skin_indices": np.asarray(self.skin_indices, dtype=np.int32),
            "skin_weights": np.asarray(self.skin_weights, dtype=np.float32),
            "landmark_names": np.array(self.landmark_names, dtype=str),
            "landmark_bone_points": np.asarray(self.landmark_bone_points, dtype=np.float64),
        }


def expand_rotations(rotations: np.ndarray, kept: np.ndarray, joint_count: int) -> np.ndarray:
    """Rotations (T, joint_count, 4) of the full rig from a reduced rig's (T, K, 4); dropped joints at rest."""
    full = np.zeros(rotations.shape[:-2] + (joint_count, 4))
    full[..., 0] = 1.0
    full[..., kept, :] = rotations
    return full


def save_rig(rig: RiggedBody, path: str | Path) -> Path:
    """Write a rigged body file atomically."""
    return save_npz_atomic(path, rig.to_arrays())


def load_rig(path: str | Path) -> RiggedBody:
    """Read and validate a rigged body file; FileFormatError names the file and field on failure."""
    arrays = load_npz(path, RIG_FORMAT, RIG_VERSION)
    dims = check_fields(path, arrays, _RIG_FIELDS)
    try:
        skeleton = Skeleton.from_arrays(arrays)
    except ValueError as exc:
        raise FileFormatError(path, str(exc), "parents") from None
    for name, limit in (("skin_indices", dims["J"]), ("faces", dims["V"])):
        values = arrays[name]
        if values.size and (values.min() < 0 or values.max() >= limit):
            raise FileFormatError(path, f"indices outside 0..{limit - 1}", name)
    return RiggedBody(
        body_model=str(arrays["body_model"]),
        shape_names=tuple(str(n) for n in arrays["shape_names"]),
        shape_values=arrays["shape_values"].astype(np.float64),
        skeleton=skeleton,
        vertices_rest=arrays["vertices_rest"].astype(np.float64),
        faces=arrays["faces"].astype(np.int64),
        skin_indices=arrays["skin_indices"].astype(np.int64),
        skin_weights=arrays["skin_weights"].astype(np.float64),
        landmark_names=tuple(str(n) for n in arrays["landmark_names"]),
        landmark_bone_points=arrays["landmark_bone_points"].astype(np.float64),
    )

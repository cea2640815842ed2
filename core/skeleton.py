"""The skeleton description shared by motion clips, rigged bodies and armatures."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kinematics import check_parents
from .npz_schema import Field

SKELETON_FIELDS = (
    Field("joint_names", "U", ("J",)),
    Field("parents", "i", ("J",)),
    Field("rest_frames_world", "f", ("J", 4, 4)),
    Field("bone_lengths", "f", ("J",)),
)


@dataclass(frozen=True)
class Skeleton:
    """Bones in their rest pose, in the world frame (metres, Z up, -Y forward).

    joint_names (J,) are also the Blender bone names; parents (J,) index earlier
    joints (-1 for the root); rest_frames_world (J, 4, 4) have Y from head to tail
    and the head as translation; bone_lengths (J,) place the tails (for display
    and export only: the motion does not depend on them).
    """

    joint_names: tuple[str, ...]
    parents: np.ndarray
    rest_frames_world: np.ndarray
    bone_lengths: np.ndarray

    def __post_init__(self) -> None:
        check_parents(self.parents)
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError("joint names must be unique")

    @property
    def joint_count(self) -> int:
        return len(self.joint_names)

    @property
    def rest_heads_world(self) -> np.ndarray:
        """Rest head positions (J, 3), metres."""
        return self.rest_frames_world[:, :3, 3]

    @property
    def rest_tails_world(self) -> np.ndarray:
        """Rest tail positions (J, 3), metres."""
        return self.rest_heads_world + self.rest_frames_world[:, :3, 1] * self.bone_lengths[:, None]

    def index(self, name: str) -> int:
        """Index of a joint by name; KeyError naming the joint when absent."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"no joint named '{name}'") from None

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "joint_names": np.array(self.joint_names, dtype=str),
            "parents": np.asarray(self.parents, dtype=np.int32),
            "rest_frames_world": np.asarray(self.rest_frames_world, dtype=np.float64),
            "bone_lengths": np.asarray(self.bone_lengths, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Skeleton":
        return cls(
            joint_names=tuple(str(n) for n in arrays["joint_names"]),
            parents=np.asarray(arrays["parents"], dtype=np.int64),
            rest_frames_world=np.asarray(arrays["rest_frames_world"], dtype=np.float64),
            bone_lengths=np.asarray(arrays["bone_lengths"], dtype=np.float64),
        )

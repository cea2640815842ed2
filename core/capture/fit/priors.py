"""Pose and motion priors of the fit, pluggable.

A prior is any callable taking the current FitState and returning a scalar
torch loss; solve.fit_sequence sums the ones it is given with their weights.
The defaults are hand-made (anatomical joint limits, a pull towards rest for
what the video cannot see, smooth motion); a learned motion prior (HuMoR's
CVAE, a VPoser) would be one more callable in the list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from . import terms


@dataclass
class FitState:
    """The pose being fitted, as tensors: local rotations (T, J, 3, 3) of the reduced rig,
    landmarks_world (T, L, 3), root_translation (T, 3) metres, fps."""

    local_rotations: object
    landmarks_world: object
    root_translation: object
    fps: float


class Prior(Protocol):
    """A prior: the current FitState in, a scalar torch loss out."""

    def __call__(self, state: FitState): ...


# Limits in radians: hinge joints flex about the bone's +X axis (checked for Anny: +X bends the knee
# back and the elbow forward); ball joints limit twist about the bone's Y axis and swing away from it.
_HINGES = {"knee": (-0.1, 2.6), "elbow": (-0.1, 2.7)}
_TWIST = {"knee": 0.3, "elbow": 1.2, "hip": 0.8, "shoulder": 1.2, "ankle": 0.4}
_SWING = {"ankle": 0.9, "hip": 2.2, "shoulder": 2.6}
_BEND = {"spine": 0.35, "head": 0.6}  # per bone of the chain


class JointLimits:
    """Soft anatomical limits on the reduced rig's joints, named through rest_pose.BODY_JOINTS."""

    def __init__(self, chains: dict[str, list[int]]) -> None:
        import torch

        def rows(table: dict, parts_to_joints: dict[str, list[int]]):
            index, low, high = [], [], []
            for part, limit in table.items():
                for j in parts_to_joints.get(part, []):
                    lo, hi = limit if isinstance(limit, tuple) else (-limit, limit)
                    index.append(j)
                    low.append(lo)
                    high.append(hi)
            return torch.tensor(index, dtype=torch.long), torch.tensor(low), torch.tensor(high)

        parts: dict[str, list[int]] = {"spine": chains["spine"], "head": chains["head"]}
        for side in ("left", "right"):
            for part in ("shoulder", "elbow", "hip", "knee", "ankle"):
                parts.setdefault(part, []).extend(chains[f"{side}_{part}"])
        self.hinge = rows(_HINGES, parts)
        self.twist = rows(_TWIST, parts)
        self.swing = rows(_SWING, parts)
        self.bend = rows(_BEND, parts)

    def __call__(self, state: FitState):
        import torch

        R = state.local_rotations
        loss = R.sum() * 0.0
        index, low, high = self.hinge
        if len(index):
            H = R[:, index]
            flex = torch.atan2(H[..., 2, 1], H[..., 1, 1])
            loss = loss + _outside(flex, low, high) + ((H[..., :, 0] - _unit(0, H)) ** 2).sum(-1).mean()
        index, low, high = self.twist
        if len(index):
            T = R[:, index]
            twist = torch.atan2(T[..., 0, 2] - T[..., 2, 0], T[..., 0, 0] + T[..., 2, 2])
            loss = loss + _outside(twist, low, high)
        index, _, high = self.swing
        if len(index):
            swing = _acos(R[:, index][..., 1, 1])
            loss = loss + _outside(swing, -high, high)
        index, _, high = self.bend
        if len(index):
            trace = R[:, index].diagonal(dim1=-2, dim2=-1).sum(-1)
            angle = _acos((trace - 1.0) / 2.0)
            loss = loss + _outside(angle, -high, high)
        return loss


class RestPull:
    """A weak pull of every non-root joint towards its rest rotation: what the video cannot tell stays natural."""

    def __call__(self, state: FitState):
        trace = state.local_rotations[:, 1:].diagonal(dim1=-2, dim2=-1).sum(-1)
        return (3.0 - trace).mean()


class SmoothMotion:
    """Constant-velocity motion prior: small landmark and root accelerations, in metres per second squared."""

    def __call__(self, state: FitState):
        fps2 = state.fps * state.fps
        return fps2 * fps2 * (terms.acceleration(state.landmarks_world)
                              + terms.acceleration(state.root_translation)) * 1e-4


def default_priors(chains: dict[str, list[int]]) -> list[tuple[float, Prior]]:
    """(weight, prior) pairs used when the caller gives none; chains name the reduced rig's joints."""
    return [(1.0, JointLimits(chains)), (0.02, RestPull()), (30.0, SmoothMotion())]


def _acos(x):
    """acos with its infinite slope at +-1 kept out of reach."""
    return (x.clamp(-1.0 + 1e-6, 1.0 - 1e-6)).acos()


def _outside(angle, low, high):
    """Mean squared amount by which angles (T, N) leave [low, high] (N,)."""
    return ((angle - high).clamp(min=0.0) ** 2 + (low - angle).clamp(min=0.0) ** 2).mean()


def _unit(axis: int, like):
    import torch

    e = torch.zeros(3, dtype=like.dtype)
    e[axis] = 1.0
    return e


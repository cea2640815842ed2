"""The whole-sequence fit: every frame of the body, the camera and the ground at once.

Stages, as in HuMoR's test-time optimisation:
  place   root orientation and world path, pose held at the first guess;
  pose    every fitted joint, with joint limits and a pull to rest;
  ground  foot contacts (detected on the posed result) held still and on Z = 0,
          no foot below the ground, and the camera's tilt, height, focal length
          and, for a moving camera, its translation scale refined with the body.
Every stage keeps the robust (Geman-McClure) reprojection of the 2D landmarks,
weighted by the detector's visibility (lost frames weigh nothing and are bridged
by the motion prior), and the detector's 3D bone directions. Gravity is -Z: the
world's up axis is fixed and the camera turns instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...landmarks import CONTACT_NAMES, LANDMARK_NAMES
from ...pose_transfer import driven_chains
from ...rig import RiggedBody, expand_rotations
from ...rotations import matrix_to_quat, quat_continuous, quat_to_matrix
from . import terms
from .contacts import detect_contacts
from .initialise import CameraPath, initial_fit
from .observations import Observations
from .priors import FitState, Prior, default_priors
from .torch_body import TorchBody, so3_exp

log = logging.getLogger(__name__)

_FOOT = [LANDMARK_NAMES.index(n) for n in CONTACT_NAMES]
# Iterations of the place, pose and ground stages per quality preset.
ITERATIONS = {"fast": (20, 40, 40), "balanced": (30, 70, 70), "best": (60, 150, 150)}
LEARNING_RATE = 0.03  # radians or metres per step at the start of a stage
Report = Callable[[str, float, str], None]


@dataclass(frozen=True)
class FitWeights:
    """Weights of the loss terms. Reprojection residuals are measured in hundredths of the
    subject's height in the image, metres elsewhere."""

    reprojection: float = 1.0
    reprojection_sigma: float = 5.0
    directions: float = 20.0
    contact_slide: float = 3e5
    contact_height: float = 3e3
    penetration: float = 3e4
    focal: float = 20.0
    camera_drift: float = 10.0


@dataclass(frozen=True)
class FitResult:
    """The fitted sequence on the full rig.

    rotations (T, J, 4) wxyz local; root_translation (T, 3) world metres; contacts
    (T, 4) 0/1 in CONTACT_NAMES order; K (3, 3); world_to_cam (T, 4, 4) OpenCV;
    confidence (T,) 0..1; reprojection_px (T,) mean reprojection error in pixels.
    """

    rotations: np.ndarray
    root_translation: np.ndarray
    contacts: np.ndarray
    K: np.ndarray
    world_to_cam: np.ndarray
    confidence: np.ndarray
    reprojection_px: np.ndarray


def fit_sequence(
    rig: RiggedBody, obs: Observations, fps: float, K: np.ndarray, path: CameraPath | None = None,
    quality: str = "balanced", priors: list[tuple[float, Prior]] | None = None,
    weights: FitWeights = FitWeights(), report: Report | None = None,
) -> FitResult:
    """Fit the rig to the observations of every frame at once; see the module docstring for the stages."""
    import torch

    path = path or CameraPath.static(obs.frame_count)
    chains = driven_chains(rig)
    small, kept = rig.reduced([j for joints in chains.values() for j in joints])
    position = {int(j): k for k, j in enumerate(kept)}
    small_chains = {name: [position[j] for j in joints] for name, joints in chains.items()}
    # The tensors are small (T x 20 joints): one thread avoids the cost of waking a pool for every
    # operation, which with a busy second core made the fit up to ten times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        problem = _Problem(small, obs, fps, K, path, weights,
                           priors if priors is not None else default_priors(small_chains))
        stages = ITERATIONS[quality]
        total = sum(stages)
        done = 0
        for name, iterations in zip(("place", "pose", "ground"), stages):
            problem.run_stage(name, iterations, lambda i: report and report(
                "fit", (done + i) / total, f"{name} {i}/{iterations}"))
            done += iterations
        with torch.no_grad():
            return problem.result(rig, kept)
    finally:
        torch.set_num_threads(threads)


class _Problem:
    """Parameters, observations and losses of one fit (torch tensors)."""

    def __init__(self, rig: RiggedBody, obs: Observations, fps: float, K: np.ndarray, path: CameraPath,
                 weights: FitWeights, priors: list[tuple[float, Prior]]) -> None:
        import torch

        t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        init = initial_fit(rig, obs, K, path)
        self.fps, self.weights, self.priors = fps, weights, priors
        self.body = TorchBody(rig)
        frames, joints = init.rotations.shape[:2]
        self.init_rotations = t(quat_to_matrix(_smoothed_quats(init.rotations)))
        self.delta_root = torch.zeros(frames, 1, 3, requires_grad=True)
        self.delta_body = torch.zeros(frames, joints - 1, 3, requires_grad=True)
        self.root = t(init.root_translation).requires_grad_(True)
        self.camera_turn = torch.zeros(3, requires_grad=True)
        self.camera_shift = torch.zeros(3, requires_grad=True)
        self.log_focal = torch.zeros((), requires_grad=True)
        self.log_scale = torch.tensor(float(np.log(max(init.translation_scale, 1e-6))), requires_grad=True)
        self.moving = bool(np.any(path.translations))
        self.first_rotation = t(init.first_world_to_cam[:3, :3])
        self.first_translation = t(init.first_world_to_cam[:3, 3])
        self.path_rotations, self.path_translations = t(path.rotations), t(path.translations)
        self.focal0, self.principal = float(K[0, 0]), t(K[:2, 2])
        seen = np.isfinite(obs.pixels).all(-1) & np.isfinite(obs.weights)
        self.pixel_weights = t(np.where(seen, obs.weights, 0.0))
        self.pixels = t(np.where(seen[..., None], obs.pixels, 0.0))
        point_seen = np.isfinite(obs.camera_points).all(-1)
        self.point_weights = t(np.where(point_seen, np.nan_to_num(obs.weights), 0.0))
        self.camera_points = t(np.where(point_seen[..., None], obs.camera_points, 0.0))
        self.pixel_unit = 0.01 * _subject_height_px(obs)
        self.contacts = torch.zeros(frames, len(_FOOT))
        self.foot_heights = t(foot_rest_heights(rig))

    def cameras(self):
        """world_to_cam rotations (T, 3, 3), translations (T, 3) and the focal length."""
        rotation = so3_exp(self.camera_turn) @ self.first_rotation
        translation = self.first_translation + self.camera_shift
        rotations = self.path_rotations @ rotation
        translations = self.path_rotations @ translation
        if self.moving:
            translations = translations + self.log_scale.exp() * self.path_translations
        return rotations, translations, self.focal0 * self.log_focal.exp()

    def evaluate(self):
        import torch

        delta = _low_pass(torch.cat((self.delta_root, self.delta_body), 1))
        local = self.init_rotations @ so3_exp(delta)
        landmarks = self.body.landmarks(local, _low_pass(self.root))
        return local, landmarks

    def loss(self, stage: str):
        w = self.weights
        local, landmarks = self.evaluate()
        rotations, translations, focal = self.cameras()
        pixels, _ = terms.project(landmarks, rotations, translations, focal, self.principal)
        unit = self.pixel_unit
        total = w.reprojection * terms.reprojection(
            pixels / unit, self.pixels / unit, self.pixel_weights, w.reprojection_sigma)
        total = total + w.directions * terms.bone_directions(
            landmarks, rotations, self.camera_points, self.point_weights)
        state = FitState(local, landmarks, _low_pass(self.root), self.fps)
        for weight, prior in self.priors:
            total = total + weight * prior(state)
        if stage == "ground":
            feet = landmarks[:, _FOOT]
            total = total + w.contact_slide * terms.contact_slide(feet, self.contacts) \
                + w.contact_height * terms.contact_height(feet, self.contacts, self.foot_heights) \
                + w.penetration * terms.penetration(feet, self.foot_heights) \
                + w.focal * self.log_focal ** 2 \
                + w.camera_drift * (self.camera_shift[:2] ** 2).sum()
        return total

    def run_stage(self, stage: str, iterations: int, tick: Callable[[int], object]) -> None:

        rate = LEARNING_RATE
        groups = [{"params": [self.root], "lr": rate}, {"params": [self.delta_root], "lr": rate}]
        if stage != "place":
            groups.append({"params": [self.delta_body], "lr": rate})
        if stage == "ground":
            self.contacts = self._detect_contacts()
            groups.append({"params": [self.camera_turn, self.camera_shift, self.log_focal], "lr": rate / 5})
            if self.moving:
                groups.append({"params": [self.log_scale], "lr": rate / 2})
        optimiser = _Adam(groups)
        for i in range(iterations):
            optimiser.decay = 1.0 - 0.9 * i / iterations  # linear decay to a tenth: settle into the minimum
            optimiser.zero_grad()
            loss = self.loss(stage)
            loss.backward()
            optimiser.step()
            if stage == "ground" and i == iterations // 2:
                self.contacts = self._detect_contacts()  # again, on the steadier feet
            if i % 10 == 0:
                tick(i)
        log.info("fit stage %s: loss %.4f after %d iterations", stage, float(loss.detach()), iterations)

    def _detect_contacts(self):
        import torch

        with torch.no_grad():
            _, landmarks = self.evaluate()
        contacts = detect_contacts(landmarks[:, _FOOT].numpy(), self.fps, self.foot_heights.numpy())
        return torch.tensor(contacts, dtype=torch.float32)

    def result(self, rig: RiggedBody, kept: np.ndarray) -> FitResult:
        local, landmarks = self.evaluate()
        rotations, translations, focal = self.cameras()
        pixels, _ = terms.project(landmarks, rotations, translations, focal, self.principal)
        error = (pixels - self.pixels).norm(dim=-1)
        weights = self.pixel_weights
        per_frame = ((weights * error).sum(1) / weights.sum(1).clamp(min=1e-6)).numpy().astype(np.float64)
        coverage = weights.mean(1).numpy().astype(np.float64)
        confidence = np.clip(coverage, 0.0, 1.0) * np.exp(-per_frame / (5.0 * self.pixel_unit))
        quats = quat_continuous(matrix_to_quat(local.numpy().astype(np.float64)))
        K = np.array([[float(focal), 0.0, float(self.principal[0])],
                      [0.0, float(focal), float(self.principal[1])], [0.0, 0.0, 1.0]])
        world_to_cam = np.zeros((len(quats), 4, 4))
        world_to_cam[:, :3, :3] = rotations.numpy()
        world_to_cam[:, :3, 3] = translations.numpy()
        world_to_cam[:, 3, 3] = 1.0
        return FitResult(
            rotations=expand_rotations(quats, kept, len(rig.skeleton.parents)),
            root_translation=_low_pass(self.root).numpy().astype(np.float64),
            contacts=detect_contacts(landmarks[:, _FOOT].numpy(), self.fps, self.foot_heights.numpy()),
            K=K, world_to_cam=world_to_cam, confidence=confidence, reprojection_px=per_frame,
        )


class _Adam:
    """Adam (Kingma & Ba) over parameter groups with their own learning rates.

    torch.optim.Adam would do, but constructing any torch optimiser imports
    torch._dynamo, which costs seconds per process: too much for a capture that
    should run faster than real time.
    """

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        import torch

        self.groups = groups
        self.betas, self.eps, self.steps, self.decay = betas, eps, 0, 1.0
        self.moments = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for g in groups for p in g["params"]}

    def zero_grad(self) -> None:
        for group in self.groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        import torch

        self.steps += 1
        b1, b2 = self.betas
        with torch.no_grad():
            for group in self.groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    m, v = self.moments[id(p)]
                    m.mul_(b1).add_(p.grad, alpha=1 - b1)
                    v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    m_hat = m / (1 - b1 ** self.steps)
                    v_hat = v / (1 - b2 ** self.steps)
                    p.sub_(self.decay * group["lr"] * m_hat / (v_hat.sqrt() + self.eps))


def _smoothed_quats(quats: np.ndarray) -> np.ndarray:
    """Quaternions (T, J, 4) averaged over time with _low_pass's kernel (signs made continuous first)."""
    import torch

    smooth = _low_pass(torch.tensor(quat_continuous(quats))).numpy()
    return smooth / np.linalg.norm(smooth, axis=-1, keepdims=True)


def _low_pass(values):
    """Values (T, ...) filtered over time with the binomial kernel [1, 4, 6, 4, 1] / 16 (edges repeated).

    The fit's per-frame parameters pass through this fixed filter: no
    frame-to-frame jitter survives it, and each parameter's gradient pools
    evidence from its neighbours, which speeds up convergence.
    """
    import torch

    if len(values) < 5:
        return values
    flat = values.reshape(len(values), -1).T[:, None, :]  # (C, 1, T)
    padded = torch.nn.functional.pad(flat, (2, 2), mode="replicate")
    kernel = torch.tensor([[[1.0, 4.0, 6.0, 4.0, 1.0]]], dtype=values.dtype) / 16.0
    return torch.nn.functional.conv1d(padded, kernel)[:, 0, :].T.reshape(values.shape)


def foot_rest_heights(rig: RiggedBody) -> np.ndarray:
    """Height (P,) in metres of each contact landmark above the sole, in the rest pose (feet flat)."""
    rest = rig.skeleton.rest_frames_world
    frames = rest[None]
    landmarks = rig.landmarks(frames)[0, _FOOT]
    return landmarks[:, 2] - rig.vertices_rest[:, 2].min()


def _subject_height_px(obs: Observations) -> float:
    """Median height in pixels of the subject's detected landmarks (at least 10 pixels)."""
    y = np.where(obs.weights > 0.3, obs.pixels[..., 1], np.nan)
    seen = np.isfinite(y).any(axis=1)
    heights = np.nanmax(y[seen], axis=1) - np.nanmin(y[seen], axis=1)
    return max(10.0, float(np.median(heights))) if len(heights) else 100.0

"""Anny, the default body model: its cache, its rest geometry for a shape, and its poses.

Anny (anny 0.6.2, rig "anny": 104 bones, 13,718 vertices) is used only to turn
a shape (six phenotypes in 0..1, default 0.5) into rest geometry; posing and
skinning are ours (core.kinematics), so a clip made on an Anny body needs
neither torch nor anny to be played back, imported or exported.

Rest frames. Anny's default rig orients each bone by a precomputed fit aimed at
the MakeHuman rig's tails, in the Blender convention (Y along the bone). We keep
those directions and rolls: each bone's Y is Anny's rest Y and its Z is as close
to Anny's rest Z as allowed (core.kinematics.frames_from_heads_tails). Only the
root differs: Anny leaves it world-aligned (its Y would point backwards), ours
points up with Z forward (-Y), like the hips bone of most rigs. The choice of
frames does not change the skinned mesh, since skinning uses G_j @ inv(Rest_j).

Tails (Anny's default rig has none): a bone ends at the head of a child on its
axis, else at the farthest vertex it dominates (toe and finger tips, the top of
the head), else at half its parent's length (see rig_build.bone_lengths).

Placement. Anny's rest mesh is centred near the pelvis; the whole body (mesh,
joints, landmarks) is shifted up so the lowest vertex of the rest pose lies on
Z = 0. X and Y are left as Anny has them (facing -Y, left side at +X).

Cache. Anny builds ~790 MB of data on first use (~2 minutes on 2 cores) of which only one
~51 MB ``build_compact_model_data_*.safetensors`` file is needed afterwards.
Every load goes through a private staging folder inside the cache folder, seeded
with the files already there; only new compact files are moved (renamed) into
the cache, and the staging folder is deleted, so the cache never holds a
half-written file or the large intermediates, even if the build is interrupted.
Intermediates found in the cache folder (left by anny itself) are deleted too.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import AvatarCaptureError
from ..kinematics import frames_from_heads_tails, local_rotations
from ..landmarks import LANDMARK_NAMES
from ..rig import RiggedBody
from ..settings import ComputeSettings
from ..skeleton import Skeleton
from . import rig_build
from .rig_build import Report

ANNY_SHAPE_NAMES = ("gender", "age", "muscle", "weight", "height", "proportions")
ANNY_SHAPE_DEFAULTS = np.full(len(ANNY_SHAPE_NAMES), 0.5)
ROOT_LENGTH = 0.1  # metres; the root bone points up from the pelvis

# Anny's COCO regressor names the big toes; our landmark set calls them toes.
_ANNY_KEYPOINT_FOR = {"left_toe": "left_big_toe", "right_toe": "right_big_toe"}
_MIDPOINTS = {"pelvis": ("left_hip", "right_hip"), "neck": ("left_shoulder", "right_shoulder")}

_COMPACT_PATTERN = "v*/build_compact_model_data_*.safetensors"
_STAGING_PREFIX = ".staging-"
_STALE_STAGING_SECONDS = 6 * 3600
_COLD_BUILD_SECONDS = 120.0  # measured first build on 2 cores; only used for the progress estimate

_PATH_WORDS = re.compile(r"\s+(?:at|from|to)\s+\S*[/\\][^\s,]*")

_loaded: dict[str, object] = {}


def shape_values(shape: dict[str, float] | None) -> np.ndarray:
    """Anny phenotypes (6,) in ANNY_SHAPE_NAMES order; unknown names or values outside 0..1 are errors."""
    return rig_build.shape_values("Anny", ANNY_SHAPE_NAMES, ANNY_SHAPE_DEFAULTS, shape, 0.0, 1.0)


def anny_cache_ready(settings: ComputeSettings) -> bool:
    """Whether the cache folder already holds Anny's compact model data (a warm start)."""
    return any(settings.anny_cache_path.glob(_COMPACT_PATTERN))


def ensure_anny_cache(settings: ComputeSettings, report: Report | None = None) -> dict:
    """Build Anny's cache if needed; returns {"cache_path", "built": bool, "seconds"}.

    Reports stage starts and ends; during a cold build the fraction is a time-based
    estimate (Anny gives no progress of its own) and anny's log lines are passed on
    as messages.
    """
    start = time.perf_counter()
    model, built = _load_model(settings.anny_cache_path, report or rig_build.no_report)
    _loaded[str(settings.anny_cache_path)] = model
    return {"cache_path": str(settings.anny_cache_path), "built": built,
            "seconds": round(time.perf_counter() - start, 3)}


def load_anny_model(settings: ComputeSettings, report: Report | None = None):
    """Anny's default model (anny.Anny()), built from the cache; loaded once per process and cache folder."""
    key = str(settings.anny_cache_path)
    if key not in _loaded:
        _loaded[key] = _load_model(settings.anny_cache_path, report or rig_build.no_report)[0]
    return _loaded[key]


def build_anny_rig(
    settings: ComputeSettings, shape: dict[str, float] | None = None, report: Report | None = None
) -> RiggedBody:
    """The rigged Anny body for a shape (phenotype name -> 0..1; missing ones are 0.5)."""
    values = shape_values(shape)
    rig_build.require("anny", "the Anny body model")
    import anny
    import torch

    model = load_anny_model(settings, report)
    with torch.no_grad():
        out = model(phenotype_kwargs=dict(zip(ANNY_SHAPE_NAMES, values.tolist())))
        regressor = anny.KeypointsRegressor.coco(model)
    vertices = out["rest_vertices"][0].double().numpy()
    anny_rest = out["rest_bone_poses"][0].double().numpy()
    offset = rig_build.ground_offset(vertices)
    vertices = vertices + offset
    parents = np.asarray(model.bone_parents, dtype=np.int64)
    skin_indices = model.vertex_bone_indices.numpy().astype(np.int64)
    skin_weights = model.vertex_bone_weights.double().numpy()
    dense_skin = rig_build.dense_weights(skin_indices, skin_weights, len(parents))

    heads = anny_rest[:, :3, 3] + offset
    directions = anny_rest[:, :3, 1].copy()
    z_hints = anny_rest[:, :3, 2].copy()
    directions[0], z_hints[0] = (0.0, 0.0, 1.0), (0.0, -1.0, 0.0)
    lengths = rig_build.bone_lengths(heads, directions, parents, vertices, dense_skin, ROOT_LENGTH)
    frames = frames_from_heads_tails(heads, heads + directions * lengths[:, None], z_hints)

    keypoints = regressor.regression_weights.double().numpy()
    vertex_regressor = np.stack([_landmark_row(name, regressor.labels, keypoints) for name in LANDMARK_NAMES])
    bone_points = rig_build.landmark_bone_points(
        vertex_regressor, np.zeros((len(LANDMARK_NAMES), len(parents))), vertices, heads, dense_skin
    )
    return RiggedBody(
        body_model="anny",
        shape_names=ANNY_SHAPE_NAMES,
        shape_values=values,
        skeleton=Skeleton(tuple(model.bone_labels), parents, frames, lengths),
        vertices_rest=vertices,
        faces=model.get_triangular_faces().numpy().astype(np.int64),
        skin_indices=skin_indices,
        skin_weights=skin_weights,
        landmark_names=LANDMARK_NAMES,
        landmark_bone_points=bone_points,
    )


def rotations_from_anny_bone_poses(
    rig: RiggedBody, anny_rest_bone_poses: np.ndarray, anny_bone_poses: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Our (rotations (T, J, 4) wxyz, root_translation (T, 3)) for Anny's posed bones.

    anny_rest_bone_poses (J, 4, 4) and anny_bone_poses (T, J, 4, 4) are the
    "rest_bone_poses" and "bone_poses" of Anny's forward() for the rig's shape,
    in Anny's world (before our ground shift). Working from Anny's world poses
    makes the mapping independent of Anny's pose_parameterization: our posed
    frame is G_j = S W_j inv(P_j) inv(S) Rest_j (S the ground shift), so our
    skinning matrices equal Anny's.
    """
    rest = rig.skeleton.rest_frames_world
    anny_rest = np.asarray(anny_rest_bone_poses, dtype=np.float64)
    posed = np.asarray(anny_bone_poses, dtype=np.float64)
    offset = rest[0, :3, 3] - anny_rest[0, :3, 3]
    frames = np.zeros(posed.shape)
    frames[..., :3, :3] = posed[..., :3, :3] @ np.swapaxes(anny_rest[:, :3, :3], -1, -2) @ rest[:, :3, :3]
    frames[..., :3, 3] = posed[..., :3, 3] + offset
    frames[..., 3, 3] = 1.0
    return local_rotations(frames, rest, rig.skeleton.parents)


def _landmark_row(name: str, labels: list[str], keypoints: np.ndarray) -> np.ndarray:
    if name in _MIDPOINTS:
        return 0.5 * sum(_landmark_row(side, labels, keypoints) for side in _MIDPOINTS[name])
    label = _ANNY_KEYPOINT_FOR.get(name, name)
    if label not in labels:
        raise AvatarCaptureError(f"Anny's keypoint regressor has no '{label}' keypoint")
    return keypoints[labels.index(label)]


def _load_model(cache_root: Path, report: Report):
    """anny.Anny() built through a staging folder (see the module docstring); returns (model, built)."""
    rig_build.require("anny", "the Anny body model")
    import anny.paths

    cache_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(cache_root)
    warm = any(cache_root.glob(_COMPACT_PATTERN))
    stage = "Loading Anny" if warm else "Building Anny's body data"
    report(stage, 0.0, "warm start from the cache" if warm
           else "first run: Anny builds its data once (about 2 minutes; progress is estimated)")
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=cache_root))
    try:
        for source in cache_root.glob(_COMPACT_PATTERN):
            _link_or_copy(source, staging / source.relative_to(cache_root))
        anny.paths.set_anny_cache_path(staging)
        with _ProgressEstimate(report, stage, enabled=not warm):
            model = _construct_anny()
        built = False
        for made in staging.glob(_COMPACT_PATTERN):
            target = cache_root / made.relative_to(staging)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(made, target)
                built = True
    finally:
        anny.paths.set_anny_cache_path(cache_root)
        shutil.rmtree(staging, ignore_errors=True)
    _remove_intermediates(cache_root)
    report(stage, 1.0, "Anny is ready")
    return model, built


def _construct_anny():
    import anny

    try:
        return anny.Anny()
    except OSError as exc:
        raise AvatarCaptureError(f"could not build Anny's cache ({exc}); check free disk space") from exc


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _remove_intermediates(cache_root: Path) -> None:
    """Delete Anny's large intermediate files (~740 MB) from the cache: a warm start reads only compact data."""
    for path in cache_root.glob("v*/*.safetensors"):
        if not path.match(_COMPACT_PATTERN):
            path.unlink(missing_ok=True)


def _remove_stale_staging(cache_root: Path) -> None:
    """Delete staging folders left by interrupted builds (their process is gone, or they are hours old)."""
    for folder in cache_root.glob(f"{_STAGING_PREFIX}*"):
        pid = folder.name[len(_STAGING_PREFIX):].partition("-")[0]
        old = time.time() - folder.stat().st_mtime > _STALE_STAGING_SECONDS
        if old or (os.name == "posix" and pid.isdigit() and not _process_alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # POSIX only: signal 0 checks existence without signalling
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _ProgressEstimate:
    """While Anny builds: report an elapsed-time estimate every 2 s, and forward anny's log lines.

    The fraction grows as 0.95 * (1 - exp(-t / T)) with T a typical build time, so it
    never reaches 1 before the build does; messages say it is an estimate.
    """

    def __init__(self, report: Report, stage: str, enabled: bool) -> None:
        self._report, self._stage, self._enabled = report, stage, enabled
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._message = "estimated progress"
        self._start = time.perf_counter()
        self._handler = _ForwardLogs(self)
        self._logger = logging.getLogger("anny")
        self._level = self._logger.level
        self._thread = threading.Thread(target=self._tick, daemon=True, name="anny-progress")

    def fraction(self) -> float:
        return 0.95 * (1.0 - np.exp(-(time.perf_counter() - self._start) / _COLD_BUILD_SECONDS))

    def send(self, message: str | None = None) -> None:
        with self._lock:
            if message:
                self._message = message
            elapsed = time.perf_counter() - self._start
            self._report(self._stage, float(self.fraction()),
                         f"{self._message} ({elapsed:.0f} s elapsed, progress estimated)")

    def _tick(self) -> None:
        while not self._stop.wait(2.0):
            self.send()

    def __enter__(self) -> "_ProgressEstimate":
        if self._enabled:
            self._logger.addHandler(self._handler)
            self._logger.setLevel(logging.INFO)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._enabled:
            self._stop.set()
            self._thread.join()  # no estimate may arrive after the stage's final report
            self._logger.removeHandler(self._handler)
            self._logger.setLevel(self._level)


class _ForwardLogs(logging.Handler):
    def __init__(self, estimate: _ProgressEstimate) -> None:
        super().__init__(logging.INFO)
        self._estimate = estimate

    def emit(self, record: logging.LogRecord) -> None:
        # anny logs full cache paths; the UI needs only what it is doing.
        self._estimate.send(_PATH_WORDS.sub("", record.getMessage())[:120])

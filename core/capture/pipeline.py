"""Capture from video, end to end: video -> keypoints -> camera -> whole-sequence fit -> motion clip.

BlazePose keeps one core busy; meanwhile a second thread loads the body rig
and imports torch, so the fit can start the moment the keypoints are done.
Every stage's seconds go into CaptureResult.timings for the benchmark.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..body.models import cached_rig
from ..body.rig_build import scaled_report
from ..clip import Camera, MotionClip, clip_from_pose
from ..errors import AvatarCaptureError
from ..rig import RiggedBody
from ..settings import ComputeSettings
from .fit.initialise import CameraPath, default_intrinsics
from .fit.observations import Observations
from .fit.solve import fit_sequence
from .keypoints import BLAZEPOSE_NAMES, Keypoints, blazepose_to_landmarks, detect_keypoints
from .options import CaptureOptions

log = logging.getLogger(__name__)
Report = Callable[[str, float, str], None]

# Shares of the progress bar: keypoints, camera (moving camera only), fit.
_KEYPOINTS_SHARE = 0.7
_CAMERA_SHARE = 0.1


@dataclass(frozen=True)
class CaptureResult:
    """The captured clip, the rig it animates, the keypoints it was fitted to and seconds per stage."""

    clip: MotionClip
    rig: RiggedBody
    keypoints: Keypoints
    timings: dict[str, float]


def capture_video(
    video_path: str | Path, options: CaptureOptions, settings: ComputeSettings, report: Report | None = None,
) -> CaptureResult:
    """Capture the subject of a video as a motion clip on the settings' body model (see the module docstring)."""
    report = report or (lambda stage, fraction, message="": None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        body = pool.submit(_load_body, settings)
        clock = time.perf_counter()
        keypoints = detect_keypoints(video_path, options, report=scaled_report(report, 0.0, _KEYPOINTS_SHARE),
                                     with_masks=options.moving_camera)  # masks only serve the camera estimate
        timings["keypoints"] = time.perf_counter() - clock
        info = keypoints.video
        K = default_intrinsics((info.width, info.height), options.fov_degrees)
        path = CameraPath.static(len(keypoints.frame_indices))
        if options.moving_camera:
            clock = time.perf_counter()
            path = _camera_path(keypoints, K, scaled_report(report, _KEYPOINTS_SHARE, _KEYPOINTS_SHARE + _CAMERA_SHARE))
            timings["camera"] = time.perf_counter() - clock
        clock = time.perf_counter()
        rig = body.result()
        timings["body_wait"] = time.perf_counter() - clock
    clock = time.perf_counter()
    fit = fit_sequence(rig, observations(keypoints), info.fps, K, path, options.quality,
                       report=scaled_report(report, _KEYPOINTS_SHARE + _CAMERA_SHARE, 0.99))
    timings["fit"] = time.perf_counter() - clock
    clip = clip_from_pose(rig, fit.rotations, fit.root_translation, info.fps, fit.contacts,
                          Camera(fit.K, fit.world_to_cam, (info.width, info.height)))
    clip = _with_observations(clip, keypoints, fit.confidence)
    timings["total"] = time.perf_counter() - started
    report("done", 1.0, f"{len(keypoints.frame_indices)} frames")
    log.info("capture of %s: %s", video_path, {k: round(v, 2) for k, v in timings.items()})
    return CaptureResult(clip, rig, keypoints, timings)


def observations(keypoints: Keypoints) -> Observations:
    """The fit's view of BlazePose's keypoints, mapped onto LANDMARK_NAMES."""
    pixels = blazepose_to_landmarks(keypoints.pixels)
    weights = blazepose_to_landmarks(keypoints.visibility[..., None])[..., 0]
    weights = np.where(keypoints.lost[:, None] | ~np.isfinite(pixels).all(-1), 0.0, weights)
    world = blazepose_to_landmarks(keypoints.world)
    info = keypoints.video
    return Observations(pixels, weights, world, keypoints.lost, (info.width, info.height))


def _load_body(settings: ComputeSettings) -> RiggedBody:
    """The rig of the default shape (built once, then from the cache) and torch, imported off the main thread."""
    import torch  # noqa: F401  (imported here so the fit does not pay for it)

    return cached_rig(settings)[0]


def _camera_path(keypoints: Keypoints, K: np.ndarray, report: Report) -> CameraPath:
    from .camera_motion import estimate_camera_motion

    motion = estimate_camera_motion(keypoints.video, keypoints.frame_indices, K, keypoints.masks,
                                    keypoints.mask_scale, report)
    if not motion.reliable.any():
        raise AvatarCaptureError(
            f"{keypoints.video.path}: the camera's motion could not be followed (too little background texture); "
            "try the static-camera mode")
    return CameraPath(motion.rotations, motion.translations)


def _with_observations(clip: MotionClip, keypoints: Keypoints, confidence: np.ndarray) -> MotionClip:
    """The clip with the capture's observation fields (clip format version 2)."""
    extras = dict(clip.extras)
    extras.update(
        keypoints_2d=keypoints.pixels.astype(np.float32),
        keypoints_2d_visibility=keypoints.visibility.astype(np.float32),
        keypoints_2d_names=np.array(BLAZEPOSE_NAMES),
        frame_confidence=np.where(keypoints.lost, 0.0, confidence).astype(np.float32),
        frame_lost=keypoints.lost.astype(bool),
        source_video=np.array(str(Path(keypoints.video.path).resolve())),
        source_frames=keypoints.frame_indices.astype(np.int32),
    )
    return MotionClip(**{**clip.__dict__, "extras": extras})

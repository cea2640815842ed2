"""Capture benchmark, printed as JSON: accuracy against rendered ground truth (our capture and raw
BlazePose world landmarks side by side), speed per stage, and every real video in ../shared.

Usage: .venv/bin/python bench/capture.py [--truth DIR] [--no-render] [--no-real] [--quality Q]
       [--overlays DIR] [--videos DIR]

Ground truth: bench/ground_truth.py's sequences (static and moving camera), rendered first when
missing (needs the CMU BVH files; ~0.3-0.8 s per frame). Metrics: core/capture/metrics.py, whose
docstring defines each. Pose metrics (MPJPE, PA-MPJPE, acceleration) compare landmarks in each
one's own camera frame (our clip's camera vs the true camera; BlazePose's world landmarks are
already in camera axes), so a capture is not penalised for choosing another world heading. Foot
skating is measured in the prediction's own world frame against the true contacts; the world
trajectory after one rigid alignment of the whole path. Raw BlazePose world landmarks are
hip-centred: they carry no world trajectory (reported as null) and their feet are measured as
they are, i.e. what an add-on applying them in place shows. The capture is given the true field of
view (a user with a known camera would). Figures for the capture come from the same BlazePose
run as the raw figures (CaptureResult.keypoints) when the capture pipeline is available.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VIDEOS_DIR = REPO.parent / "shared" / "media" / "videos"
MIN_STAGE_S = 0.01
TARGETS = {
    "capture_video_fps_min": 30.0,
    "pa_mpjpe_max_share_of_blazepose": 0.75,
    "accel_error_max_share_of_blazepose": 1.0 / 3.0,
    "foot_skating_ratio_max": 0.05,
    "trajectory_error_max": 0.05,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, default=None, help="ground-truth folder (default: the cache's bench/)")
    parser.add_argument("--no-render", action="store_true", help="do not render missing ground truth")
    parser.add_argument("--no-real", action="store_true", help="skip the real videos")
    parser.add_argument("--quality", default="balanced", choices=("fast", "balanced", "best"))
    parser.add_argument("--overlays", type=Path, default=None, help="folder for the overlays (default: truth/overlays)")
    parser.add_argument("--videos", type=Path, default=VIDEOS_DIR)
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # Blender and MediaPipe print on stdout; the JSON owns it
        figures = _measure(args)
    print(json.dumps(_clean(figures), indent=2))


def _measure(args: argparse.Namespace) -> dict:
    from avatar_capture.bench import ground_truth
    from avatar_capture.core.settings import ComputeSettings

    settings = ComputeSettings()
    folder = args.truth or ground_truth.default_folder()
    overlays = args.overlays or folder / "overlays"
    capture, capture_problem = _capture_function()
    figures: dict = {"targets": TARGETS, "truth_folder": str(folder), "quality": args.quality,
                     "capture_available": capture is not None}
    if capture_problem:
        figures["capture_problem"] = capture_problem
    figures["sequences"] = {}
    for sequence in ground_truth.SEQUENCES:
        try:
            video, truth = _truth(ground_truth, sequence, folder, settings, render=not args.no_render)
        except Exception as exc:  # noqa: BLE001 - a missing sequence is reported, the others still run
            figures["sequences"][sequence.name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        figures["sequences"][sequence.name] = _score_sequence(video, truth, sequence.moving_camera, capture,
                                                              settings, args.quality)
    figures["speed"] = _speed(figures["sequences"])
    figures["targets_met"] = _targets_met(figures)
    if not args.no_real:
        figures["real_videos"] = _real_videos(args.videos, overlays, capture, settings, args.quality)
    return figures


def _capture_function():
    """(capture_video, None) or (None, why it is not available)."""
    try:
        from avatar_capture.core.capture.pipeline import capture_video
    except ImportError as exc:
        return None, f"core.capture.pipeline.capture_video is not available yet ({exc}): only raw BlazePose is scored"
    return capture_video, None


def _truth(ground_truth, sequence, folder: Path, settings, render: bool):
    """(video path, truth clip), rendering the sequence first if it is missing or stale and render is set."""
    if render and not ground_truth.is_rendered(folder, sequence):
        folder.mkdir(parents=True, exist_ok=True)
        print(f"rendering ground truth '{sequence.name}' into {folder}", file=sys.stderr)
        ground_truth.make_sequence(sequence, ground_truth.body_rig(settings), folder)
    return ground_truth.load_sequence(folder, sequence.name)


def _score_sequence(video: Path, truth, moving_camera: bool, capture, settings, quality: str) -> dict:
    from avatar_capture.core.capture.keypoints import blazepose_to_landmarks, detect_keypoints
    from avatar_capture.core.capture.options import CaptureOptions

    fov = math.degrees(2.0 * math.atan(0.5 * truth.camera.image_size[0] / truth.camera.K[0, 0]))
    options = CaptureOptions(fov_degrees=fov, moving_camera=moving_camera, quality=quality)
    result = {"video": str(video), "frames": truth.frame_count, "moving_camera": moving_camera,
              "fov_degrees_given": round(fov, 3)}
    captured = None
    if capture is not None:
        try:
            started = time.perf_counter()
            captured = capture(video, options, settings)
            wall = time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 - the raw figures are still worth printing
            result["capture"] = {"error": f"{type(exc).__name__}: {exc}"}
        if captured is not None:
            result["capture"] = _capture_scores(captured, truth, wall)
            keypoints = captured.keypoints
    if captured is None:
        started = time.perf_counter()
        keypoints = detect_keypoints(video, options, with_masks=False)
        result["blazepose_seconds"] = time.perf_counter() - started
    frames = np.asarray(keypoints.frame_indices)
    world = blazepose_to_landmarks(keypoints.world)  # (T, 23, 3) hip-centred camera axes
    result["blazepose_raw"] = _raw_scores(world, truth, frames, keypoints.lost)
    return result


def _capture_scores(captured, truth, wall_seconds: float) -> dict:
    from avatar_capture.core.capture.metrics import (
        accel_error, eval_joints, feet_of, foot_skating_ratio, mpjpe, pa_mpjpe, root_of, trajectory_error,
    )

    clip = captured.clip
    frames = np.asarray(clip.extras.get("source_frames", np.arange(clip.frame_count)), dtype=int)
    pred_world = clip.landmarks_world
    pred_cam = _in_camera(pred_world, clip.camera.world_to_cam)
    gt_world = truth.landmarks_world[frames]
    gt_cam = _in_camera(gt_world, truth.camera.world_to_cam[frames])
    lost = np.asarray(clip.extras.get("frame_lost", np.zeros(clip.frame_count, bool)), dtype=bool)
    timings = dict(captured.timings)
    return {
        "frames": int(clip.frame_count),
        "lost_frames": frames[lost].tolist(),
        "mpjpe_mm": mpjpe(eval_joints(pred_cam), eval_joints(gt_cam)),
        "pa_mpjpe_mm": pa_mpjpe(eval_joints(pred_cam), eval_joints(gt_cam)),
        "accel_error_mm_per_frame2": accel_error(eval_joints(pred_cam), eval_joints(gt_cam)),
        "foot_skating_ratio": foot_skating_ratio(feet_of(pred_world), truth.contacts[frames]),
        "trajectory_error": trajectory_error(root_of(eval_joints(pred_world)), root_of(eval_joints(gt_world))),
        "focal_px": {"captured": float(clip.camera.K[0, 0]), "true": float(truth.camera.K[0, 0])},
        "timings_s": timings,
        "wall_s": wall_seconds,
    }


def _raw_scores(world: np.ndarray, truth, frames: np.ndarray, lost: np.ndarray) -> dict:
    from avatar_capture.core.capture.metrics import (
        accel_error, eval_joints, feet_of, foot_skating_ratio, mpjpe, pa_mpjpe,
    )

    gt_cam = _in_camera(truth.landmarks_world[frames], truth.camera.world_to_cam[frames])
    world = np.where(np.asarray(lost)[:, None, None], np.nan, world)
    return {
        "frames": int(len(frames)),
        "lost_frames": frames[np.asarray(lost, dtype=bool)].tolist(),
        "mpjpe_mm": mpjpe(eval_joints(world), eval_joints(gt_cam)),
        "pa_mpjpe_mm": pa_mpjpe(eval_joints(world), eval_joints(gt_cam)),
        "accel_error_mm_per_frame2": accel_error(eval_joints(world), eval_joints(gt_cam)),
        "foot_skating_ratio": foot_skating_ratio(feet_of(world), truth.contacts[frames]),
        "trajectory_error": None,
        "note": "hip-centred landmarks without a world trajectory; feet measured as they are (in place)",
    }


def _in_camera(points_world: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """Points (T, N, 3) in the OpenCV camera frame of each frame's world_to_cam (T, 4, 4)."""
    return np.einsum("tij,tnj->tni", world_to_cam[:, :3, :3], points_world) + world_to_cam[:, None, :3, 3]


def _speed(sequences: dict) -> dict:
    """Video frames per second of the whole capture and of each stage, per 640x480 ground-truth sequence.

    Stages shorter than MIN_STAGE_S (waiting for work done meanwhile) get no rate.
    """
    speed = {}
    for name, result in sequences.items():
        scores = result.get("capture") or {}
        timings = scores.get("timings_s")
        if timings:
            speed[name] = {stage: scores["frames"] / seconds if seconds >= MIN_STAGE_S else None
                           for stage, seconds in timings.items()}
        elif "blazepose_seconds" in result:
            speed[name] = {"blazepose_only": result["frames"] / result["blazepose_seconds"]}
    return speed


def _targets_met(figures: dict) -> dict:
    """Each target per sequence: true, false, or null when a figure is missing."""
    met = {}
    for name, result in figures["sequences"].items():
        ours, raw = result.get("capture") or {}, result.get("blazepose_raw") or {}
        if "mpjpe_mm" not in ours:
            continue

        def share(key: str) -> float | None:
            return ours[key] / raw[key] if raw.get(key) else None

        fps = figures["speed"].get(name, {}).get("total")
        pa, accel = share("pa_mpjpe_mm"), share("accel_error_mm_per_frame2")
        met[name] = {
            "capture_video_fps": None if fps is None else fps >= TARGETS["capture_video_fps_min"],
            "pa_mpjpe_share_of_blazepose": pa, "pa_mpjpe": None if pa is None
            else pa <= TARGETS["pa_mpjpe_max_share_of_blazepose"],
            "accel_share_of_blazepose": accel, "accel": None if accel is None
            else accel <= TARGETS["accel_error_max_share_of_blazepose"],
            "foot_skating": _at_most(ours.get("foot_skating_ratio"), TARGETS["foot_skating_ratio_max"]),
            "trajectory": _at_most(ours.get("trajectory_error"), TARGETS["trajectory_error_max"]),
        }
    return met


def _at_most(value, limit: float):
    return None if value is None or not np.isfinite(value) else bool(value <= limit)


def _real_videos(videos: Path, overlays: Path, capture, settings, quality: str) -> list[dict]:
    """Capture every video in `videos` with default options and write its overlay."""
    if not videos.is_dir():
        return [{"error": f"no folder {videos}"}]
    if capture is None:
        return [{"error": "the capture pipeline is not available yet"}]
    from avatar_capture.core.capture.options import CaptureOptions
    from avatar_capture.core.capture.overlay import write_overlay

    overlays.mkdir(parents=True, exist_ok=True)
    results = []
    for video in sorted(p for p in videos.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv")):
        entry: dict = {"video": str(video)}
        try:
            started = time.perf_counter()
            captured = capture(video, CaptureOptions(quality=quality), settings)
            entry["capture_s"] = time.perf_counter() - started
            keypoints = captured.keypoints
            frames = np.asarray(keypoints.frame_indices)
            entry.update(frames=int(len(frames)), lost_frames=frames[np.asarray(keypoints.lost, bool)].tolist(),
                         video_size=[keypoints.video.width, keypoints.video.height],
                         fps=len(frames) / captured.timings["total"], timings_s=dict(captured.timings))
            overlay = overlays / f"{video.stem}_overlay.mp4"
            write_overlay(video, captured.clip, overlay, rig=captured.rig)
            entry["overlay"] = str(overlay)
        except Exception as exc:  # noqa: BLE001 - one failing video must not hide the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
        results.append(entry)
    return results


def _clean(value):
    """JSON-safe: NaN and infinity become null, numpy scalars plain numbers, floats rounded."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 4) if np.isfinite(value) else None
    return value


if __name__ == "__main__":
    main()

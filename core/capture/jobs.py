"""The "capture.video" worker job, and the progress wording every capture front end shares.

The Blender operator runs this in a worker process; the CLI calls capture_video
itself but reports progress with the same RateReport, so both show how many
video frames per second the capture is getting through and when it will end.
The job's files (the clip and, when asked for, the overlay video) are staged
and moved into place together once all of them are complete: a cancel or a
failure leaves neither.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic_files import atomic_output, check_writable
from ..body.models import rig_file_for_clip
from ..clip import save_clip
from ..errors import AvatarCaptureError, FileFormatError
from ..settings import ComputeSettings
from .options import CaptureOptions
from .overlay import write_overlay
from .pipeline import capture_video
from .video import check_frame_range, probe_video

Report = Callable[[str, float, str], None]

# Fractions of the whole job: the capture, then the overlay video when one is written.
CAPTURE_SHARE_WITH_PREVIEW = 0.9
# Rates are shown once this much of the job is done and this many seconds have passed (earlier ones jump about).
MIN_FRACTION_FOR_RATE = 0.02
MIN_SECONDS_FOR_RATE = 1.0


class RateReport:
    """A report callable that appends "overall N frames/s, ETA ..." to each message.

    frames is the number of video frames the whole job processes; the rate is
    frames x fraction done / seconds elapsed, and the ETA assumes it stays so.
    "overall" says the rate and ETA are the whole capture's, not the current stage's.
    """

    def __init__(self, report: Report, frames: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.report, self.frames, self.clock = report, frames, clock
        self.started = clock()

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        elapsed = self.clock() - self.started
        parts = [message] if message else []
        if fraction >= MIN_FRACTION_FOR_RATE and elapsed >= MIN_SECONDS_FOR_RATE:
            rate = f"overall {self.frames * fraction / elapsed:.1f} frames/s"
            if fraction < 1.0:
                rate += f", ETA {format_duration(elapsed * (1.0 - fraction) / fraction)}"
            parts.append(rate)
        self.report(stage, fraction, "; ".join(parts))

    def part(self, low: float, high: float) -> Report:
        """A report callable for a step whose own 0..1 covers low..high of the job."""

        def scaled(stage: str, fraction: float, message: str = "") -> None:
            self(stage, low + (high - low) * fraction, message)

        return scaled


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 05 s', '1 h 02 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def check_capture_outputs(clip_path: str | Path, preview: str | Path | None) -> None:
    """Refuse, before any work, a clip path that is not an .npz file, a preview that is not an
    .mp4 file, and either in a folder that cannot be written."""
    if Path(clip_path).suffix.lower() != ".npz":
        raise FileFormatError(clip_path, "the motion clip must be an .npz file")
    if preview is not None and Path(preview).suffix.lower() != ".mp4":
        raise FileFormatError(preview, "the overlay video must be an .mp4 file")
    for path in filter(None, (clip_path, preview)):
        check_writable(path)


def frames_to_capture(video_path: str | Path, options: CaptureOptions) -> int:
    """How many video frames the capture of video_path with options covers (reads the header only)."""
    return check_frame_range(probe_video(video_path), options.start, options.end) - options.start


def capture_video_job(params: dict, settings: ComputeSettings, report: Report) -> dict:
    """Capture params["video"] into the clip params["output"] (.npz) and, when params["preview"]
    is given, write that overlay video (.mp4); params["options"] is CaptureOptions.to_dict().

    Result: {"clip": clip path, "rig": rig file of the clip's body (rig_file_for_clip),
    "preview": overlay path or None, "frames": clip frames, "lost_frames": [video frame
    numbers where the subject was lost], "fps_processed": video frames per second of the
    whole job, "timings": {stage: seconds}}.
    """
    video, output = params.get("video"), params.get("output")
    if not video:
        raise AvatarCaptureError("the capture job needs a 'video' (the video file to capture)")
    if not output:
        raise AvatarCaptureError("the capture job needs an 'output' (the motion clip .npz to write)")
    preview = params.get("preview") or None
    options = CaptureOptions.from_dict(params.get("options") or {})
    check_capture_outputs(output, preview)

    started = time.monotonic()
    progress = RateReport(report, frames_to_capture(video, options))
    capture_share = CAPTURE_SHARE_WITH_PREVIEW if preview else 1.0
    result = capture_video(video, options, settings, report=progress.part(0.0, capture_share))
    clip = result.clip
    _, rig_path = rig_file_for_clip(clip, settings)
    with ExitStack() as stack:
        save_clip(clip, stack.enter_context(atomic_output(output)))
        if preview:
            write_overlay(video, clip, stack.enter_context(atomic_output(preview)), result.rig,
                          report=progress.part(capture_share, 1.0))
    seconds = time.monotonic() - started

    frames = np.asarray(clip.extras.get("source_frames", np.arange(clip.frame_count))).reshape(-1)
    lost = np.asarray(clip.extras.get("frame_lost", np.zeros(clip.frame_count, bool)), bool).reshape(-1)
    return {
        "clip": str(Path(output).resolve()),
        "rig": str(rig_path),
        "preview": str(Path(preview).resolve()) if preview else None,
        "frames": int(clip.frame_count),
        "lost_frames": [int(f) for f in frames[lost]],
        "fps_processed": round(len(frames) / max(seconds, 1e-9), 2),
        "timings": {stage: round(float(value), 3) for stage, value in result.timings.items()},
    }

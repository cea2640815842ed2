"""The "capture.video" job (core/capture/jobs.py): progress wording, bad input refused before any
work with nothing written, and a real capture of the demo video with its overlay."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_capture.core.capture.jobs import RateReport, capture_video_job, format_duration
from avatar_capture.core.capture.options import CaptureOptions
from avatar_capture.core.clip import load_clip
from avatar_capture.core.errors import AvatarCaptureError, FileFormatError
from avatar_capture.core.jobs.registry import resolve

DEMO_VIDEO = Path(__file__).resolve().parents[1] / "assets" / "demo_capture.mp4"
needs_demo_video = pytest.mark.skipif(not DEMO_VIDEO.is_file(), reason="assets/demo_capture.mp4 not made yet")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_report_adds_frames_per_second_and_eta():
    seen, clock = [], Clock()
    report = RateReport(lambda *event: seen.append(event), frames=300, clock=clock)
    report("Detecting", 0.0, "frame 0")
    clock.now += 0.5
    report("Detecting", 0.1, "frame 30")  # too early for a rate
    clock.now += 9.5
    report("Fitting", 0.5, "stage 2")
    report.part(0.8, 1.0)("overlay", 0.5, "")
    clock.now += 5.0
    report("Done", 1.0, "")
    assert seen == [
        ("Detecting", 0.0, "frame 0"),
        ("Detecting", 0.1, "frame 30"),
        ("Fitting", 0.5, "stage 2; overall 15.0 frames/s, ETA 10 s"),
        ("overlay", 0.9, "overall 27.0 frames/s, ETA 1 s"),
        ("Done", 1.0, "overall 20.0 frames/s"),
    ]
    assert [format_duration(s) for s in (0.4, 59, 61, 3725)] == ["0 s", "59 s", "1 min 01 s", "1 h 02 min"]


def test_registry_runs_the_capture_job():
    assert resolve("capture.video") is capture_video_job


def write_video(path: Path, frames: int, size=(320, 240), draw=None) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(frames):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[:] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None] if draw is None else draw(i)
        writer.write(image)
    writer.release()
    return path


@pytest.mark.parametrize("case, message", [
    ("no video", "needs a 'video'"),
    ("no output", "needs an 'output'"),
    ("unknown option", "unknown capture option(s): speed"),
    ("bad range", "end frame 3 must come after start frame 8"),
    ("missing folder", "does not exist"),
    ("not an mp4", "the overlay video must be an .mp4 file"),
    ("not a video", "not a video file OpenCV can read"),
    ("two frames", "the video has 2 frames; a capture needs at least 3"),
    ("range past the end", "start frame 50 is past the end of the video"),
])
def test_bad_input_is_refused_before_any_work(compute_settings, tmp_path, case, message):
    videos = tmp_path / "videos"
    videos.mkdir()
    good = write_video(videos / "gradient.mp4", 10)
    params = {"video": str(good), "output": str(tmp_path / "clip.npz"), "options": CaptureOptions().to_dict()}
    if case == "no video":
        del params["video"]
    elif case == "no output":
        params["output"] = ""
    elif case == "unknown option":
        params["options"] = {"speed": 2}
    elif case == "bad range":
        params["options"] = {"start": 8, "end": 3}
    elif case == "missing folder":
        params["preview"] = str(tmp_path / "nowhere" / "overlay.mp4")
    elif case == "not an mp4":
        params["preview"] = str(tmp_path / "overlay.avi")
    elif case == "not a video":
        (videos / "notes.mp4").write_text("shopping list")
        params["video"] = str(videos / "notes.mp4")
    elif case == "two frames":
        params["video"] = str(write_video(videos / "short.mp4", 2))
    elif case == "range past the end":
        params["options"] = {"start": 50}
    with pytest.raises(AvatarCaptureError) as error:
        capture_video_job(params, compute_settings, lambda *event: None)
    assert message in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]


def test_a_video_without_a_person_is_a_clear_error(compute_settings, tmp_path):
    video = write_video(tmp_path / "gradient.mp4", 30)
    params = {"video": str(video), "output": str(tmp_path / "clip.npz"), "preview": str(tmp_path / "o.mp4")}
    with pytest.raises(AvatarCaptureError, match="no person"):
        capture_video_job(params, compute_settings, lambda *event: None)
    assert [p.name for p in tmp_path.iterdir()] == ["gradient.mp4"]


@needs_demo_video
def test_capture_job_writes_the_clip_and_its_overlay(compute_settings, tmp_path):
    events = []
    params = {"video": str(DEMO_VIDEO), "output": str(tmp_path / "walk.npz"), "preview": str(tmp_path / "walk.mp4"),
              "options": CaptureOptions(start=20, end=60, quality="fast").to_dict()}
    result = capture_video_job(params, compute_settings, lambda *event: events.append(event))
    print(f"\ncapture job, 40 frames + overlay: {result['fps_processed']} frames/s, timings {result['timings']}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.mp4", "walk.npz"]
    assert result["clip"] == str(tmp_path / "walk.npz") and result["preview"] == str(tmp_path / "walk.mp4")
    assert result["frames"] == 40 and result["fps_processed"] > 0
    clip = load_clip(result["clip"])
    assert clip.frame_count == 40 and clip.camera is not None
    assert list(clip.extras["source_frames"]) == list(range(20, 60))
    assert str(clip.extras["source_video"]) == str(DEMO_VIDEO.resolve())
    assert set(result["lost_frames"]) <= set(range(20, 60))
    assert Path(result["rig"]).is_file()
    overlay = cv2.VideoCapture(result["preview"])
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    fractions = [fraction for _, fraction, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("frames/s" in message and "ETA" in message for _, _, message in events)


def test_unwritable_preview_is_refused_first(compute_settings, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    video = write_video(folder / "gradient.mp4", 10)
    (tmp_path / "taken.mp4").mkdir()
    params = {"video": str(video), "output": str(tmp_path / "clip.npz"), "preview": str(tmp_path / "taken.mp4")}
    with pytest.raises(FileFormatError, match="this is a folder"):
        capture_video_job(params, compute_settings, lambda *event: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.mp4", "videos"]

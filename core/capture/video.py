"""Video in: what a capture reads from a video file, upright and at detection size.

Phone videos store their frames sideways and say in the container how to turn them
(rotation metadata); a capture must see the person standing up, so every size and
every frame here is *upright*. Whether OpenCV turns frames by itself depends on its
build (the 4.11 wheels here do not), so it is switched off and the frames are turned
here after downscaling, which is also cheaper than turning the full-size frame.
Container frame counts can be wrong (a truncated file keeps its header), so reading
stops at the last frame that really decodes.

OpenCV's FFmpeg backend reads the files (mp4, mov, avi, mkv and whatever else FFmpeg
knows); cv2 is imported inside the functions so that ``core`` imports without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import AvatarCaptureError, FileFormatError

# Fewest frames a capture accepts: velocities need two frames and the fit's
# acceleration (smoothness) terms three.
MIN_CAPTURE_FRAMES = 3
# Frame rate assumed when the container gives none (or nonsense).
DEFAULT_FPS = 30.0
# Up to this many frames a start frame is reached by decoding from the first frame
# (always exact); beyond it by seeking (fast, exact on the files FFmpeg indexes well).
_MAX_DECODED_SKIP = 300


@dataclass(frozen=True)
class VideoInfo:
    """A readable video.

    path: absolute; width, height: pixels of the UPRIGHT frame (after the rotation
    metadata); fps: DEFAULT_FPS when the file gives none; frame_count: as the
    container says (counted by decoding when it says fewer than MIN_CAPTURE_FRAMES;
    at least that many decode; reading may still end earlier); rotation_degrees
    (0, 90, 180, 270): clockwise turn from the stored frame to the upright one.
    """

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    rotation_degrees: int


@dataclass(frozen=True)
class Frame:
    """One upright video frame for detection.

    index: video frame number (0 = first frame of the file); image_bgr (h, w, 3)
    uint8, upright, downscaled so that max(h, w) <= the requested max_side; scale:
    full-resolution pixels per image pixel (1.0 when not downscaled).
    """

    index: int
    image_bgr: np.ndarray
    scale: float


def _open(path: str):
    """(OpenCV capture on the FFmpeg backend, metadata rotation, rotation still to apply), or None.

    Rotations are clockwise degrees (0, 90, 180, 270). Automatic rotation is switched
    off so frames are turned (after downscaling) here; should a build refuse, its
    frames arrive upright and there is nothing left to turn.
    """
    import cv2

    # FFmpeg only: the image-sequence backend would take a photo for a one-frame video.
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        return None
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    meta = capture.get(cv2.CAP_PROP_ORIENTATION_META)
    rotation = int(round(meta / 90.0)) * 90 % 360 if math.isfinite(meta) else 0
    opencv_turns = capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) != 0
    return capture, rotation, 0 if opencv_turns else rotation


def probe_video(path: str | Path) -> VideoInfo:
    """Open a video and check it is one a capture can use.

    Raises AvatarCaptureError for a missing file and FileFormatError (naming the file)
    for an empty file, a file OpenCV cannot read as video, and a video with fewer than
    MIN_CAPTURE_FRAMES decodable frames.
    """
    resolved = Path(path).expanduser().absolute()
    if not resolved.exists():
        raise AvatarCaptureError(f"{resolved}: no such file")
    if not resolved.is_file():
        raise AvatarCaptureError(f"{resolved}: not a file")
    if resolved.stat().st_size == 0:
        raise FileFormatError(resolved, "the file is empty")
    opened = _open(str(resolved))
    if opened is None:
        raise FileFormatError(resolved, "not a video file OpenCV can read")
    capture, rotation, to_turn = opened
    try:
        import cv2

        ok, first = capture.read()
        if not ok or first is None:
            raise FileFormatError(resolved, "the video has no frame that can be decoded")
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        decoded = 1
        # Count through the file when the container's count is missing or too small to trust.
        limit = None if reported < MIN_CAPTURE_FRAMES else MIN_CAPTURE_FRAMES
        while (limit is None or decoded < limit) and capture.grab():
            decoded += 1
    finally:
        capture.release()
    if decoded < MIN_CAPTURE_FRAMES:
        raise FileFormatError(resolved, f"the video has {decoded} frame{'s' if decoded != 1 else ''}; "
                                        f"a capture needs at least {MIN_CAPTURE_FRAMES}")
    stored_h, stored_w = first.shape[:2]
    width, height = (stored_h, stored_w) if to_turn in (90, 270) else (stored_w, stored_h)
    return VideoInfo(
        path=str(resolved), width=int(width), height=int(height),
        fps=float(fps) if math.isfinite(fps) and 0.0 < fps <= 1000.0 else DEFAULT_FPS,
        frame_count=decoded if limit is None else reported,
        rotation_degrees=rotation,
    )


def check_frame_range(info: VideoInfo, start: int, end: int | None) -> int:
    """The exclusive end frame of [start, end) within the video; AvatarCaptureError when out of range."""
    last = info.frame_count
    name = Path(info.path).name
    if start < 0:
        raise AvatarCaptureError(f"{name}: start frame must be 0 or more, got {start}")
    if start >= last:
        raise AvatarCaptureError(f"{name}: start frame {start} is past the end of the video (frames 0 to {last - 1})")
    stop = last if end is None else end
    if stop > last:
        raise AvatarCaptureError(f"{name}: end frame {stop} is past the end of the video ({last} frames)")
    if stop <= start:
        raise AvatarCaptureError(f"{name}: end frame {stop} must come after start frame {start}")
    return stop


def detection_size(info: VideoInfo, max_side: int) -> tuple[int, int, float]:
    """(width, height, scale) of the upright frames iter_frames yields for max_side;
    scale = full-resolution pixels per yielded pixel."""
    longest = max(info.width, info.height)
    if longest <= max_side:
        return info.width, info.height, 1.0
    scale = longest / max_side
    return (max(1, round(info.width / scale)), max(1, round(info.height / scale)), scale)


_ROTATE_CODES = {90: "ROTATE_90_CLOCKWISE", 180: "ROTATE_180", 270: "ROTATE_90_COUNTERCLOCKWISE"}


def iter_frames(info: VideoInfo, start: int = 0, end: int | None = None,
                max_side: int = 640) -> Iterator[Frame]:
    """Upright frames start..end-1 (end None = to the end), downscaled to max_side.

    Stops early, without error, where the file really ends (the container's frame
    count may promise more); AvatarCaptureError when the range lies outside the
    video's frames or the file can no longer be opened.
    """
    import cv2

    stop = check_frame_range(info, start, end)
    width, height, scale = detection_size(info, max_side)
    opened = _open(info.path)
    if opened is None:
        raise FileFormatError(info.path, "the video can no longer be opened")
    capture, _, to_turn = opened
    stored_size = (height, width) if to_turn in (90, 270) else (width, height)
    rotate_code = getattr(cv2, _ROTATE_CODES[to_turn]) if to_turn else None
    try:
        index = 0
        if start > _MAX_DECODED_SKIP and capture.set(cv2.CAP_PROP_POS_FRAMES, start) \
                and int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == start:
            index = start
        while index < start and capture.grab():
            index += 1
        if index < start:
            return
        while index < stop:
            ok, image = capture.read()
            if not ok or image is None:
                return
            if (image.shape[1], image.shape[0]) != stored_size:
                image = cv2.resize(image, stored_size, interpolation=cv2.INTER_AREA)
            if rotate_code is not None:
                image = cv2.rotate(image, rotate_code)
            yield Frame(index=index, image_bgr=image, scale=scale)
            index += 1
    finally:
        capture.release()

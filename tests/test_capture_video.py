"""Video in (core/capture/video.py) on real files written here with OpenCV.

Rotation metadata: OpenCV cannot write it and no ffmpeg binary is assumed, so
``set_mp4_rotation`` writes it the way phones do, as the display matrix of the mp4
track header ('tkhd'); FFmpeg (inside OpenCV) then reads it back like a phone video's.
The frames carry marks (a red top-left quadrant, a binary frame number) so the tests
check what is in each frame, not only its size.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_capture.core.capture.video import (
    MIN_CAPTURE_FRAMES, iter_frames, probe_video,
)
from avatar_capture.core.errors import AvatarCaptureError, FileFormatError

INDEX_BITS = 9


def marked_frame(index: int, width: int, height: int) -> np.ndarray:
    """A BGR frame: red top-left quadrant, and `index` in binary as white/black columns along the bottom."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[: height // 2, : width // 2] = (0, 0, 255)
    bar = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        image[-(height // 4):, bit * bar:(bit + 1) * bar] = 255 if index >> bit & 1 else 0
    return image


def read_index(image: np.ndarray) -> int:
    height, width = image.shape[:2]
    bar = width // INDEX_BITS
    row = image[-(height // 8)].mean(axis=1)
    return sum(1 << bit for bit in range(INDEX_BITS) if row[bit * bar + bar // 2] > 128)


def write_video(path: Path, frames, fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    frames = list(frames)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path.suffix} with {fourcc} here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _boxes(data: bytes, start: int, end: int):
    """(type, body start, end) of the ISO-BMFF boxes in data[start:end]."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
        elif size == 0:
            size = end - at
        yield kind, at + header, at + size
        at += size


def set_mp4_rotation(path: Path, degrees: int) -> None:
    """Write a clockwise display rotation into every track header of an mp4, as phones do."""
    data = bytearray(path.read_bytes())
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    one = 1 << 16  # 16.16 fixed point; the last matrix entry is 2.30
    matrix = struct.pack(">9i", cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    patched = 0
    for kind, body, end in _boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for kind2, body2, end2 in _boxes(data, body, end):
            if kind2 != b"trak":
                continue
            for kind3, body3, _ in _boxes(data, body2, end2):
                if kind3 == b"tkhd":
                    # version/flags, times + track id + reserved + duration, reserved, layer..volume..reserved
                    offset = body3 + 4 + (20 if data[body3] == 0 else 32) + 8 + 8
                    data[offset:offset + 36] = matrix
                    patched += 1
    assert patched, f"no track header in {path}"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("suffix, fourcc", [(".mp4", "mp4v"), (".mov", "mp4v"), (".avi", "MJPG"), (".mkv", "XVID")])
def test_probe_and_read_every_container(tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", (marked_frame(i, 96, 64) for i in range(6)), fps=24.0,
                       fourcc=fourcc)
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count, info.rotation_degrees) == (96, 64, 6, 0)
    assert info.fps == pytest.approx(24.0, rel=1e-3)
    assert info.path == str(path.absolute())
    frames = list(iter_frames(info))
    assert [f.index for f in frames] == list(range(6))
    assert [read_index(f.image_bgr) for f in frames] == list(range(6))
    assert all(f.image_bgr.shape == (64, 96, 3) and f.image_bgr.dtype == np.uint8 and f.scale == 1.0
               for f in frames)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_gives_upright_size_and_frames(tmp_path: Path, degrees: int) -> None:
    upright = [marked_frame(i, 96, 64) for i in range(4)]
    # Store the frames the way a phone does: turned back by the rotation the header asks for.
    undo = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}[degrees]
    path = write_video(tmp_path / "phone.mp4", (cv2.rotate(f, undo) for f in upright))
    set_mp4_rotation(path, degrees)
    info = probe_video(path)
    assert info.rotation_degrees == degrees
    assert (info.width, info.height) == (96, 64)
    frames = list(iter_frames(info, max_side=48))
    assert [read_index(f.image_bgr) for f in frames] == [0, 1, 2, 3]
    image = frames[0].image_bgr
    assert image.shape == (32, 48, 3) and frames[0].scale == pytest.approx(2.0)
    red = (image[..., 2] > 200) & (image[..., 1] < 80)
    assert red[:12, :20].all(), "the red quadrant must be top-left in the upright frame"
    assert not red[20:, :].any() and not red[:, 28:].any()


def test_large_frames_are_downscaled_with_the_scale_recorded(tmp_path: Path) -> None:
    path = write_video(tmp_path / "uhd.mp4", (marked_frame(i, 3840, 2160) for i in range(3)))
    info = probe_video(path)
    assert (info.width, info.height) == (3840, 2160)
    frames = list(iter_frames(info, max_side=640))
    assert [f.image_bgr.shape for f in frames] == [(360, 640, 3)] * 3
    assert frames[0].scale == pytest.approx(6.0)
    assert [read_index(f.image_bgr) for f in frames] == [0, 1, 2]
    small = list(iter_frames(info, max_side=5000))
    assert small[0].image_bgr.shape == (2160, 3840, 3) and small[0].scale == 1.0


def test_frame_range_is_exact_when_decoding_and_when_seeking(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", (marked_frame(i, 96, 64) for i in range(340)))
    info = probe_video(path)
    assert info.frame_count == 340
    near = list(iter_frames(info, start=5, end=9))
    assert [f.index for f in near] == [5, 6, 7, 8]
    assert [read_index(f.image_bgr) for f in near] == [5, 6, 7, 8]
    far = list(iter_frames(info, start=320, end=324))  # past the decode-from-start limit: seeks
    assert [f.index for f in far] == [320, 321, 322, 323]
    assert [read_index(f.image_bgr) for f in far] == [320, 321, 322, 323]
    assert [f.index for f in iter_frames(info, start=337)] == [337, 338, 339]


@pytest.mark.parametrize("start, end, words", [
    (6, None, "start frame 6 is past the end"),
    (0, 7, "end frame 7 is past the end"),
    (3, 3, "must come after start frame 3"),
    (-1, None, "start frame must be 0 or more"),
])
def test_frame_range_outside_the_video_is_a_clear_error(tmp_path: Path, start, end, words: str) -> None:
    info = probe_video(write_video(tmp_path / "six.mp4", (marked_frame(i, 64, 48) for i in range(6))))
    with pytest.raises(AvatarCaptureError, match=words) as caught:
        list(iter_frames(info, start=start, end=end))
    assert "six.mp4" in str(caught.value)


def test_reading_stops_where_a_truncated_file_really_ends(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.avi", (marked_frame(i, 64, 48) for i in range(20)), fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    info = probe_video(cut)
    assert info.frame_count == 20, "the header still promises 20 frames"
    frames = list(iter_frames(info))
    assert MIN_CAPTURE_FRAMES <= len(frames) < 20
    # The last frame decoded may be cut off half way (MJPEG decodes what is there).
    assert [read_index(f.image_bgr) for f in frames[:-1]] == list(range(len(frames) - 1))


def test_bad_files_are_named_in_one_clear_error(tmp_path: Path) -> None:
    cases = {
        "empty.mp4": (b"", "the file is empty"),
        "noise.mp4": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
                      "not a video file OpenCV can read"),
        "notes.mkv": (b"these are my notes, not a video\n" * 20, "not a video file OpenCV can read"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(FileFormatError, match=words) as caught:
            probe_video(path)
        assert caught.value.path == str(path.absolute())
        assert str(path.absolute()) in str(caught.value)
    with pytest.raises(AvatarCaptureError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(AvatarCaptureError, match="not a file"):
        probe_video(tmp_path)


@pytest.mark.parametrize("count", [1, 2])
def test_too_short_videos_are_refused(tmp_path: Path, count: int) -> None:
    path = write_video(tmp_path / f"short{count}.mp4", (marked_frame(i, 64, 48) for i in range(count)))
    with pytest.raises(FileFormatError, match=f"has {count} frames?; a capture needs at least 3") as caught:
        probe_video(path)
    assert caught.value.path == str(path.absolute())


def test_a_photo_is_not_a_video(tmp_path: Path) -> None:
    photo = tmp_path / "person.jpg"
    cv2.imwrite(str(photo), marked_frame(0, 64, 48))
    with pytest.raises(FileFormatError, match="has 1 frame;"):
        probe_video(photo)


"""BlazePose keypoints of one tracked person (core/capture/keypoints.py), with the real model.

The people are real: frames of the shared videos and the PIFu photo whose person mask
ships beside it (an independent check of where our landmarks and masks land). Clips
are short and written into tmp_path with OpenCV; tests that need ../shared skip
without it. Several people: two real videos side by side in one frame, so each
person keeps moving and a tracker that drifts or jumps would show it.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
import pytest
from test_capture_video import set_mp4_rotation, write_video

from avatar_capture.core.capture.keypoints import (
    BLAZEPOSE_NAMES, blazepose_to_landmarks, detect_keypoints,
)
from avatar_capture.core.capture.options import CaptureOptions
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.landmarks import LANDMARK_NAMES

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "media"
VIDEOS = SHARED / "videos"
TAIJI = VIDEOS / "Jeff-sjtu_HybrIK__taiji.mp4"
HIPHOP = VIDEOS / "davrempe_humor__hiphop_clip1.mp4"
PIFU = SHARED / "person_images" / "shunsukesaito_PIFu__ryota.png"
PIFU_MASK = SHARED / "person_images" / "shunsukesaito_PIFu__ryota_mask.png"
DEMO = REPO / "assets" / "demo_capture.mp4"
needs_shared = pytest.mark.skipif(not (TAIJI.exists() and HIPHOP.exists() and PIFU_MASK.exists()),
                                  reason="../shared/media (videos, person images) is not here")

BODY = [BLAZEPOSE_NAMES.index(n) for n in (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle")]


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    assert all(f is not None for f in frames)
    return frames


def portrait_half(frame: np.ndarray, x0: int) -> np.ndarray:
    """The 480-wide column of a 720-high frame starting at x0, as 320x480."""
    return cv2.resize(frame[:, x0:x0 + 480], (320, 480), interpolation=cv2.INTER_AREA)


def test_names_are_mediapipes_and_landmarks_map_by_name() -> None:
    assert list(BLAZEPOSE_NAMES) == [lm.name.lower() for lm in mp.solutions.pose.PoseLandmark]
    points = np.random.default_rng(1).normal(size=(2, 5, 33, 3))
    mapped = blazepose_to_landmarks(points)
    assert mapped.shape == (2, 5, len(LANDMARK_NAMES), 3)
    column = {name: mapped[..., i, :] for i, name in enumerate(LANDMARK_NAMES)}
    source = {name: points[..., i, :] for i, name in enumerate(BLAZEPOSE_NAMES)}
    for name in ("nose", "left_eye", "right_ear", "left_wrist", "right_ankle", "left_heel", "right_heel"):
        np.testing.assert_array_equal(column[name], source[name])
    np.testing.assert_allclose(column["pelvis"], (source["left_hip"] + source["right_hip"]) / 2)
    np.testing.assert_allclose(column["neck"], (source["left_shoulder"] + source["right_shoulder"]) / 2)
    np.testing.assert_array_equal(column["left_toe"], source["left_foot_index"])
    np.testing.assert_array_equal(column["right_toe"], source["right_foot_index"])
    with pytest.raises(ValueError):
        blazepose_to_landmarks(points[..., :17, :])


@pytest.fixture(scope="module")
def two_people(tmp_path_factory) -> Path:
    """16 frames of 640x480: the hip-hop dancer on the left half, the tai-chi man on the right."""
    if not (TAIJI.exists() and HIPHOP.exists()):
        pytest.skip("../shared/media/videos is not here")
    left = video_frames(HIPHOP, 16)
    right = video_frames(TAIJI, 16)
    frames = [np.hstack([portrait_half(a, 320), portrait_half(b, 410)]) for a, b in zip(left, right)]
    return write_video(tmp_path_factory.mktemp("two") / "two_people.mp4", frames, fps=30.0)


@needs_shared
@pytest.mark.parametrize("side", ["left", "right"])
def test_the_box_picks_the_subject_and_the_capture_stays_on_them(two_people: Path, side: str) -> None:
    box = (20.0, 20.0, 300.0, 470.0) if side == "left" else (340.0, 20.0, 620.0, 470.0)
    result = detect_keypoints(two_people, CaptureOptions(box=box))
    assert result.frame_indices.tolist() == list(range(16))
    assert result.lost.sum() <= 1, f"lost frames: {np.flatnonzero(result.lost)}"
    body_x = result.pixels[~result.lost][:, BODY, 0]
    on_left = body_x < 320
    assert on_left.all() if side == "left" else not on_left.any(), body_x.min(axis=1)


@needs_shared
def test_frames_without_the_subject_are_lost_not_given_to_the_other_person(tmp_path: Path) -> None:
    """The tai-chi man (right) steps out for frames 8-11 while the dancer (left) keeps dancing."""
    left, right = video_frames(HIPHOP, 20), video_frames(TAIJI, 20)
    empty = np.full((480, 320, 3), 70, np.uint8)
    frames = [np.hstack([portrait_half(a, 320), empty if 8 <= i < 12 else portrait_half(b, 410)])
              for i, (a, b) in enumerate(zip(left, right))]
    path = write_video(tmp_path / "steps_out.mp4", frames, fps=30.0)
    result = detect_keypoints(path, CaptureOptions(box=(340.0, 20.0, 620.0, 470.0)))
    assert result.lost[8:12].all(), np.flatnonzero(result.lost)
    assert not result.lost[:8].any() and not result.lost[13:].any(), np.flatnonzero(result.lost)
    assert (result.pixels[~result.lost][:, BODY, 0] > 320).all()
    assert np.isnan(result.pixels[result.lost]).all() and (result.visibility[result.lost] == 0).all()
    assert np.isnan(result.world[result.lost]).all() and (result.masks[result.lost] == 0).all()


@needs_shared
def test_without_a_box_one_person_is_followed_through_the_clip(two_people: Path) -> None:
    result = detect_keypoints(two_people, CaptureOptions())
    assert not result.lost.any()
    centre_x = np.nanmedian(result.pixels[:, BODY, 0], axis=1)
    sides = centre_x < 320
    assert sides.all() or not sides.any(), centre_x


@pytest.fixture(scope="module")
def pifu_portrait_4k(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 2160x3840 portrait video (4 frames) of the PIFu photo scaled up, and its true person mask."""
    if not PIFU_MASK.exists():
        pytest.skip("../shared/media/person_images is not here")
    photo = cv2.resize(cv2.imread(str(PIFU)), (2160, 2160), interpolation=cv2.INTER_CUBIC)
    truth = cv2.resize(cv2.imread(str(PIFU_MASK), cv2.IMREAD_GRAYSCALE), (2160, 2160),
                       interpolation=cv2.INTER_NEAREST)
    frame = np.full((3840, 2160, 3), 128, np.uint8)
    mask = np.zeros((3840, 2160), bool)
    frame[840:3000], mask[840:3000] = photo, truth > 127
    path = write_video(tmp_path_factory.mktemp("pifu") / "portrait_4k.mp4", [frame] * 4, fps=30.0)
    return path, mask


@needs_shared
def test_landmarks_and_mask_land_on_the_person_in_a_4k_portrait_video(pifu_portrait_4k) -> None:
    path, truth = pifu_portrait_4k
    reports: list[tuple[str, float, str]] = []
    result = detect_keypoints(path, CaptureOptions(), report=lambda *args: reports.append(args))
    assert (result.video.width, result.video.height) == (2160, 3840)
    assert not result.lost.any()
    # Landmarks in full-resolution pixels: the body points fall on the true mask (slightly grown).
    grown = cv2.dilate(truth.astype(np.uint8), np.ones((61, 61), np.uint8)) > 0
    xy = np.round(result.pixels[:, BODY]).astype(int)
    inside = grown[np.clip(xy[..., 1], 0, 3839), np.clip(xy[..., 0], 0, 2159)]
    assert inside.mean() >= 0.95, inside.mean()
    # The low-resolution person mask covers the same pixels as the true one.
    assert max(result.masks.shape[1:]) <= 160
    ours = cv2.resize(result.masks[-1], (2160, 3840), interpolation=cv2.INTER_NEAREST) > 0
    iou = (ours & truth).sum() / (ours | truth).sum()
    assert iou >= 0.75, iou
    assert result.mask_scale == pytest.approx(3840 / result.masks.shape[1], rel=0.02)
    # World landmarks: metres, hip-centred, y down.
    world = result.world[-1]
    hips = world[[BLAZEPOSE_NAMES.index("left_hip"), BLAZEPOSE_NAMES.index("right_hip")]].mean(axis=0)
    assert np.linalg.norm(hips) < 0.05
    nose_y, ankle_y = world[0, 1], world[[27, 28], 1].mean()
    assert 1.0 < ankle_y - nose_y < 2.2
    assert reports and reports[-1][:2] == ("keypoints", 1.0)
    assert all(stage == "keypoints" and re.fullmatch(r"frame \d+ of \d+", message) for stage, _, message in reports)


@needs_shared
def test_a_box_without_the_person_finds_no_one(pifu_portrait_4k) -> None:
    path, _ = pifu_portrait_4k
    with pytest.raises(AvatarCaptureError, match="no person found in portrait_4k.mp4 inside the subject box"):
        detect_keypoints(path, CaptureOptions(box=(0.0, 0.0, 400.0, 600.0)))


@needs_shared
def test_rotated_phone_video_gives_the_same_upright_keypoints(tmp_path: Path) -> None:
    frames = video_frames(TAIJI, 10)
    upright = write_video(tmp_path / "upright.mp4", frames)
    phone = write_video(tmp_path / "phone.mp4", [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in frames])
    set_mp4_rotation(phone, 90)
    plain, turned = detect_keypoints(upright, CaptureOptions()), detect_keypoints(phone, CaptureOptions())
    assert turned.video.rotation_degrees == 90 and (turned.video.width, turned.video.height) == (1280, 720)
    assert not plain.lost.any() and not turned.lost.any()
    height = np.ptp(plain.pixels[:, BODY, 1], axis=1).mean()
    error = np.linalg.norm(plain.pixels[:, BODY] - turned.pixels[:, BODY], axis=-1)
    assert np.median(error) < 0.02 * height, (np.median(error), height)
    # Upright: head above the ankles.
    assert (turned.pixels[:, 0, 1] < turned.pixels[:, [27, 28], 1].min(axis=1)).all()


@needs_shared
def test_frame_range_and_detection_size_keep_full_resolution_pixels() -> None:
    coarse = detect_keypoints(TAIJI, CaptureOptions(start=30, end=40, detect_max_side=320), with_masks=False)
    fine = detect_keypoints(TAIJI, CaptureOptions(start=30, end=40, detect_max_side=1280))
    assert coarse.frame_indices.tolist() == fine.frame_indices.tolist() == list(range(30, 40))
    assert coarse.masks.shape == (10, 0, 0) and fine.masks.shape == (10, 90, 160)
    assert fine.mask_scale == pytest.approx(8.0)
    assert coarse.video.width == 1280 and not coarse.lost.any() and not fine.lost.any()
    height = np.ptp(fine.pixels[:, BODY, 1], axis=1).mean()
    assert height > 300, "pixels are full-resolution (the person is ~500 px tall in the 720p video)"
    error = np.linalg.norm(coarse.pixels[:, BODY] - fine.pixels[:, BODY], axis=-1)
    assert np.median(error) < 0.03 * height, (np.median(error), height)


def test_no_person_is_a_clear_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 8)
    path = write_video(tmp_path / "empty_room.mp4", [np.roll(base, 4 * i, axis=1) for i in range(8)])
    with pytest.raises(AvatarCaptureError, match="no person found in empty_room.mp4"):
        detect_keypoints(path, CaptureOptions())
    with pytest.raises(AvatarCaptureError, match=r"subject box .* lies outside the 320x240 frame"):
        detect_keypoints(path, CaptureOptions(box=(330.0, 10.0, 400.0, 100.0)))


@needs_shared
def test_a_person_in_under_half_of_the_frames_is_a_clear_error(tmp_path: Path) -> None:
    frames = [cv2.resize(f, (640, 360)) for f in video_frames(TAIJI, 4)] + [np.full((360, 640, 3), 90, np.uint8)] * 8
    path = write_video(tmp_path / "brief.mp4", frames)
    with pytest.raises(AvatarCaptureError, match=r"brief.mp4: the person was found in only [1-4] of 12 frames"):
        detect_keypoints(path, CaptureOptions())


class Cancelled(Exception):
    pass


@needs_shared
def test_a_cancel_from_the_progress_report_stops_decoding_and_propagates() -> None:
    calls: list[float] = []

    def cancel(stage: str, fraction: float, message: str) -> None:
        calls.append(fraction)
        raise Cancelled()

    with pytest.raises(Cancelled) as caught:
        detect_keypoints(TAIJI, CaptureOptions(), report=cancel)
    assert len(calls) == 1 and 0.0 < calls[0] < 1.0
    # Checked while the traceback (and so the function's frame) is still alive, as in a caller logging it.
    assert caught.traceback
    assert not [t for t in threading.enumerate() if t.name == "video-decode"]


@pytest.mark.skipif(not DEMO.exists(), reason="assets/demo_capture.mp4 is not made yet")
def test_the_demo_video_is_tracked_without_loss() -> None:
    result = detect_keypoints(DEMO, CaptureOptions(end=20))
    assert len(result.frame_indices) == 20
    assert not result.lost.any()
    assert (result.visibility[:, BODY] > 0.5).mean() > 0.8

"""2D and 3D body keypoints of ONE person through a video, with MediaPipe BlazePose.

BlazePose in video mode follows whichever person its detector likes best, and after
losing someone it may pick up anyone else. A capture needs the same person from the
first frame to the last, so BlazePose never sees the whole frame: it sees a square
crop around where our subject was (plus its motion), and every answer is checked
against the subject's last good frame. An answer that jumps (torso centre too far
from where the subject should be, or a very different size) is someone else: the
frame is flagged lost, BlazePose's own tracking is made to let go, that person is
painted out of the next crops, and the crop widens step by step until the subject
is found again. The crop follows the subject with a dead zone and resizes with
hysteresis, so it stays still while the subject moves a little (BlazePose's landmark
smoothing works in crop coordinates and would otherwise see the crop's jitter). When
the subject is first found, or found again, the crop jumps onto them and BlazePose
detects afresh there with only the subject's box visible, so its detector cannot
pick a neighbour.

Decoding runs in a second thread (OpenCV and MediaPipe release the GIL), so on two
cores reading the video hides behind BlazePose.

Pixels are full-resolution, upright, OpenCV convention (pixel (0, 0)'s centre at
(0, 0)). mediapipe and cv2 are imported inside the functions.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterator

import numpy as np

from ..errors import AvatarCaptureError
from ..landmarks import LANDMARK_NAMES
from .options import CaptureOptions
from .video import MIN_CAPTURE_FRAMES, Frame, VideoInfo, check_frame_range, detection_size, iter_frames, probe_video

BLAZEPOSE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

# Each of LANDMARK_NAMES as the mean of these BlazePose landmarks.
_LANDMARK_SOURCES = {
    **{name: (name,) for name in LANDMARK_NAMES if name in BLAZEPOSE_NAMES},
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "left_toe": ("left_foot_index",),
    "right_toe": ("right_foot_index",),
}
_TORSO = [BLAZEPOSE_NAMES.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]

# Side in pixels of the square crop BlazePose sees: its landmark model looks at
# 256 px of the person, who fills about 1 / CROP_MARGIN of the crop.
CROP_PIXELS = 384
CROP_MARGIN = 1.6          # crop side / longest side of the subject's landmark box
DEAD_ZONE = 0.08           # the crop follows once the subject's centre is this far (x crop side) off
RESIZE_HYSTERESIS = 0.15   # the crop resizes once the wanted side differs by this fraction
CROP_STEP = 0.1            # most the crop moves or resizes per frame while tracking (x crop side)
KEEP_MARGIN = 0.2          # on a re-anchor BlazePose sees the subject's box grown by this (x its size)
WIDEN_PER_LOST_FRAME = 1.3
JUMP_GATE = 0.6            # accepted torso-centre error, in torso lengths, right after a good frame
JUMP_GATE_GROWTH = 0.15    # ... plus this much per frame since the last good one (about walking speed),
MAX_GATE_GROWTH = 3.5      # ... but never more: far away after a long loss is more likely someone else
SIZE_GATE = 1.5            # accepted change of the subject's size (ratio), plus the same growth
DISTRACTOR_FRAMES = 15     # how long a rejected person stays painted out of the crops
MASK_MAX_SIDE = 160        # longest side of the stored person masks
REPORT_EVERY_S = 0.5


def blazepose_to_landmarks(points: np.ndarray) -> np.ndarray:
    """(..., 33, D) BlazePose points -> (..., 23, D) in LANDMARK_NAMES order.

    COCO-17 taken as they are, pelvis = mid hips, neck = mid shoulders, heels from
    the heels, toes from the foot-index points. NaN stays NaN.
    """
    points = np.asarray(points)
    if points.ndim < 2 or points.shape[-2] != len(BLAZEPOSE_NAMES):
        raise ValueError(f"expected (..., {len(BLAZEPOSE_NAMES)}, D) BlazePose points, got {points.shape}")
    columns = [points[..., [BLAZEPOSE_NAMES.index(s) for s in _LANDMARK_SOURCES[name]], :].mean(axis=-2)
               for name in LANDMARK_NAMES]
    return np.stack(columns, axis=-2)


@dataclass(frozen=True)
class Keypoints:
    """BlazePose results for one tracked person over frames [start, end) of a video.

    frame_indices (T,) video frame numbers; pixels (T, 33, 2) full-resolution upright
    pixels (NaN where lost); visibility (T, 33) 0..1 (0 where lost); world (T, 33, 3)
    MediaPipe world landmarks in metres, hip-centred, camera axes (x right, y down,
    z away from the camera; NaN where lost); lost (T,) bool; masks (T, mh, mw) uint8
    0/255 person masks of the whole frame, max(mh, mw) <= MASK_MAX_SIDE (all 0 where
    lost; (T, 0, 0) when not asked for); mask_scale full-resolution pixels per mask
    pixel. Names in BLAZEPOSE_NAMES order.
    """

    video: VideoInfo
    frame_indices: np.ndarray
    pixels: np.ndarray
    visibility: np.ndarray
    world: np.ndarray
    lost: np.ndarray
    masks: np.ndarray
    mask_scale: float


@dataclass
class _Crop:
    """A square in detection-image pixels (continuous coordinates, 0 = left edge)."""

    cx: float
    cy: float
    side: float

    def to_crop_matrix(self) -> np.ndarray:
        """2x3 affine from detection-image pixel centres to crop pixel centres."""
        k = CROP_PIXELS / self.side
        x0, y0 = self.cx - self.side / 2, self.cy - self.side / 2
        return np.array([[k, 0.0, (0.5 - x0) * k - 0.5], [0.0, k, (0.5 - y0) * k - 0.5]])

    def crop_to_mask_matrix(self, to_mask_scale: np.ndarray, to_mask_offset: np.ndarray) -> np.ndarray:
        """2x3 affine from crop pixel centres to mask pixel centres, given mask = scale * image + offset."""
        k = CROP_PIXELS / self.side
        origin = np.array([self.cx - self.side / 2, self.cy - self.side / 2])
        offset = to_mask_scale * (0.5 / k + origin - 0.5) + to_mask_offset
        return np.array([[to_mask_scale[0] / k, 0.0, offset[0]], [0.0, to_mask_scale[1] / k, offset[1]]])


def _box(points: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) around (N, 2) points."""
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _SubjectTracker:
    """Where BlazePose looks next and whether its answer is still our subject.

    All coordinates are detection-image pixels (continuous, 0 = left edge).
    """

    def __init__(self, width: int, height: int, box: np.ndarray | None) -> None:
        self.width, self.height = width, height
        self.cover_side = float(max(width, height))
        self.min_side = min(64.0, self.cover_side)
        self.user_box = box
        self.keep_box = box  # BlazePose sees only this box (the user's, or the subject's on a re-anchor)
        self.acquired = False
        self.lost_run = 0
        self.torso_centre = np.zeros(2)
        self.velocity = np.zeros(2)
        self.torso_length = 1.0
        self.size = 1.0
        self.distractor: np.ndarray | None = None
        self.distractor_ttl = 0
        if box is None:
            self.crop = _Crop(width / 2, height / 2, self.cover_side)
        else:
            self.crop = _Crop((box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                              1.2 * max(box[2] - box[0], box[3] - box[1]))
        self._clamp()

    def look(self, image_bgr: np.ndarray) -> tuple[np.ndarray, _Crop]:
        """The (CROP_PIXELS, CROP_PIXELS, 3) RGB image BlazePose sees and the crop it shows.

        The crop is snapped to whole pixels so that a slice and a resize (cheaper than
        a warp) make it exactly. Painted out: everything outside keep_box (the user's
        box until the subject is found; the subject's own box on the frame the crop
        re-anchors) and a person just rejected.
        """
        import cv2

        side = max(1, round(self.crop.side))
        x0, y0 = round(self.crop.cx - side / 2), round(self.crop.cy - side / 2)
        crop = _Crop(x0 + side / 2, y0 + side / 2, float(side))
        height, width = image_bgr.shape[:2]
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
        patch = image_bgr[sy0:sy1, sx0:sx1]
        if (sx0, sy0, sx1, sy1) != (x0, y0, x0 + side, y0 + side):
            patch = cv2.copyMakeBorder(patch, sy0 - y0, y0 + side - sy1, sx0 - x0, x0 + side - sx1,
                                       cv2.BORDER_CONSTANT, value=(0, 0, 0))
        image = cv2.resize(patch, (CROP_PIXELS, CROP_PIXELS), interpolation=cv2.INTER_LINEAR)
        to_crop = crop.to_crop_matrix()
        if self.keep_box is not None:
            x0, y0, x1, y1 = self._in_crop(self.keep_box, to_crop)
            keep = image[y0:y1, x0:x1].copy()
            image[:] = 0
            image[y0:y1, x0:x1] = keep
        if self.distractor_ttl > 0:
            x0, y0, x1, y1 = self._in_crop(self.distractor, to_crop)
            image[y0:y1, x0:x1] = 0
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), crop

    @staticmethod
    def _in_crop(box: np.ndarray, to_crop: np.ndarray) -> tuple[int, int, int, int]:
        corners = to_crop[:, :2] @ box.reshape(2, 2).T + to_crop[:, 2:]
        x0, y0, x1, y1 = np.clip(np.round(corners.T.ravel()), 0, CROP_PIXELS).astype(int)
        return x0, y0, x1, y1

    def _clamp(self) -> None:
        crop = self.crop
        crop.side = float(np.clip(crop.side, self.min_side, self.cover_side))
        for axis, extent in (("cx", self.width), ("cy", self.height)):
            half = crop.side / 2
            value = getattr(crop, axis)
            setattr(crop, axis, extent / 2 if crop.side >= extent else float(np.clip(value, half, extent - half)))

    def predicted_centre(self) -> np.ndarray:
        return self.torso_centre + self.velocity * min(self.lost_run + 1, 3)

    def accepts(self, points: np.ndarray) -> bool:
        """Is this (33, 2) answer our subject? Before the first find: anyone, or someone mostly in the user's box."""
        box = _box(points)
        if not self.acquired:
            if self.user_box is None:
                return True
            ub = self.user_box
            inter = max(min(box[2], ub[2]) - max(box[0], ub[0]), 0) * max(min(box[3], ub[3]) - max(box[1], ub[1]), 0)
            return inter >= 0.5 * (box[2] - box[0]) * (box[3] - box[1])
        growth = min(JUMP_GATE_GROWTH * self.lost_run, MAX_GATE_GROWTH)
        centre = points[_TORSO].mean(axis=0)
        if np.linalg.norm(centre - self.predicted_centre()) > (JUMP_GATE + growth) * self.torso_length:
            return False
        ratio = max(box[2] - box[0], box[3] - box[1]) / self.size
        return 1.0 / (SIZE_GATE + growth) <= ratio <= SIZE_GATE + growth

    def found(self, points: np.ndarray) -> bool:
        """Follow the subject after a good frame; True when the crop re-anchored.

        First find, or found again after lost frames: the crop jumps onto the subject
        and BlazePose must detect afresh there (with only the subject's box visible,
        so its detector cannot pick a neighbour). Otherwise BlazePose is tracking its
        region of interest in crop coordinates, so the crop moves smoothly: the centre
        with a dead zone, the size with hysteresis, at most CROP_STEP of its side per frame.
        """
        box = _box(points)
        centre = points[_TORSO].mean(axis=0)
        following = self.acquired and self.lost_run == 0
        self.velocity = 0.5 * self.velocity + 0.5 * (centre - self.torso_centre) if following else np.zeros(2)
        shoulders, hips = points[_TORSO[:2]].mean(axis=0), points[_TORSO[2:]].mean(axis=0)
        self.size = max(box[2] - box[0], box[3] - box[1], 1.0)
        self.torso_length = max(float(np.linalg.norm(shoulders - hips)), 0.25 * self.size)
        self.torso_centre = centre
        self.acquired, self.lost_run = True, 0
        if self.distractor_ttl > 0:
            self.distractor_ttl -= 1

        crop = self.crop
        target = (box[:2] + box[2:]) / 2 + self.velocity
        if not following:
            crop.cx, crop.cy, crop.side = float(target[0]), float(target[1]), CROP_MARGIN * self.size
            self.keep_box = np.concatenate([box[:2] - KEEP_MARGIN * self.size, box[2:] + KEEP_MARGIN * self.size])
            self._clamp()
            return True
        self.keep_box = None
        change = CROP_MARGIN * self.size / crop.side
        if abs(change - 1.0) > RESIZE_HYSTERESIS:
            crop.side *= float(np.clip(change, 1.0 / (1.0 + CROP_STEP), 1.0 + CROP_STEP))
        for axis, value in (("cx", target[0]), ("cy", target[1])):
            offset = value - getattr(crop, axis)
            slack = abs(offset) - DEAD_ZONE * crop.side
            if slack > 0:
                setattr(crop, axis, getattr(crop, axis) + float(np.sign(offset)) * min(slack, CROP_STEP * crop.side))
        self._clamp()
        return False

    def missed(self, rejected: np.ndarray | None) -> None:
        """No answer, or someone else's (rejected (33, 2) points): widen the search around the prediction."""
        self.lost_run += 1
        if rejected is not None:
            box = _box(rejected)
            ours = self._predicted_box()
            if ours is None or _iou(box, ours) < 0.2:
                pad = 0.1 * (box[2:] - box[:2])
                self.distractor, self.distractor_ttl = np.concatenate([box[:2] - pad, box[2:] + pad]), DISTRACTOR_FRAMES
        elif self.distractor_ttl > 0:
            self.distractor_ttl -= 1
        if not self.acquired:
            return  # keep searching the whole frame, or the user's box
        self.crop.side *= WIDEN_PER_LOST_FRAME
        self.crop.cx, self.crop.cy = (float(v) for v in self.predicted_centre())
        self._clamp()

    def _predicted_box(self) -> np.ndarray | None:
        if not self.acquired:
            return self.user_box
        half = self.size / 2
        centre = self.predicted_centre()
        return np.concatenate([centre - half, centre + half])


def _prefetch(frames: Generator[Frame, None, None], depth: int = 6) -> Iterator[Frame]:
    """Decode in a background thread; errors are raised in the consumer; stops when the consumer stops."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        items.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as error:  # handed to the consumer, which re-raises it
            items.put(error)
        finally:
            frames.close()  # releases the video file in this thread

    thread = threading.Thread(target=produce, name="video-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


def _run(pose, tracker: _SubjectTracker, image_bgr: np.ndarray):
    """BlazePose on the tracker's crop: (result, crop, (33, 2) detection-image pixels or None)."""
    image, crop = tracker.look(image_bgr)
    result = pose.process(image)
    if result.pose_landmarks is None:
        return result, crop, None
    normalised = np.array([(p.x, p.y) for p in result.pose_landmarks.landmark])
    return result, crop, normalised * crop.side + (crop.cx - crop.side / 2, crop.cy - crop.side / 2)


def _mask_size(info: VideoInfo) -> tuple[int, int, float]:
    longest = max(info.width, info.height)
    scale = max(1.0, longest / MASK_MAX_SIDE)
    return max(1, round(info.width / scale)), max(1, round(info.height / scale)), scale


def detect_keypoints(video_path: str | Path, options: CaptureOptions,
                     report: Callable[[str, float, str], None] | None = None, *,
                     with_masks: bool = True) -> Keypoints:
    """Track one person through frames [options.start, options.end) with BlazePose.

    The subject is the person BlazePose finds first on the whole frame (its most
    confident, usually the most prominent), or the person inside options.box (full
    resolution pixels of frame options.start). with_masks=False skips BlazePose's
    segmentation (measured 1-3 ms of its ~20 ms a frame; masks then has shape
    (T, 0, 0)) for captures that need no person mask. report(stage, fraction,
    message) gets "frame i of n" about twice a second (the front ends add the whole capture's rate and ETA). Raises AvatarCaptureError when the video is
    unusable, when no person is found, or when the person is found in under half
    of the frames.
    """
    import cv2
    import mediapipe as mp

    info = probe_video(video_path)
    stop = check_frame_range(info, options.start, options.end)
    total = stop - options.start
    det_w, det_h, _ = detection_size(info, options.detect_max_side)
    ratio = np.array([info.width / det_w, info.height / det_h])
    mask_w, mask_h, mask_scale = _mask_size(info)
    user_box = None
    if options.box is not None:
        user_box = np.asarray(options.box, dtype=float) / np.tile(ratio, 2)
        if user_box[2] <= 0 or user_box[3] <= 0 or user_box[0] >= det_w or user_box[1] >= det_h:
            raise AvatarCaptureError(f"{Path(info.path).name}: the subject box {tuple(options.box)} lies outside "
                                     f"the {info.width}x{info.height} frame")
    tracker = _SubjectTracker(det_w, det_h, user_box)

    indices = np.zeros(total, dtype=np.int64)
    pixels = np.full((total, 33, 2), np.nan)
    visibility = np.zeros((total, 33))
    world = np.full((total, 33, 3), np.nan)
    lost = np.ones(total, dtype=bool)
    masks = np.zeros((total, mask_h, mask_w) if with_masks else (total, 0, 0), dtype=np.uint8)
    # Detection-image pixel centre -> mask pixel centre: mask = to_mask_scale * image + to_mask_offset.
    to_mask_scale = ratio / mask_scale
    to_mask_offset = 0.5 * to_mask_scale - 0.5
    blank = np.zeros((CROP_PIXELS, CROP_PIXELS, 3), dtype=np.uint8)

    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                                  enable_segmentation=with_masks, smooth_segmentation=False,
                                  min_detection_confidence=0.5, min_tracking_confidence=0.5)
    frames = _prefetch(iter_frames(info, options.start, stop, options.detect_max_side))
    last_report = time.perf_counter()
    count = 0
    try:
        for count, frame in enumerate(frames, start=1):
            t = count - 1
            indices[t] = frame.index
            result, crop, points = _run(pose, tracker, frame.image_bgr)
            if points is None:
                tracker.missed(None)
            elif not tracker.accepts(points):
                tracker.missed(points)
                pose.process(blank)  # BlazePose's own tracking must let go of the other person
            else:
                if tracker.found(points):
                    # Re-anchored: detect again on the new crop, so BlazePose tracks in it from here.
                    pose.process(blank)
                    again = _run(pose, tracker, frame.image_bgr)
                    if again[2] is not None and tracker.accepts(again[2]):
                        tracker.found(again[2])
                        result, crop, points = again
                lost[t] = False
                pixels[t] = points * ratio - 0.5
                visibility[t] = [p.visibility for p in result.pose_landmarks.landmark]
                world[t] = [(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark]
                if with_masks and result.segmentation_mask is not None:
                    to_mask = crop.crop_to_mask_matrix(to_mask_scale, to_mask_offset)
                    soft = cv2.warpAffine(result.segmentation_mask, to_mask, (mask_w, mask_h), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_CONSTANT)
                    masks[t] = np.where(soft > 0.5, 255, 0)
            now = time.perf_counter()
            if report is not None and now - last_report >= REPORT_EVERY_S:
                last_report = now
                report("keypoints", count / total, f"frame {count} of {total}")
    finally:  # also on a cancel (an exception from report or a signal): stop decoding, free the graph
        frames.close()
        pose.close()
    if report is not None:
        report("keypoints", 1.0, f"frame {count} of {total}")

    name = Path(info.path).name
    if count < MIN_CAPTURE_FRAMES:
        raise AvatarCaptureError(f"{name}: only {count} frame(s) could be read from frame {options.start} on; "
                                 f"a capture needs at least {MIN_CAPTURE_FRAMES}")
    lost = lost[:count]
    found = int((~lost).sum())
    if found == 0:
        raise AvatarCaptureError(f"no person found in {name}" + (" inside the subject box" if options.box else ""))
    if 2 * found < count:
        raise AvatarCaptureError(f"{name}: the person was found in only {found} of {count} frames "
                                 f"(a capture needs at least half)")
    return Keypoints(video=info, frame_indices=indices[:count], pixels=pixels[:count], visibility=visibility[:count],
                     world=world[:count], lost=lost, masks=masks[:count], mask_scale=float(mask_scale))

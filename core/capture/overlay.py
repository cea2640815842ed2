"""The capture drawn over its own video: the first thing a user looks at to judge a capture.

Each video frame of the clip gets the fitted body projected through the clip's
camera: a translucent silhouette of the body mesh (when the rig is given), the
skeleton between the landmarks (left side blue, right side orange, centre
white), the feet marked where they are in contact with the ground, the
detector's own 2D keypoints as small dots (so fit and detection can be told
apart), and a "subject lost" banner on frames where the tracker lost the person
(their pose there is bridged by the fit, not seen).

The silhouette is the union of one convex hull per bone (vertices grouped by
their strongest skin weight), filled with cv2.fillConvexPoly: a few dozen
polygons per frame instead of rasterising 27k triangles, and close to the true
outline because each bone's piece of skin is nearly convex. cv2 is imported inside
the functions so that ``core`` imports without it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic_files import atomic_output
from ..clip import MotionClip
from ..errors import AvatarCaptureError, FileFormatError
from ..kinematics import skin_points
from ..landmarks import CONTACT_NAMES
from ..rig import RiggedBody
from .video import iter_frames, probe_video

Report = Callable[[str, float, str], None]

OUTPUT_MAX_SIDE = 1280  # overlays are for looking at: larger videos are written at this size
SKIN_CHUNK_FRAMES = 16  # frames skinned at once (bounds memory: chunk x vertices x bones)
OUTLINE_DIRECTIONS = 48  # directions whose extreme vertices stand for a body part's outline
CONTACT_THRESHOLD = 0.5
KEYPOINT_MIN_VISIBILITY = 0.5
SILHOUETTE_ALPHA = 0.35
# BGR colours
LEFT, RIGHT, CENTRE = (235, 140, 40), (40, 140, 245), (235, 235, 235)
SILHOUETTE, CONTACT, KEYPOINT, LOST = (200, 200, 120), (60, 220, 60), (0, 230, 255), (40, 40, 220)

# Bones drawn between landmarks (names from core/landmarks.py), with their colour.
BONES = (
    (("nose", "left_eye"), LEFT), (("left_eye", "left_ear"), LEFT),
    (("nose", "right_eye"), RIGHT), (("right_eye", "right_ear"), RIGHT),
    (("nose", "neck"), CENTRE), (("neck", "pelvis"), CENTRE),
    (("neck", "left_shoulder"), LEFT), (("left_shoulder", "left_elbow"), LEFT), (("left_elbow", "left_wrist"), LEFT),
    (("neck", "right_shoulder"), RIGHT), (("right_shoulder", "right_elbow"), RIGHT),
    (("right_elbow", "right_wrist"), RIGHT),
    (("pelvis", "left_hip"), LEFT), (("left_hip", "left_knee"), LEFT), (("left_knee", "left_ankle"), LEFT),
    (("left_ankle", "left_heel"), LEFT), (("left_heel", "left_toe"), LEFT), (("left_ankle", "left_toe"), LEFT),
    (("pelvis", "right_hip"), RIGHT), (("right_hip", "right_knee"), RIGHT), (("right_knee", "right_ankle"), RIGHT),
    (("right_ankle", "right_heel"), RIGHT), (("right_heel", "right_toe"), RIGHT), (("right_ankle", "right_toe"), RIGHT),
)


@dataclass(frozen=True)
class OverlayStats:
    """What write_overlay wrote: frames, output size (width, height), seconds and ms per frame."""

    path: Path
    frames: int
    size: tuple[int, int]
    seconds: float

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / max(1, self.frames)


def project(points_world: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (T, N, 2) and camera depths (T, N) of world points (T, N, 3) seen by OpenCV cameras
    K (3, 3) and world_to_cam (T, 4, 4); pixels are NaN behind the camera."""
    cam = np.einsum("tij,tnj->tni", world_to_cam[:, :3, :3], points_world) + world_to_cam[:, None, :3, 3]
    depth = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.einsum("ij,tnj->tni", K, cam)
        pixels = uv[..., :2] / uv[..., 2:3]
    pixels[depth <= 1e-6] = np.nan
    return pixels, depth


def write_overlay(
    video_path: str | Path, clip: MotionClip, out_path: str | Path, rig: RiggedBody | None = None,
    max_side: int = OUTPUT_MAX_SIDE, report: Report | None = None,
) -> OverlayStats:
    """Write out_path (.mp4, atomically): every video frame the clip covers with the clip drawn over it.

    Clip frame t is drawn on video frame clip.extras["source_frames"][t] (else t); the clip's
    camera projects it (its image size must be the video's upright size). rig, the body the
    clip was made for, adds the mesh silhouette. Output at the video's size, shrunk so its
    longer side is at most max_side, and at the video's frame rate.
    """
    import cv2

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".mp4":
        raise FileFormatError(out_path, "the overlay video must be an .mp4 file")
    if clip.camera is None:
        raise AvatarCaptureError("the clip has no camera, so it cannot be drawn over a video")
    if rig is not None and rig.skeleton.joint_names != clip.skeleton.joint_names:
        raise AvatarCaptureError(f"the {rig.body_model} body's skeleton is not the clip's")
    info = probe_video(video_path)
    if tuple(clip.camera.image_size) != (info.width, info.height):
        raise AvatarCaptureError(
            f"{video_path}: the clip's camera sees {clip.camera.image_size[0]}x{clip.camera.image_size[1]} "
            f"pixels but the video is {info.width}x{info.height}: not the clip's video")
    frames_of = source_frames(clip)
    clip_frame = {int(v): t for t, v in enumerate(frames_of)}
    first, end = int(frames_of.min()), int(frames_of.max()) + 1

    drawer = _Drawer(clip, rig)
    started = time.perf_counter()
    written, size = 0, (0, 0)
    with atomic_output(out_path) as target:
        writer = None
        try:
            for frame in iter_frames(info, first, end, max_side):
                image = frame.image_bgr
                if writer is None:
                    size = (image.shape[1], image.shape[0])
                    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), float(info.fps), size)
                    if not writer.isOpened():
                        raise FileFormatError(out_path, "OpenCV cannot write an mp4 video here")
                t = clip_frame.get(frame.index)
                if t is not None:
                    image = drawer.draw(image.copy(), t, 1.0 / frame.scale)
                writer.write(image)
                written += 1
                if report is not None and written % 10 == 0:
                    report("overlay", written / (end - first), f"frame {written} of {end - first}")
        finally:
            if writer is not None:
                writer.release()
        if written == 0:
            raise AvatarCaptureError(f"{video_path}: no frames could be read for the overlay")
    seconds = time.perf_counter() - started
    if report is not None:
        report("overlay", 1.0, f"{written} frames, {1000 * seconds / written:.1f} ms per frame")
    return OverlayStats(out_path, written, size, seconds)


def outline_vertices(rig: RiggedBody, directions: int = OUTLINE_DIRECTIONS) -> tuple[np.ndarray, list[np.ndarray]]:
    """The few vertices that can lie on the body's outline, grouped in parts: (vertices (N,), parts).

    A part is the vertices whose strongest skin weight is one bone; its candidates are
    the vertices furthest along `directions` directions spread over the sphere (its
    rest-pose extremes, which stay its extremes as the bone moves it nearly rigidly).
    parts[i] indexes into vertices. Skinning ~5k candidates instead of every vertex
    keeps the silhouette cheap while using the exact skinned positions.
    """
    golden = np.pi * (3.0 - np.sqrt(5.0))
    z = 1.0 - 2.0 * (np.arange(directions) + 0.5) / directions
    ring = np.sqrt(1.0 - z * z)
    angle = golden * np.arange(directions)
    sphere = np.stack((ring * np.cos(angle), ring * np.sin(angle), z), axis=1)
    skin_indices = np.asarray(rig.skin_indices)
    strongest = skin_indices[np.arange(len(skin_indices)), np.argmax(rig.skin_weights, axis=1)]
    chosen, parts = [], []
    count = 0
    for bone in np.unique(strongest):
        members = np.flatnonzero(strongest == bone)
        if len(members) < 3:
            continue
        extremes = members[np.unique(np.argmax(rig.vertices_rest[members] @ sphere.T, axis=0))]
        chosen.append(extremes)
        parts.append(np.arange(count, count + len(extremes)))
        count += len(extremes)
    return (np.concatenate(chosen) if chosen else np.zeros(0, np.int64)), parts


def source_frames(clip: MotionClip) -> np.ndarray:
    """Video frame number (T,) of each clip frame: the clip's 'source_frames', else 0..T-1."""
    frames = clip.extras.get("source_frames")
    return np.arange(clip.frame_count) if frames is None else np.asarray(frames, dtype=np.int64).reshape(-1)


class _Drawer:
    """Draws clip frame t onto an image; projects landmarks up front and skins the mesh in chunks."""

    def __init__(self, clip: MotionClip, rig: RiggedBody | None) -> None:
        camera = clip.camera
        self.clip, self.rig = clip, rig
        self.K = np.asarray(camera.K, dtype=np.float64)
        self.world_to_cam = np.asarray(camera.world_to_cam, dtype=np.float64)
        if len(self.world_to_cam) == 1:
            self.world_to_cam = np.repeat(self.world_to_cam, clip.frame_count, axis=0)
        self.landmarks, _ = project(clip.landmarks_world, self.K, self.world_to_cam)
        index = {name: i for i, name in enumerate(clip.landmark_names)}
        self.bones = [((index[a], index[b]), colour) for (a, b), colour in BONES if a in index and b in index]
        self.feet = [[index[f"{side}_{part}"] for part in ("heel", "toe") if f"{side}_{part}" in index]
                     for side in ("left", "right")]
        self.contact_columns = [[CONTACT_NAMES.index(f"{side}_{part}") for part in ("heel", "toe")]
                                for side in ("left", "right")]
        extras = clip.extras
        self.keypoints = extras.get("keypoints_2d")
        self.visibility = extras.get("keypoints_2d_visibility")
        lost = extras.get("frame_lost")
        self.lost = np.zeros(clip.frame_count, bool) if lost is None else np.asarray(lost, bool).reshape(-1)
        if rig is not None:
            self.outline_vertices, self.parts = outline_vertices(rig)
        self._chunk_start, self._chunk = -1, None

    def _vertex_pixels(self, t: int) -> np.ndarray:
        """Projected outline vertices (N, 2) of clip frame t (NaN behind the camera)."""
        start = t - t % SKIN_CHUNK_FRAMES
        if start != self._chunk_start:
            stop = min(self.clip.frame_count, start + SKIN_CHUNK_FRAMES)
            rig, chosen = self.rig, self.outline_vertices
            frames = rig.pose(self.clip.rotations[start:stop], self.clip.root_translation[start:stop])
            posed = skin_points(rig.vertices_rest[chosen], rig.skin_indices[chosen], rig.skin_weights[chosen],
                                rig.deformation(frames))
            self._chunk, _ = project(posed, self.K, self.world_to_cam[start:stop])
            self._chunk_start = start
        return self._chunk[t - start]

    def draw(self, image: np.ndarray, t: int, zoom: float) -> np.ndarray:
        """image (h, w, 3) BGR of clip frame t's video frame, at zoom image pixels per full-res pixel."""
        import cv2

        height, width = image.shape[:2]
        thickness = max(1, round(max(width, height) / 400))
        if self.rig is not None:
            _silhouette(image, self._vertex_pixels(t) * zoom, self.parts, thickness)
        lost = bool(self.lost[t])
        points = self.landmarks[t] * zoom
        for (a, b), colour in self.bones:
            if np.all(np.isfinite(points[[a, b]])):
                cv2.line(image, _pt(points[a]), _pt(points[b]), (150, 150, 150) if lost else colour,
                         thickness + 1, cv2.LINE_AA)
        for i in range(len(points)):
            if np.all(np.isfinite(points[i])):
                cv2.circle(image, _pt(points[i]), thickness + 1, CENTRE, -1, cv2.LINE_AA)
        for foot, columns in zip(self.feet, self.contact_columns):
            if self.clip.contacts[t, columns].max() > CONTACT_THRESHOLD:
                for i in foot:
                    if np.all(np.isfinite(points[i])):
                        cv2.circle(image, _pt(points[i]), 3 * thickness + 2, CONTACT, -1, cv2.LINE_AA)
        if self.keypoints is not None:
            seen = np.ones(len(self.keypoints[t]), bool) if self.visibility is None else (
                self.visibility[t] > KEYPOINT_MIN_VISIBILITY)
            for point in self.keypoints[t][seen & np.all(np.isfinite(self.keypoints[t]), axis=1)] * zoom:
                cv2.circle(image, _pt(point), max(1, thickness), KEYPOINT, -1, cv2.LINE_AA)
        if lost:
            scale = max(0.5, height / 700)
            cv2.rectangle(image, (0, 0), (int(260 * scale), int(40 * scale)), LOST, -1)
            cv2.putText(image, "subject lost", (int(10 * scale), int(28 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.9 * scale, (255, 255, 255), max(1, round(2 * scale)), cv2.LINE_AA)
        return image


def _silhouette(image: np.ndarray, pixels: np.ndarray, parts: list[np.ndarray], thickness: int) -> None:
    """Blend the union of the parts' convex hulls (pixels (V, 2)) into image, with an outline."""
    import cv2

    mask = np.zeros(image.shape[:2], np.uint8)
    limit = 4.0 * max(image.shape)  # points far outside the frame (or behind the camera) only cost time
    usable = np.all(np.isfinite(pixels) & (np.abs(pixels) < limit), axis=1)
    rounded = np.round(np.nan_to_num(pixels)).astype(np.int32)
    for part in parts:
        points = rounded[part[usable[part]]]
        if len(points) >= 3:
            cv2.fillConvexPoly(mask, cv2.convexHull(points), 255, cv2.LINE_8)
    inside = mask > 0
    if not inside.any():
        return
    tint = np.asarray(SILHOUETTE, np.float32)
    image[inside] = (image[inside] * (1.0 - SILHOUETTE_ALPHA) + tint * SILHOUETTE_ALPHA).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, SILHOUETTE, thickness, cv2.LINE_AA)


def _pt(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))

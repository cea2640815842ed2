"""A capture's source video behind its camera, and its events as timeline markers.

Why: the first check after a capture is looking through the capture camera
with the video playing behind the body; if the limbs sit on the person's limbs
on every frame, the capture is right. The video is loaded as a MovieClip (the
clip editor's datablock, which plays video frames in step with the scene) and
shown as the camera's background, stretched over the camera frame exactly as
the clip's pixels map onto it (the camera's resolution is the video's).

Frame alignment: Blender shows movie frame (0-based) ``scene frame -
frame_start + frame_offset``, and the importer puts clip frame t on scene frame
t + FIRST_FRAME; clip frame t was fitted to video frame source_frames[t], so
frame_start = FIRST_FRAME and frame_offset = source_frames[0] line them up
whenever the source frames are consecutive (what a capture produces).

Timeline: contact starts (a foot touching down) and runs of frames where the
subject was lost become scene markers, so they show on every timeline, dope
sheet and graph editor without selecting anything.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..core.clip import MotionClip
from ..core.errors import AvatarCaptureError
from ..core.landmarks import CONTACT_NAMES
from .action import FIRST_FRAME

# A foot is down when its heel or toe contact (0..1) is above this.
CONTACT_THRESHOLD = 0.5
FOOT_MARKERS = (("left", "L foot down"), ("right", "R foot down"))
LOST_MARKER = "subject lost"
FOUND_MARKER = "subject found"


def source_video(clip: MotionClip) -> str | None:
    """The absolute path of the video the clip was captured from, when the clip records it."""
    value = clip.extras.get("source_video")
    return str(value) if value is not None and str(value) else None


def add_video_background(camera: bpy.types.Object, video_path: str | Path,
                         first_video_frame: int) -> bpy.types.MovieClip:
    """Load video_path as a MovieClip playing video frame first_video_frame on scene frame
    FIRST_FRAME, and show it behind camera (an object with camera data) in camera view.

    Raises AvatarCaptureError naming the file when Blender cannot open it.
    """
    path = Path(video_path)
    if not path.is_file():
        raise AvatarCaptureError(f"{path}: video not found (it is shown behind the capture camera)")
    try:
        movie = bpy.data.movieclips.load(str(path.resolve()), check_existing=False)
    except RuntimeError as exc:
        raise AvatarCaptureError(f"{path}: Blender cannot open this video ({exc})") from None
    if movie.frame_duration < 1:
        bpy.data.movieclips.remove(movie)
        raise AvatarCaptureError(f"{path}: Blender reads no frames from this video")
    movie.frame_start = FIRST_FRAME
    movie.frame_offset = int(first_video_frame)
    data = camera.data
    data.show_background_images = True
    background = data.background_images.new()
    background.source = "MOVIE_CLIP"
    background.clip = movie
    background.use_camera_clip = False
    background.frame_method = "STRETCH"  # the camera frame is the video frame, pixel for pixel
    background.alpha = 1.0
    background.display_depth = "BACK"
    return movie


def consecutive(frames: np.ndarray) -> bool:
    """True when frames count up by one (a constant offset then aligns the video)."""
    return bool(np.all(np.diff(frames) == 1))


def contact_starts(clip: MotionClip) -> dict[str, np.ndarray]:
    """Clip frames (0-based) where each foot ("left", "right") touches down: its heel or toe
    contact rises above CONTACT_THRESHOLD (frame 0 counts when the foot starts down)."""
    starts = {}
    for side, _ in FOOT_MARKERS:
        columns = [CONTACT_NAMES.index(f"{side}_{part}") for part in ("heel", "toe")]
        down = np.asarray(clip.contacts)[:, columns].max(axis=1) > CONTACT_THRESHOLD
        starts[side] = np.flatnonzero(down & ~np.concatenate(([False], down[:-1])))
    return starts


def lost_runs(clip: MotionClip) -> list[tuple[int, int]]:
    """(first, end) clip frames of each run of frames where the subject was lost (end exclusive)."""
    lost = clip.extras.get("frame_lost")
    if lost is None:
        return []
    lost = np.asarray(lost, dtype=bool).reshape(-1)
    edges = np.diff(np.concatenate(([0], lost.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def mark_timeline(scene: bpy.types.Scene, clip: MotionClip) -> list[bpy.types.TimelineMarker]:
    """Add scene markers for each foot's touch-downs and each lost run (start and end); returns them.

    Markers sit on the importer's frames (clip frame t -> scene frame t + FIRST_FRAME).
    """
    markers = []
    for side, name in FOOT_MARKERS:
        for t in contact_starts(clip)[side]:
            markers.append(scene.timeline_markers.new(name, frame=int(t) + FIRST_FRAME))
    for first, end in lost_runs(clip):
        markers.append(scene.timeline_markers.new(LOST_MARKER, frame=first + FIRST_FRAME))
        if end < clip.frame_count:
            markers.append(scene.timeline_markers.new(FOUND_MARKER, frame=end + FIRST_FRAME))
    return markers

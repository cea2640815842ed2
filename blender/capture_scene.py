"""A captured clip into a Blender scene: the avatar, its camera with the video behind it, and
the timeline markers, all or nothing.

Used by the Capture operator and by ``avatarcap capture --blend``. import_avatar
already rolls itself back on failure; this adds the video background and the
markers to the same transaction, so a video Blender cannot open leaves the
scene exactly as it was rather than with an avatar and no background.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from ..core.capture.overlay import source_frames
from ..core.clip import MotionClip
from ..core.rig import RiggedBody
from . import datablocks
from .import_scene import import_avatar, restore_scene_settings, scene_settings
from .video_background import add_video_background, consecutive, mark_timeline, source_video


@dataclass(frozen=True)
class CaptureScene:
    """What import_capture made: the armature, the camera (None when the clip has none), the
    video's MovieClip (None when not shown) and why it is not shown ("" when it is)."""

    armature: bpy.types.Object
    camera: bpy.types.Object | None
    movie: bpy.types.MovieClip | None
    background_note: str


def import_capture(
    target: bpy.types.Context | bpy.types.Scene, clip: MotionClip, rig: RiggedBody | None = None,
    name: str | None = None, video_path: str | Path | None = None,
) -> CaptureScene:
    """import_avatar(target, clip, rig, name), then the video behind the clip's camera and the
    contact / lost-subject markers on the timeline; on any failure nothing is left behind.

    video_path defaults to the clip's recorded source video. The background is skipped (with
    background_note saying why) when the clip has no camera or video, or when its source frames
    are not consecutive (no constant offset could align them). Raises AvatarCaptureError when
    the video cannot be opened.
    """
    scene = target.scene if isinstance(target, bpy.types.Context) else target
    video = video_path or source_video(clip)
    before = datablocks.snapshot()
    settings = scene_settings(scene)
    markers_before = {marker.as_pointer() for marker in scene.timeline_markers}
    try:
        armature = import_avatar(target, clip, rig, name)
        cameras = [obj for obj in armature.users_collection[0].objects if obj.type == "CAMERA"]
        camera = cameras[0] if cameras else None
        movie, note = None, ""
        frames = source_frames(clip)
        if camera is None:
            note = "the clip has no camera"
        elif video is None:
            note = "the clip does not name its video"
        elif not consecutive(frames):
            note = "the clip's video frames are not consecutive, so the video cannot be aligned"
        else:
            movie = add_video_background(camera, video, int(frames[0]))
        mark_timeline(scene, clip)
    except BaseException:
        for marker in [m for m in scene.timeline_markers if m.as_pointer() not in markers_before]:
            scene.timeline_markers.remove(marker)
        datablocks.remove_new(before)
        restore_scene_settings(scene, settings)
        raise
    return CaptureScene(armature, camera, movie, note)


def describe(result: CaptureScene) -> str:
    """One line for a report: what the background shows."""
    if result.movie is not None:
        return f"video '{Path(result.movie.filepath).name}' behind camera '{result.camera.name}'"
    return f"no video background ({result.background_note})"


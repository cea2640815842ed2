"""Capture from video: a file browser with the capture options, a worker job, then the import.

The options are operator properties drawn in the file browser's side panel, so
Blender remembers the last ones used (like any importer's). The capture runs in
a worker process ("capture.video", core/capture/jobs.py) with its stage,
frames per second and ETA in the sidebar and the status bar, and Esc or Cancel
ending it. The scene changes only in job_finished, through
blender.capture_scene.import_capture: armature, body, camera with the video as
its background, and timeline markers, all or nothing; the 3D views then look
through the capture camera. The clip file is kept in the cache's "captures"
folder so the capture can be imported again later.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntVectorProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..blender.capture_scene import describe, import_capture
from ..core.capture.options import CaptureOptions
from ..core.clip import load_clip
from ..core.errors import AvatarCaptureError
from ..core.rig import load_rig
from ..preferences import compute_settings
from .jobs import JobOperator

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm")
CAPTURES_FOLDER = "captures"

_CAMERA_ITEMS = (
    ("STATIC", "Static", "The camera stands still (tripod)"),
    ("MOVING", "Moving", "The camera pans or walks: its motion is estimated from the background"),
)
_QUALITY_ITEMS = (
    ("FAST", "Fast", "Fewer optimisation steps: quickest, a little more jitter"),
    ("BALANCED", "Balanced", "The default trade-off between speed and smoothness"),
    ("BEST", "Best", "More optimisation steps: slowest, smoothest"),
)


class AVATAR_OT_capture_video(JobOperator, bpy.types.Operator, ImportHelper):
    """Capture the motion of the person in a video as an animated avatar, with the video behind its camera"""

    bl_idname = "avatar.capture_video"
    bl_label = "Capture from Video"
    bl_options = {"REGISTER", "UNDO"}
    job_kind = "capture.video"

    filename_ext = ""
    filter_glob: StringProperty(default=";".join(f"*{ext}" for ext in VIDEO_EXTENSIONS), options={"HIDDEN"})
    first_frame: IntProperty(
        name="First Frame", min=0, default=0,
        description="First video frame to capture, counting from 0")
    last_frame: IntProperty(
        name="Last Frame", min=0, default=0,
        description="Last video frame to capture (included), counting from 0; 0 = to the end of the video")
    field_of_view: FloatProperty(
        name="Field of View", subtype="ANGLE", min=0.0, max=math.radians(170.0), default=0.0,
        description="Horizontal field of view of the camera that filmed the video; 0 = a typical phone "
                    "camera's, refined by the fit")
    camera_motion: EnumProperty(name="Camera", items=_CAMERA_ITEMS, default="STATIC",
                                description="Whether the camera that filmed the video moved")
    use_subject_box: BoolProperty(
        name="Subject Box", default=False,
        description="Capture the person inside a box on the first frame instead of the most prominent one")
    subject_box: IntVectorProperty(
        name="Box", size=4, min=0, default=(0, 0, 0, 0),
        description="Left, top, right and bottom edges of the box, in pixels of the first frame "
                    "(upright, full resolution, from the top left corner)")
    quality: EnumProperty(name="Quality", items=_QUALITY_ITEMS, default="BALANCED",
                          description="How hard the fit works")
    write_preview: BoolProperty(
        name="Overlay Video", default=False,
        description="Also write the video with the fitted body drawn over it, next to the clip file")
    # Set by invoke: the file browser then calls execute, which should not block the UI.
    from_ui: BoolProperty(default=False, options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to capture")
            return False
        return super().poll(context)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        column = layout.column(heading="Frames", align=True)
        column.prop(self, "first_frame", text="First")
        column.prop(self, "last_frame", text="Last")
        column = layout.column(heading="Camera")
        column.prop(self, "camera_motion", text="Camera")
        column.prop(self, "field_of_view")
        column = layout.column(heading="Subject")
        column.prop(self, "use_subject_box", text="Box on First Frame")
        row = column.row()
        row.enabled = self.use_subject_box
        row.prop(self, "subject_box", text="")
        layout.prop(self, "quality")
        layout.prop(self, "write_preview")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self.from_ui = True
        return ImportHelper.invoke(self, context, event)

    def capture_options(self) -> CaptureOptions:
        """The CaptureOptions these properties describe; AvatarCaptureError when they make no sense."""
        return CaptureOptions(
            start=self.first_frame,
            end=self.last_frame + 1 if self.last_frame > 0 else None,
            fov_degrees=math.degrees(self.field_of_view) if self.field_of_view > 0 else None,
            moving_camera=self.camera_motion == "MOVING",
            box=tuple(float(v) for v in self.subject_box) if self.use_subject_box else None,
            quality=self.quality.lower(),
        )

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            if not os.path.isfile(self.filepath):
                raise AvatarCaptureError(f"{self.filepath}: video not found")
            self.capture_options()
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if self.from_ui and not bpy.app.background:
            return JobOperator.invoke(self, context, None)  # modal: progress in the UI, Esc cancels
        return JobOperator.execute(self, context)

    def job_params(self, context: bpy.types.Context) -> dict:
        video = Path(self.filepath).resolve()
        folder = compute_settings(context).cache_path / CAPTURES_FOLDER
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AvatarCaptureError(f"{folder}: cannot create the captures folder ({exc.strerror or exc})") from None
        stem = f"{bpy.path.clean_name(video.stem)}-{time.strftime('%Y%m%d-%H%M%S')}"
        return {
            "video": str(video),
            "output": str(folder / f"{stem}.npz"),
            "preview": str(folder / f"{stem}_overlay.mp4") if self.write_preview else None,
            "options": self.capture_options().to_dict(),
        }

    def job_finished(self, context: bpy.types.Context, result: dict) -> None:
        """Import the captured clip with its body, camera, video background and markers (all or nothing)."""
        clip = load_clip(result["clip"])
        name = Path(self.filepath).stem
        try:
            made = import_capture(context, clip, load_rig(result["rig"]), name=name, video_path=self.filepath)
        except AvatarCaptureError as exc:
            raise AvatarCaptureError(f"{self.filepath}: {exc}") from exc
        if made.movie is not None:
            _look_through_camera(context)
        lost = len(result["lost_frames"])
        summary = (f"Captured '{made.armature.name}': {result['frames']} frames at "
                   f"{result['fps_processed']:.1f} frames/s, {describe(made)}; clip {result['clip']}")
        if result.get("preview"):
            summary += f", overlay {result['preview']}"
        self.report({"INFO"}, summary)
        if lost:
            self.report({"WARNING"}, f"The subject was lost on {lost} of {result['frames']} frames "
                                     "(marked 'subject lost' on the timeline)")


def _look_through_camera(context: bpy.types.Context) -> None:
    """Put the window's 3D views in camera view, where the video plays behind the body
    (what the user looks at first); nothing to do without a window (background mode)."""
    window = context.window
    if window is None:
        return
    for area in window.screen.areas:
        if area.type == "VIEW_3D":
            area.spaces.active.region_3d.view_perspective = "CAMERA"


CLASSES = (AVATAR_OT_capture_video,)

"""Import a motion clip (.npz): armature, action, camera and, for a body-model clip, the skinned body.

The clip is read and validated here, before anything else happens, so a bad
file costs one error line and leaves the scene untouched. The body mesh needs a
RiggedBody made by the body model, which runs in a worker job ("body.rig") so
torch and anny never load into Blender; the scene changes only when the job
has finished, in job_finished, through blender.import_scene (all or nothing).
A skeleton-only clip (body_model "none") needs no job and is imported at once.
"""
from __future__ import annotations

import os
from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..blender.import_scene import import_avatar
from ..core.clip import MotionClip, load_clip
from ..core.errors import AvatarCaptureError
from ..core.rig import RiggedBody, load_rig
from .jobs import JobOperator

SKELETON_ONLY = "none"


class AVATAR_OT_import_clip(JobOperator, bpy.types.Operator, ImportHelper):
    """Import an Avatar Capture motion clip (.npz) as an animated armature with its body and camera"""

    bl_idname = "avatar.import_clip"
    bl_label = "Import Motion Clip"
    bl_options = {"REGISTER", "UNDO"}
    job_kind = "body.rig"

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    # Set by invoke: the file browser then calls execute, which should not block the UI.
    from_ui: BoolProperty(default=False, options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode to import a clip")
            return False
        return super().poll(context)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self.from_ui = True
        return ImportHelper.invoke(self, context, event)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            clip = load_clip(self.filepath)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if clip.body_model == SKELETON_ONLY:
            try:
                self._import(context, clip, None)
            except AvatarCaptureError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            return {"FINISHED"}
        if self.from_ui and not bpy.app.background:
            return JobOperator.invoke(self, context, None)  # modal: progress in the UI, Esc cancels
        return JobOperator.execute(self, context)

    def job_params(self, context: bpy.types.Context) -> dict:
        return {"clip_path": os.path.abspath(self.filepath)}

    def job_finished(self, context: bpy.types.Context, result: dict) -> None:
        """Build the scene from the clip and the rig the job made; JobOperator reports an AvatarCaptureError."""
        self._import(context, load_clip(self.filepath), load_rig(result["rig_path"]))

    def _import(self, context: bpy.types.Context, clip: MotionClip, rig: RiggedBody | None) -> None:
        try:
            armature = import_avatar(context, clip, rig, name=Path(self.filepath).stem)
        except AvatarCaptureError as exc:
            raise AvatarCaptureError(f"{self.filepath}: {exc}") from exc
        body = "skeleton only" if rig is None else f"{rig.body_model} body"
        self.report({"INFO"}, f"Imported '{armature.name}' ({body}, {clip.frame_count} frames at {clip.fps:g} fps)")


CLASSES = (AVATAR_OT_import_clip,)

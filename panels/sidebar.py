"""The "Avatar" tab of the 3D viewport sidebar: the running job, Capture from Video and the other actions.

The job box shows what the worker is doing (stage, progress bar, message, Cancel) and,
after a failure, the one-line error with a button that opens the job's log, so users
never have to look for a console.
"""
from __future__ import annotations

import textwrap

import bpy

from ..operators.jobs import active_runner

_PIXELS_PER_CHAR = 7  # rough width of a UI character, to wrap long lines to the sidebar


def wrapped_labels(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, icon: str) -> None:
    scale = context.preferences.system.ui_scale or 1.0  # 0 without a window (background)
    width = max(20, int(context.region.width / (_PIXELS_PER_CHAR * scale)))
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


class VIEW3D_PT_avatar_capture(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Avatar"
    bl_label = "Avatar Capture"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        job = context.window_manager.avatar_capture_job
        if active_runner() is not None:
            box = layout.box()
            box.label(text=job.title, icon="SORTTIME")
            box.progress(factor=job.fraction, type="BAR", text=f"{job.stage} {job.fraction:.0%}")
            if job.message:
                wrapped_labels(box, context, job.message, "BLANK1")
            box.operator("avatar.cancel_job", icon="CANCEL")
        elif job.last_error:
            box = layout.box()
            box.alert = True
            wrapped_labels(box, context, f"{job.title} failed: {job.last_error}", "ERROR")
            box.alert = False
            box.operator("wm.path_open", text="Open log", icon="TEXT").filepath = job.log_path

        capture = layout.column()
        capture.scale_y = 1.4  # the headline action
        capture.operator("avatar.capture_video", text="Capture from Video", icon="FILE_MOVIE")
        col = layout.column(align=True)
        col.operator("avatar.build_body", icon="OUTLINER_OB_ARMATURE")
        col.operator("avatar.import_clip", icon="IMPORT")
        col.operator("avatar.export", icon="EXPORT")
        layout.operator("avatar.check_setup", icon="CHECKMARK")


CLASSES = (VIEW3D_PT_avatar_capture,)

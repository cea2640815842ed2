"""Runtime job state of the add-on: ``window_manager.avatar_capture_job``.

The sidebar draws the running job's stage, progress bar and message, and the last
error with the path of its log, from here. It lives on the window manager, not on
the scene, because it describes this Blender session rather than the user's data:
a running or cancelled job then never changes the scene, never enters the undo
history and never marks the file as modified. Whether a job is really running is
decided by the runtime job registry in operators/jobs.py, not by ``running``.
"""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, PointerProperty, StringProperty


class AvatarJobProps(bpy.types.PropertyGroup):
    running: BoolProperty(name="Running", description="A worker job is running", options=set())
    title: StringProperty(name="Job", description="What the running or last job does", options=set())
    stage: StringProperty(name="Stage", description="Current step of the job", options=set())
    fraction: FloatProperty(name="Progress", description="Fraction of the job done",
                            min=0.0, max=1.0, subtype="FACTOR", options=set())
    message: StringProperty(name="Message", description="Detail of the current step", options=set())
    last_error: StringProperty(name="Last error", description="Why the last job failed", options=set())
    log_path: StringProperty(name="Log", description="Log file of the running or last job",
                             subtype="FILE_PATH", options=set())


def register() -> None:
    bpy.utils.register_class(AvatarJobProps)
    bpy.types.WindowManager.avatar_capture_job = PointerProperty(type=AvatarJobProps)


def unregister() -> None:
    del bpy.types.WindowManager.avatar_capture_job
    bpy.utils.unregister_class(AvatarJobProps)

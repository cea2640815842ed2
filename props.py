"""Scene properties of the add-on: ``scene.avatar_capture``.

Job state lives here (``scene.avatar_capture.job``) so the sidebar can draw the stage,
the progress bar and the last error with the path of its log. Whether a job is
really running is decided by the runtime job registry in operators/jobs.py, not by
``job.running``: a saved file may carry a stale True, which loading clears.
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


class AvatarSceneProps(bpy.types.PropertyGroup):
    job: PointerProperty(type=AvatarJobProps)


CLASSES = (AvatarJobProps, AvatarSceneProps)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.avatar_capture = PointerProperty(type=AvatarSceneProps)


def unregister() -> None:
    del bpy.types.Scene.avatar_capture
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

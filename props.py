"""Runtime job state of the add-on (``window_manager.avatar_capture_job``) and the splat display
settings (``scene.avatar_splats``).

The sidebar draws the running job's stage, progress bar and message, and the last
error with the path of its log, from here. It lives on the window manager, not on
the scene, because it describes this Blender session rather than the user's data:
a running or cancelled job then never changes the scene, never enters the undo
history and never marks the file as modified. Whether a job is really running is
decided by the runtime job registry in operators/jobs.py, not by ``running``.

The splat display settings are on the scene (saved with the file, shared by its viewports):
they say how the viewport draw handler (blender/splat_draw.py) draws splat objects.
"""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, PointerProperty, StringProperty


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


def _redraw_viewports(_self, context: bpy.types.Context) -> None:
    for area in context.screen.areas if context.screen is not None else ():
        if area.type == "VIEW_3D":
            area.tag_redraw()


class AvatarSplatDisplay(bpy.types.PropertyGroup):
    show: BoolProperty(name="Show Splats", description="Draw splat objects in the 3D viewport",
                       default=True, update=_redraw_viewports)
    scale: FloatProperty(name="Splat Size", description="Multiplies the size of every splat as drawn",
                         default=1.0, min=0.05, soft_max=3.0, max=10.0, update=_redraw_viewports)
    sh_degree: IntProperty(name="Quality", description="Spherical harmonics bands used for view-dependent "
                           "colour: 0 = flat colour (fastest), 3 = full", default=3, min=0, max=3,
                           update=_redraw_viewports)


CLASSES = (AvatarJobProps, AvatarSplatDisplay)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.avatar_capture_job = PointerProperty(type=AvatarJobProps)
    bpy.types.Scene.avatar_splats = PointerProperty(type=AvatarSplatDisplay)


def unregister() -> None:
    del bpy.types.Scene.avatar_splats
    del bpy.types.WindowManager.avatar_capture_job
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

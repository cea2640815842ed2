"""Operators that run worker jobs: the JobOperator mixin, Build body model and Cancel.

Why a mixin: every heavy step (body build, capture, avatar fitting) is the same dance
- start a worker, show its progress in the sidebar and the status bar, let Esc or the
Cancel button end it, report errors with the log path - and only the job's parameters
and what to do with its result differ. A subclass sets ``job_kind`` and implements
``job_params`` and ``job_finished``:

    class AVATAR_OT_capture(JobOperator, bpy.types.Operator):
        bl_idname = "avatar.capture"
        bl_label = "Capture"
        bl_options = {'REGISTER', 'UNDO'}   # UNDO only when job_finished changes the scene
        job_kind = "capture.video"

        def job_params(self, context) -> dict: ...            # JSON data for the job
        def job_finished(self, context, result: dict) -> None: ...   # the only scene change

Invoked from the UI the job runs modally (a 0.1 s timer polls it); called from a script
or in background mode (execute) it runs synchronously. Only one job runs at a time.
A cancelled or failed job never reaches job_finished, so the scene stays untouched.
"""
from __future__ import annotations

import os
import sys

import bpy

from ..core.errors import AvatarCaptureError
from ..core.jobs.protocol import Event, Progress
from ..core.jobs.runner import JobRunner, JobState
from ..core.settings import ComputeSettings
from ..preferences import compute_settings

POLL_INTERVAL_S = 0.1

# The one running job of this Blender session (runtime only, never saved).
_active: JobRunner | None = None


def active_runner() -> JobRunner | None:
    return _active


def cancel_active_job() -> None:
    """End the running job, if any; the operator watching it then reports 'Cancelled'."""
    if _active is not None:
        _active.cancel()


def worker_extra_paths(settings: ComputeSettings) -> list[str]:
    """Blender's extension site-packages (where the bundled wheels are installed) when the
    worker runs Blender's own Python; an external compute Python brings its own packages."""
    if settings.python:
        return []
    site_packages = os.path.join(bpy.utils.user_resource("EXTENSIONS"), ".local", "lib",
                                 f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
    return [site_packages] if os.path.isdir(site_packages) else []


def _job_props(context: bpy.types.Context):
    return context.window_manager.avatar_capture_job


def _redraw_sidebars(context: bpy.types.Context) -> None:
    """Redraw only the 3D views' sidebars: tagging whole areas would redraw heavy viewports."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                for region in area.regions:
                    if region.type == "UI":
                        region.tag_redraw()


class JobOperator:
    """Mixin for bpy.types.Operator subclasses that run a worker job (see module docstring)."""

    job_kind: str = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if _active is not None:
            cls.poll_message_set("Another Avatar Capture job is running")
            return False
        return True

    def job_params(self, context: bpy.types.Context) -> dict:
        raise NotImplementedError

    def job_finished(self, context: bpy.types.Context, result: dict) -> None:
        raise NotImplementedError

    # -- shared steps -----------------------------------------------------------------
    def _start(self, context: bpy.types.Context) -> JobRunner:
        global _active
        settings = compute_settings(context)
        runner = JobRunner(self.job_kind, self.job_params(context), settings,
                           extra_paths=worker_extra_paths(settings))
        runner.start()
        _active = runner
        job = _job_props(context)
        job.running, job.title, job.stage, job.fraction = True, self.bl_label, "Starting", 0.0
        job.message, job.last_error, job.log_path = "", "", str(runner.log_path)
        return runner

    def _show(self, context: bpy.types.Context, events: list[Event]) -> None:
        job = _job_props(context)
        for event in events:
            if isinstance(event, Progress):
                job.stage, job.fraction, job.message = event.stage, event.fraction, event.message
        if context.workspace is not None:
            detail = f" - {job.message}" if job.message else ""
            context.workspace.status_text_set(
                f"{job.title}: {job.stage} {job.fraction:.0%}{detail}   (Esc: cancel)")
        _redraw_sidebars(context)

    def _end(self, context: bpy.types.Context, runner: JobRunner) -> set[str]:
        """Clear the job's UI, then report or hand the result over; returns the operator result."""
        global _active
        if _active is runner:
            _active = None
        timer = getattr(self, "_timer", None)
        if timer is not None:
            context.window_manager.event_timer_remove(timer)
            self._timer = None
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        job = _job_props(context)
        job.running = False
        _redraw_sidebars(context)
        if runner.state is JobState.CANCELLED:
            job.stage, job.message = "Cancelled", ""
            self.report({"INFO"}, "Cancelled")
            return {"CANCELLED"}
        if runner.state is JobState.FAILED:
            job.stage, job.last_error = "Failed", runner.error
            self.report({"ERROR"}, runner.error)
            return {"CANCELLED"}
        job.stage, job.fraction, job.message = "Done", 1.0, ""
        try:
            self.job_finished(context, runner.result)
        except AvatarCaptureError as exc:
            job.stage, job.last_error = "Failed", str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    # -- Blender entry points -----------------------------------------------------------
    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        try:
            self._runner = self._start(context)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_INTERVAL_S, window=context.window)
        wm.modal_handler_add(self)
        self._show(context, [])
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        runner = self._runner
        if event.type == "ESC" and event.value == "PRESS":
            runner.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        events, state = runner.poll()
        if not state.finished:
            if events:
                self._show(context, events)
            return {"PASS_THROUGH"}
        return self._end(context, runner)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal operator from outside (window closed, file loaded)."""
        self._runner.cancel()
        self._end(context, self._runner)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            runner = self._start(context)
        except AvatarCaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        stages: list[str] = []

        def print_stage(event: Event) -> None:  # background runs show their steps on the console
            if isinstance(event, Progress) and (not stages or stages[-1] != event.stage):
                stages.append(event.stage)
                print(f"{self.bl_label}: {event.stage}", flush=True)

        try:
            runner.wait(on_event=print_stage)
        finally:
            runner.cancel()  # only does something if the wait was interrupted (Ctrl+C)
        return self._end(context, runner)


class AVATAR_OT_build_body(JobOperator, bpy.types.Operator):
    """Build the body model chosen in the preferences (the first Anny build fills its cache, about a minute)"""

    bl_idname = "avatar.build_body"
    bl_label = "Build body model"
    bl_options = {"REGISTER"}  # the job only fills caches: no scene change, no undo step
    job_kind = "body.build"

    def job_params(self, context: bpy.types.Context) -> dict:
        return {}

    def job_finished(self, context: bpy.types.Context, result: dict) -> None:
        # result: core/body/jobs.py build_body: body_model, rig_path, seconds, vertices, joints
        self.report({"INFO"}, f"{result['body_model']} body ready: {result['joints']} bones, "
                              f"{result['vertices']} vertices ({result['seconds']:.1f} s)")


class AVATAR_OT_cancel_job(bpy.types.Operator):
    """Stop the running Avatar Capture job; the scene is left as it was"""

    bl_idname = "avatar.cancel_job"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        cancel_active_job()
        return {"FINISHED"}


@bpy.app.handlers.persistent
def _cancel_job_before_load(_dummy: object) -> None:
    """A job's result belongs to the file it was started in, never to the next one."""
    cancel_active_job()


@bpy.app.handlers.persistent
def _forget_stale_job_state(_dummy: object) -> None:
    """A file saved while a job ran may carry running=True; no job survives a load."""
    for window_manager in bpy.data.window_managers:
        job = getattr(window_manager, "avatar_capture_job", None)
        if job is not None and job.running:
            job.running = False


_HANDLERS = ((bpy.app.handlers.load_pre, _cancel_job_before_load), (bpy.app.handlers.load_post, _forget_stale_job_state))


def register_handlers() -> None:
    for handlers, function in _HANDLERS:
        handlers.append(function)


def unregister_handlers() -> None:
    cancel_active_job()  # no worker outlives the add-on
    for handlers, function in _HANDLERS:
        if function in handlers:
            handlers.remove(function)


CLASSES = (AVATAR_OT_build_body, AVATAR_OT_cancel_job)

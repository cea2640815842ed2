"""The Blender shell with real bpy: preferences, scene properties, the sidebar panel, the
"Check set-up" operator and job operators running real worker processes.

Blender cannot run modal operators headless (INVOKE falls back to execute), so the
modal path is driven by calling the mixin's modal() with TIMER and ESC events on a
plain-Python harness; everything it touches (scene, workspace, window manager, the
worker) is real.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import bpy
import addon_utils  # noqa: E402  (Blender's module, importable once bpy is)

from avatar_capture.core.jobs.registry import TEST_JOBS_ENV  # noqa: E402
from avatar_capture.core.settings import ComputeSettings  # noqa: E402

ADDON = "avatar_capture"
TESTS_DIR = Path(__file__).resolve().parent


def _raise(exc: Exception) -> None:
    raise exc


@pytest.fixture
def addon(monkeypatch: pytest.MonkeyPatch):
    """The add-on enabled the way Blender enables it (so its preferences exist), in a
    factory-fresh empty file; disabled again afterwards."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    module = addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    assert module is not None
    # Test-only job kinds (tests/fake_jobs.py) reach the worker through PYTHONPATH.
    monkeypatch.setenv(TEST_JOBS_ENV, "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    yield module
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)


@pytest.fixture
def fake_job_operators(addon):
    """Job operators over the fake job kinds, registered like any add-on operator."""
    from avatar_capture.operators.jobs import JobOperator

    class AVATAR_OT_test_count(JobOperator, bpy.types.Operator):
        bl_idname = "avatar.test_count"
        bl_label = "Test count"
        bl_options = {"REGISTER", "UNDO"}
        job_kind = "fake_jobs:count"
        steps: bpy.props.IntProperty(default=3)

        def job_params(self, context):
            return {"steps": self.steps}

        def job_finished(self, context, result):
            context.scene.collection.objects.link(bpy.data.objects.new(f"counted_{result['steps']}", None))

    class AVATAR_OT_test_user_error(JobOperator, bpy.types.Operator):
        bl_idname = "avatar.test_user_error"
        bl_label = "Test user error"
        job_kind = "fake_jobs:user_error"

        def job_params(self, context):
            return {"path": "/data/clip.npz"}

        def job_finished(self, context, result):
            raise AssertionError("a failed job must not reach job_finished")

    classes = (AVATAR_OT_test_count, AVATAR_OT_test_user_error)
    for cls in classes:
        bpy.utils.register_class(cls)
    yield
    for cls in classes:
        bpy.utils.unregister_class(cls)


def prefs():
    return bpy.context.preferences.addons[ADDON].preferences


def test_preferences_defaults_and_compute_settings(addon, tmp_path: Path) -> None:
    from avatar_capture.preferences import compute_settings

    p = prefs()
    assert (p.body_model, p.device, p.compute_python, p.model_folder, p.cache_folder) == ("anny", "auto", "", "", "")
    assert compute_settings(bpy.context) == ComputeSettings()
    p.body_model, p.device, p.model_folder, p.cache_folder = "smplx", "cpu", str(tmp_path), "~/avc"
    assert compute_settings(bpy.context) == ComputeSettings(
        body_model="smplx", model_folder=str(tmp_path), device="cpu", cache_dir=os.path.expanduser("~/avc"))


class RecordingLayout:
    """Stands in for bpy.types.UILayout in a panel's draw(); every call and keyword is
    checked against UILayout's RNA definition (and icons against its icon enum), so a
    typo that would break the real sidebar fails here."""

    _rna = bpy.types.UILayout.bl_rna
    _icons = set(_rna.functions["label"].parameters["icon"].enum_items.keys())

    def __init__(self, calls: list) -> None:
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name: str, value) -> None:
        assert name in self._rna.properties, f"UILayout has no property {name}"
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        function = self._rna.functions.get(name)
        assert function is not None, f"UILayout has no function {name}"
        accepted = {p.identifier for p in function.parameters}

        def call(*args, **kwargs):
            assert set(kwargs) <= accepted, f"{name}() does not take {set(kwargs) - accepted}"
            assert kwargs.get("icon", "NONE") in self._icons, f"unknown icon {kwargs['icon']}"
            self.calls.append((name, args, kwargs))
            if name in ("box", "column", "row", "split"):
                return RecordingLayout(self.calls)
            if name == "operator":
                return SimpleNamespace()
            return None

        return call


def draw_sidebar() -> list:
    from avatar_capture.panels.sidebar import VIEW3D_PT_avatar_capture

    calls: list = []
    context = SimpleNamespace(window_manager=bpy.context.window_manager, region=SimpleNamespace(width=300),
                              preferences=bpy.context.preferences)
    VIEW3D_PT_avatar_capture.draw(SimpleNamespace(layout=RecordingLayout(calls)), context)
    return calls


def operators_drawn(calls: list) -> list[str]:
    return [args[0] for name, args, _ in calls if name == "operator"]


def test_sidebar_panel_draws_actions_job_progress_and_errors(addon, monkeypatch: pytest.MonkeyPatch) -> None:
    from avatar_capture.panels import sidebar

    panel = bpy.types.VIEW3D_PT_avatar_capture
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "Avatar")

    idle = draw_sidebar()
    assert operators_drawn(idle) == ["avatar.capture_video", "avatar.build_body", "avatar.import_clip",
                                     "avatar.export", "avatar.check_setup"]
    for idname in operators_drawn(idle):  # each button's operator is registered
        group, name = idname.split(".")
        getattr(getattr(bpy.ops, group), name).get_rna_type()
    assert not [c for c in idle if c[0] == "progress"]

    job = bpy.context.window_manager.avatar_capture_job
    job.title, job.stage, job.fraction, job.message = "Build body model", "Building Anny cache", 0.4, "shapes"
    monkeypatch.setattr(sidebar, "active_runner", lambda: object())
    running = draw_sidebar()
    [progress] = [kwargs for name, _, kwargs in running if name == "progress"]
    assert progress["factor"] == pytest.approx(0.4) and progress["text"] == "Building Anny cache 40%"
    assert operators_drawn(running)[0] == "avatar.cancel_job"

    monkeypatch.setattr(sidebar, "active_runner", lambda: None)
    job.last_error, job.log_path = "/data/clip.npz: missing field 'fps' (log: /tmp/j/log.txt)", "/tmp/j/log.txt"
    failed = draw_sidebar()
    labels = " ".join(kwargs.get("text", "") for name, _, kwargs in failed if name == "label")
    assert "missing field 'fps'" in labels and "log.txt" in labels
    assert "wm.path_open" in operators_drawn(failed)


def test_check_setup_reports_plain_lines(addon) -> None:
    from avatar_capture import preferences

    t0 = time.perf_counter()
    assert bpy.ops.avatar.check_setup() == {"FINISHED"}
    print(f"check set-up took {time.perf_counter() - t0:.2f} s")
    lines = preferences._setup_report
    assert lines[0][0] and lines[0][1].startswith("Compute Python: ")
    texts = [text for _, text in lines]
    assert any(t.startswith("torch ") for t in texts) and any(t.startswith("anny ") for t in texts)
    assert any(t.startswith("Anny cache") for t in texts)
    assert lines[-1][0] and lines[-1][1].startswith("Cache folder: ")


def test_check_setup_names_each_problem(addon, tmp_path: Path) -> None:
    from avatar_capture import preferences

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    p = prefs()
    p.compute_python, p.body_model, p.cache_folder = str(tmp_path / "nopython"), "smpl", str(not_a_folder)
    bpy.ops.avatar.check_setup()
    lines = preferences._setup_report
    assert [ok for ok, _ in lines] == [False, False, False]
    assert lines[0][1].startswith(f"Compute Python not found: {tmp_path / 'nopython'}")
    assert lines[1][1].startswith("No SMPL model folder is set")
    assert lines[2][1].startswith(f"Cache folder {not_a_folder} is not writable")


def test_job_operator_execute_runs_a_real_job(fake_job_operators) -> None:
    objects_before = len(bpy.data.objects)
    assert bpy.ops.avatar.test_count(steps=4) == {"FINISHED"}
    assert "counted_4" in bpy.context.scene.objects and len(bpy.data.objects) == objects_before + 1
    job = bpy.context.window_manager.avatar_capture_job
    assert (job.running, job.stage, job.fraction, job.last_error) == (False, "Done", 1.0, "")
    assert Path(job.log_path).is_file() and "Counting" in Path(job.log_path).read_text()


def test_job_operator_reports_user_error_with_log_path(fake_job_operators) -> None:
    objects_before = len(bpy.data.objects)
    with pytest.raises(RuntimeError, match=r"/data/clip.npz: missing field 'fps' \(log: .*log.txt\)"):
        bpy.ops.avatar.test_user_error()
    job = bpy.context.window_manager.avatar_capture_job
    assert job.stage == "Failed" and "missing field 'fps'" in job.last_error and not job.running
    assert len(bpy.data.objects) == objects_before


class ModalHarness:
    """Plays Blender's part for the modal path: the mixin's own methods, real context."""

    def __init__(self, params: dict) -> None:
        from avatar_capture.operators.jobs import JobOperator

        class Harness(JobOperator):
            bl_label = "Write slowly"
            job_kind = "fake_jobs:write_slowly"

            def job_params(self, context):
                return params

            def job_finished(self, context, result):
                raise AssertionError("a cancelled job must not reach job_finished")

            def report(self, kind, message):
                reports.append((kind, message))

        reports: list = []
        self.reports = reports
        self.op = Harness()
        self.op._runner = self.op._start(bpy.context)

    def tick(self, event_type: str = "TIMER", value: str = "NOTHING") -> set:
        return self.op.modal(bpy.context, SimpleNamespace(type=event_type, value=value))

    def wait_for_progress(self) -> None:
        deadline = time.monotonic() + 30
        while self.op._runner.progress is None:
            assert self.tick() == {"PASS_THROUGH"}
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize("how", ["esc", "cancel_button"])
def test_cancel_ends_the_job_and_leaves_the_scene_untouched(fake_job_operators, tmp_path: Path, how: str) -> None:
    from avatar_capture.operators import jobs

    output = tmp_path / "out.txt"
    objects_before = len(bpy.data.objects)
    scene_before = list(bpy.context.scene.keys())  # the scene's own ID properties (job state must not land here)
    harness = ModalHarness({"output": str(output), "seconds": 30, "helper_pid_file": str(tmp_path / "pid")})
    harness.wait_for_progress()
    job = bpy.context.window_manager.avatar_capture_job
    assert job.running and job.stage == "Writing"
    assert not bpy.ops.avatar.build_body.poll(), "a second job must wait for the first"

    t0 = time.monotonic()
    if how == "esc":
        result = harness.tick("ESC", "PRESS")
    else:
        assert bpy.ops.avatar.cancel_job() == {"FINISHED"}
        result = harness.tick()
    print(f"cancel ({how}) took {time.monotonic() - t0:.3f} s")
    assert result == {"CANCELLED"}
    assert harness.reports == [({"INFO"}, "Cancelled")]
    assert jobs.active_runner() is None and bpy.ops.avatar.build_body.poll()
    assert not job.running and job.stage == "Cancelled"
    assert len(bpy.data.objects) == objects_before and not output.exists()
    assert list(bpy.context.scene.keys()) == scene_before


def test_build_body_operator_runs_the_real_job(addon) -> None:
    prefs().device = "cpu"
    t0 = time.perf_counter()
    assert bpy.ops.avatar.build_body() == {"FINISHED"}
    print(f"Build body model (execute, warm cache): {time.perf_counter() - t0:.2f} s")
    job = bpy.context.window_manager.avatar_capture_job
    assert (job.stage, job.fraction, job.last_error, job.running) == ("Done", 1.0, "", False)
    assert "Building the body" in Path(job.log_path).read_text()


def test_file_menus_offer_clip_import_and_avatar_export(addon) -> None:
    """File > Import / Export list our operators while enabled, and not after disabling."""
    def operators_in(menu) -> set[str]:
        return {getattr(func, "__name__", "") for func in menu.draw._draw_funcs}

    assert "draw_import_menu" in operators_in(bpy.types.TOPBAR_MT_file_import)
    assert "draw_export_menu" in operators_in(bpy.types.TOPBAR_MT_file_export)
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)
    assert "draw_import_menu" not in operators_in(bpy.types.TOPBAR_MT_file_import)
    assert "draw_export_menu" not in operators_in(bpy.types.TOPBAR_MT_file_export)
    addon_utils.enable(ADDON, default_set=True, handle_error=_raise)  # the fixture disables it again

"""Worker jobs through real subprocesses: protocol, progress, results, errors and cancel.

The fake job kinds live in tests/fake_jobs.py; the worker reaches them because this
folder goes on its PYTHONPATH and AVATAR_CAPTURE_TEST_JOBS=1 (see core/jobs/registry.py).
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from avatar_capture.core.jobs import protocol, registry
from avatar_capture.core.jobs.runner import JobRunner, JobState, package_root
from avatar_capture.core.settings import ComputeSettings

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
def settings(tmp_path: Path) -> ComputeSettings:
    return ComputeSettings(cache_dir=str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def allow_test_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.TEST_JOBS_ENV, "1")


def fake(kind: str, params: dict, settings: ComputeSettings) -> JobRunner:
    return JobRunner(f"fake_jobs:{kind}", params, settings, extra_paths=[TESTS_DIR])


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of the (now dead) worker may linger as a zombie until init reaps it.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\tZ" in status.read_text().split("State:")[1].splitlines()[0])


def test_protocol_round_trip_and_rejects_garbage() -> None:
    stream = io.StringIO()
    emitter = protocol.Emitter(stream)
    emitter.progress("Loading\nmodel", 1.5, "big   step")
    emitter.done({"path": Path("/tmp/x.npz"), "n": 3})
    emitter.error("clip.npz: bad", "user")
    lines = stream.getvalue().splitlines()
    assert [protocol.decode(line) for line in lines] == [
        protocol.Progress("Loading model", 1.0, "big step"),
        protocol.Done({"path": "/tmp/x.npz", "n": 3}),
        protocol.Failed("clip.npz: bad", "user"),
    ]
    for garbage in ("hello", "[1, 2]", '{"event": "progress"}', '{"event": "nope"}'):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(garbage)
    with pytest.raises(TypeError, match="JSON"):
        protocol.encode(protocol.Done({"array": object()}))


def test_registry_refuses_module_kinds_without_the_test_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.TEST_JOBS_ENV)
    from avatar_capture.core.errors import AvatarCaptureError

    with pytest.raises(AvatarCaptureError, match="unknown job kind 'os:system'"):
        registry.resolve("os:system")


def test_job_streams_progress_and_returns_result(settings: ComputeSettings) -> None:
    runner = fake("count", {"steps": 4, "delay": 0.05}, settings)
    t0 = time.monotonic()
    runner.start()
    seen: list[protocol.Event] = []
    first_event_s = None
    while True:
        events, state = runner.poll()
        if events and first_event_s is None:
            first_event_s = time.monotonic() - t0
        seen += events
        if state.finished:
            break
        assert time.monotonic() - t0 < 30, "job did not finish"
        time.sleep(0.02)
    print(f"start -> first event {first_event_s:.3f} s, whole job {time.monotonic() - t0:.3f} s")
    assert state is JobState.DONE, runner.error
    progress = [e for e in seen if isinstance(e, protocol.Progress)]
    assert [e.fraction for e in progress] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert progress[1].message == "step 2 of 4" and progress[1].stage == "Counting"
    assert isinstance(seen[-1], protocol.Done)
    assert runner.result == {"steps": 4, "device": "auto"}
    assert runner.returncode == 0 and runner.error is None
    log = runner.log_path.read_text()
    assert "a stray print that must land in the log" in log
    assert json.loads((runner.job_dir / "job.json").read_text())["settings"] == settings.to_dict()
    assert runner.job_dir.parent == settings.cache_path / "jobs"


def test_wait_runs_a_job_synchronously(settings: ComputeSettings) -> None:
    runner = fake("count", {"steps": 3}, settings)
    runner.start()
    stages: list[protocol.Event] = []
    assert runner.wait(timeout=30, on_event=stages.append) is JobState.DONE
    assert len([e for e in stages if isinstance(e, protocol.Progress)]) == 4
    assert runner.progress == protocol.Progress("Counting", 1.0, "finished")


def test_cancel_ends_the_process_group_and_leaves_no_output(settings: ComputeSettings, tmp_path: Path) -> None:
    output = tmp_path / "out.txt"
    pid_file = tmp_path / "helper.pid"
    runner = fake("write_slowly", {"output": str(output), "seconds": 30, "helper_pid_file": str(pid_file)},
                  settings)
    runner.start()
    deadline = time.monotonic() + 30
    while runner.progress is None:  # wait until the job is really writing
        runner.poll()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    helper_pid = int(pid_file.read_text())
    assert (tmp_path / "out.txt.tmp").exists()
    t0 = time.monotonic()
    runner.cancel()
    cancel_s = time.monotonic() - t0
    print(f"cancel took {cancel_s:.3f} s")
    assert runner.state is JobState.CANCELLED and runner.result is None
    assert cancel_s < 1.5  # SIGTERM is honoured at once; the 2 s kill grace is not needed
    assert runner.returncode == 143  # the worker exited through its SIGTERM handler
    assert not output.exists() and not (tmp_path / "out.txt.tmp").exists()
    time.sleep(0.1)
    assert not process_alive(helper_pid), "the job's child process survived the cancel"
    assert runner.poll() == ([], JobState.CANCELLED)


def test_cancel_kills_a_worker_that_ignores_sigterm(settings: ComputeSettings) -> None:
    runner = fake("ignore_sigterm", {}, settings)
    runner.start()
    while runner.progress is None:
        runner.poll()
        time.sleep(0.02)
    t0 = time.monotonic()
    runner.cancel(grace=0.3)
    assert 0.3 <= time.monotonic() - t0 < 2.0
    assert runner.state is JobState.CANCELLED and runner.returncode == -9


def test_worker_stops_when_its_parent_goes(settings: ComputeSettings) -> None:
    """Blender crashing closes the worker's stdin; the worker must not run on alone."""
    runner = fake("count", {"steps": 100, "delay": 0.5}, settings)
    runner.start()
    while runner.progress is None:
        runner.poll()
        time.sleep(0.02)
    runner._process.stdin.close()  # what the OS does when the parent process dies
    assert runner.wait(timeout=5) is JobState.FAILED
    assert runner.returncode == 3 and "parent process went away" in runner.log_path.read_text()


def test_user_error_gives_the_one_line_message(settings: ComputeSettings) -> None:
    runner = fake("user_error", {"path": "/data/clip.npz"}, settings)
    runner.start()
    assert runner.wait(timeout=30) is JobState.FAILED
    assert runner.error_kind == "user" and runner.returncode == 2
    assert runner.error == f"/data/clip.npz: missing field 'fps' (log: {runner.log_path})"
    assert "Traceback" not in runner.log_path.read_text()


def test_exception_is_a_crash_with_traceback_in_the_log(settings: ComputeSettings) -> None:
    runner = fake("raise_bug", {}, settings)
    runner.start()
    assert runner.wait(timeout=30) is JobState.FAILED
    assert runner.error_kind == "crash" and runner.returncode == 1
    assert "ZeroDivisionError: division by zero" in runner.error and str(runner.log_path) in runner.error
    log = runner.log_path.read_text()
    assert "Traceback" in log and "1 / 0" in log


def test_worker_dying_without_a_word_fails_with_the_log_path(settings: ComputeSettings) -> None:
    runner = fake("hard_exit", {"code": 3}, settings)
    runner.start()
    assert runner.wait(timeout=30) is JobState.FAILED
    assert runner.progress is not None and runner.progress.stage == "About to vanish"
    assert runner.error == f"the worker stopped unexpectedly, exit code 3 (log: {runner.log_path})"
    assert runner.log_path.exists()


def test_missing_compute_python_is_a_user_error(settings: ComputeSettings, tmp_path: Path) -> None:
    from avatar_capture.core.errors import AvatarCaptureError

    runner = JobRunner("body.build", {}, settings, python=str(tmp_path / "no-python"))
    with pytest.raises(AvatarCaptureError, match="cannot start the compute Python"):
        runner.start()


def test_package_root_finds_the_package_from_any_folder_name(settings: ComputeSettings) -> None:
    root = package_root(settings.cache_path)
    assert (root / "avatar_capture" / "core" / "jobs" / "worker.py").is_file()
    assert package_root(settings.cache_path) == root  # the second call reuses the link


def test_real_body_build_job_streams_progress() -> None:
    """The real first job through the real worker (warm when the persistent Anny cache is)."""
    settings = ComputeSettings(device="cpu")
    t0 = time.monotonic()
    runner = JobRunner("body.build", {}, settings)
    runner.start()
    progress: list[protocol.Progress] = []
    state = runner.wait(timeout=300, on_event=lambda e: progress.append(e) if isinstance(e, protocol.Progress) else None)
    print(f"body.build job: {time.monotonic() - t0:.2f} s, {len(progress)} progress events")
    assert state is JobState.DONE, runner.error
    assert progress and progress[-1].fraction == pytest.approx(1.0)
    assert [p.fraction for p in progress] == sorted(p.fraction for p in progress)
    assert runner.result["body_model"] == "anny" and runner.result["joints"] > 0
    assert Path(runner.result["rig_path"]).is_file()

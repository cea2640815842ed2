"""Start, watch and cancel a worker job from Blender, the CLI or a test (no bpy here).

Why a subprocess: torch and friends stay out of Blender's process, the UI keeps
running while the job streams progress, a crash or a cancel cannot damage the scene,
and the compute Python can be another environment than Blender's.

The runner writes job.json into the job's folder, starts
``<python> -m avatar_capture.core.jobs.worker job.json`` in its own process group,
reads the protocol events from the worker's stdout on a daemon thread and sends the
worker's stderr to ``log.txt`` in the same folder. The Blender side calls poll() from
a timer; scripts call wait().

How the worker finds the package: the add-on folder *is* the package
``avatar_capture``. If the folder is named so (an installed extension), its parent
goes on PYTHONPATH; otherwise (a git checkout named differently) a symlink
``<cache>/pkgroot/avatar_capture`` -> add-on folder is made and ``<cache>/pkgroot``
goes on PYTHONPATH. On Windows that symlink needs Developer Mode or admin rights;
without them, install the add-on folder under the name ``avatar_capture``.
"""
from __future__ import annotations

import enum
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..errors import AvatarCaptureError
from ..settings import ComputeSettings
from .protocol import Done, Event, Failed, Progress, ProtocolError, decode

PACKAGE_NAME = "avatar_capture"
ADDON_DIR = Path(__file__).resolve().parents[2]
WORKER_MODULE = f"{PACKAGE_NAME}.core.jobs.worker"
KEEP_JOB_DIRS = 20
CANCEL_GRACE_S = 2.0

log = logging.getLogger(__name__)

_EOF = object()


class JobState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


def resolve_python(settings: ComputeSettings) -> str:
    """The compute Python: the one the user chose, else the one running us (Blender's own)."""
    return settings.python or sys.executable


def package_root(cache_path: Path) -> Path:
    """A folder from which ``import avatar_capture`` finds this add-on (see module docstring)."""
    if ADDON_DIR.name == PACKAGE_NAME:
        return ADDON_DIR.parent
    root = cache_path / "pkgroot"
    link = root / PACKAGE_NAME
    if link.is_symlink() and Path(os.readlink(link)) == ADDON_DIR:
        return root
    # Make the link under a temporary name and rename it over the old one, so that a
    # concurrent start never sees a missing or half-made link.
    temp = root / f".{PACKAGE_NAME}.{os.getpid()}.{threading.get_ident()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        os.symlink(ADDON_DIR, temp, target_is_directory=True)
        os.replace(temp, link)
    except OSError as exc:
        raise AvatarCaptureError(
            f"cannot link {link} -> {ADDON_DIR} for the worker ({exc}); "
            f"install the add-on in a folder named '{PACKAGE_NAME}'") from exc
    return root


def worker_environment(settings: ComputeSettings, extra_paths: Iterable[str | os.PathLike] = ()) -> dict[str, str]:
    """os.environ plus a PYTHONPATH that finds the package first, then `extra_paths`
    (e.g. Blender's extension site-packages holding the bundled wheels)."""
    env = dict(os.environ)
    paths = [str(package_root(settings.cache_path)), *(os.fspath(p) for p in extra_paths)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _new_job_dir(settings: ComputeSettings, kind: str) -> Path:
    """A fresh folder under <cache>/jobs; only the newest KEEP_JOB_DIRS are kept."""
    root = settings.cache_path / "jobs"
    try:
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        job_dir = Path(tempfile.mkdtemp(prefix=f"{stamp}-{kind.replace(':', '_')}-", dir=root))
    except OSError as exc:
        raise AvatarCaptureError(f"cannot create a job folder in {root}: {exc.strerror or exc}") from exc
    old = sorted(p.name for p in root.iterdir() if p.is_dir())  # names start with the time
    for stale in old[:-KEEP_JOB_DIRS]:
        shutil.rmtree(root / stale, ignore_errors=True)
    return job_dir


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit code {returncode}"


class JobRunner:
    """One worker job. Attributes after it finished: state, result (dict, when done),
    error (one line with the log path, when failed), error_kind ("user" | "crash"),
    returncode; while running: progress (the last Progress event). job_dir and log_path
    exist from the start."""

    def __init__(self, kind: str, params: dict, settings: ComputeSettings, job_dir: str | Path | None = None,
                 python: str | None = None, extra_paths: Sequence[str | os.PathLike] = ()) -> None:
        self.kind = kind
        self.params = params
        self.settings = settings
        self.python = python or resolve_python(settings)
        self.extra_paths = tuple(extra_paths)
        self.job_dir = Path(job_dir) if job_dir else _new_job_dir(settings, kind)
        self.log_path = self.job_dir / "log.txt"
        self.state = JobState.PENDING
        self.result: dict | None = None
        self.error: str | None = None
        self.error_kind: str | None = None
        self.progress: Progress | None = None
        self.returncode: int | None = None
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self._finish_lock = threading.Lock()  # cancel() may come from another thread than wait()
        self._eof = False
        self._cancelled = False

    # -- starting -------------------------------------------------------------------------
    def start(self) -> None:
        """Write job.json and spawn the worker; AvatarCaptureError if it cannot start."""
        if self.state is not JobState.PENDING:
            raise RuntimeError("a JobRunner starts once")
        self.job_dir.mkdir(parents=True, exist_ok=True)
        job_file = self.job_dir / "job.json"
        job = {"kind": self.kind, "params": self.params, "settings": self.settings.to_dict()}
        job_file.write_text(json.dumps(job, indent=1), encoding="utf-8")
        command = [self.python, "-m", WORKER_MODULE, str(job_file), "--watch-stdin"]
        if os.name == "nt":
            group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
        else:
            group = {"start_new_session": True}
        with open(self.log_path, "wb") as log_file:
            try:
                self._process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                    cwd=self.job_dir, env=worker_environment(self.settings, self.extra_paths), **group)
            except OSError as exc:
                raise AvatarCaptureError(
                    f"cannot start the compute Python '{self.python}': {exc.strerror or exc}") from exc
        self.state = JobState.RUNNING
        self._reader = threading.Thread(target=self._read_events, name=f"job-{self.kind}", daemon=True)
        self._reader.start()

    def _read_events(self) -> None:
        """Daemon thread: worker stdout lines -> events on the queue, then the EOF marker."""
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                self._events.put(decode(line))
            except ProtocolError as exc:
                log.warning("job %s: %s", self.kind, exc)
        self._events.put(_EOF)

    # -- watching -------------------------------------------------------------------------
    def poll(self) -> tuple[list[Event], JobState]:
        """Events received since the last call and the current state (never blocks)."""
        events = []
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                break
            if item is _EOF:
                self._eof = True
            else:
                events.append(self._take(item))
        if self.state is JobState.RUNNING and self._eof and self._process.poll() is not None:
            self._finish()
        return events, self.state

    def wait(self, timeout: float | None = None,
             on_event: Callable[[Event], None] | None = None) -> JobState:
        """Block until the job finishes or `timeout` seconds pass; returns the state
        (still RUNNING after a timeout). `on_event` sees each event as it arrives."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state is JobState.RUNNING:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if self._eof:
                try:
                    self._process.wait(remaining)
                except subprocess.TimeoutExpired:
                    break
                self.poll()
                continue
            try:
                item = self._events.get(timeout=remaining)
            except queue.Empty:
                break
            if item is _EOF:
                self._eof = True
            else:
                event = self._take(item)
                if on_event:
                    on_event(event)
        return self.state

    def _take(self, event: Event) -> Event:
        if isinstance(event, Progress):
            self.progress = event
        elif isinstance(event, Done):
            self.result = event.result
        elif isinstance(event, Failed):
            self.error_kind = event.kind
            self.error = f"{event.message} (log: {self.log_path})"
        return event

    def _finish(self) -> None:
        with self._finish_lock:
            if self.state is JobState.RUNNING:
                self._settle()

    def _settle(self) -> None:
        self.returncode = self._process.wait()
        self._close_pipes()
        if self._cancelled:
            self.state = JobState.CANCELLED
            self.result = None
        elif self.result is not None:
            # The result is complete once "done" is sent; a crash while the interpreter
            # shuts down (some native libraries do that) must not throw it away.
            if self.returncode != 0:
                log.warning("job %s: worker exited with %s after its result", self.kind,
                            _describe_exit(self.returncode))
            self.state = JobState.DONE
        else:
            self.state = JobState.FAILED
            if self.error is None:
                self.error_kind = "crash"
                self.error = (f"the worker stopped unexpectedly, {_describe_exit(self.returncode)}"
                              f" (log: {self.log_path})")

    def _close_pipes(self) -> None:
        self._process.stdin.close()
        if not self._reader.is_alive():  # else the thread still reads; the pipe closes with it
            self._process.stdout.close()

    # -- cancelling -----------------------------------------------------------------------
    def cancel(self, grace: float = CANCEL_GRACE_S) -> None:
        """End the worker and everything it started: terminate the process group, give it
        `grace` seconds to clean up its temp files, then kill. The state becomes CANCELLED."""
        if self.state is not JobState.RUNNING:
            return
        self._cancelled = True
        process = self._process
        if process.poll() is None:
            self._signal_group(terminate=True)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Kill what is left: the worker itself, or helpers it started in its group.
        self._signal_group(terminate=False)
        process.wait()
        self._reader.join(timeout=1.0)
        self._eof = True
        self.poll()

    def _signal_group(self, terminate: bool) -> None:
        process = self._process
        try:
            if os.name == "nt":
                if terminate:
                    process.send_signal(signal.CTRL_BREAK_EVENT)
                elif process.poll() is None:
                    subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)],
                                   capture_output=True, check=False)
            else:
                os.killpg(process.pid, signal.SIGTERM if terminate else signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone

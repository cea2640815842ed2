"""The worker process: ``python -m avatar_capture.core.jobs.worker JOB.json``.

Heavy work (torch, Anny, capture) runs here instead of inside Blender so that the UI
stays responsive, a crash cannot take Blender down, Esc can end it at once, and the
compute Python can be an external environment (e.g. CUDA torch) rather than Blender's.

JOB.json = {"kind": str, "params": {...}, "settings": ComputeSettings.to_dict()}.
The worker streams protocol events (core/jobs/protocol.py) on its stdout; everything
else, including stray prints of libraries, goes to stderr, i.e. the job's log file.
Exit codes: 0 done, 1 crash (traceback in the log), 2 user error, 143 cancelled
(SIGTERM), 3 the parent process went away.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO

from ..errors import AvatarCaptureError
from ..settings import ComputeSettings
from . import registry
from .protocol import Emitter, one_line

EXIT_DONE = 0
EXIT_CRASH = 1
EXIT_USER_ERROR = 2
EXIT_ORPHANED = 3
EXIT_CANCELLED = 143

log = logging.getLogger("avatar_capture.worker")


class JobCancelled(BaseException):
    """Raised in the main thread on SIGTERM so that `finally` blocks remove temp files."""


def _take_over_stdout() -> IO[str]:
    """A private stream on the original stdout for protocol events; fd 1 then points at
    stderr so prints from Python or C code land in the log, not in the protocol."""
    sys.stdout.flush()
    protocol_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1, newline="\n")


def _raise_cancelled(signum: int, _frame: object) -> None:
    raise JobCancelled(f"signal {signum}")


def _exit_when_parent_goes(fd: int) -> None:
    """The runner keeps our stdin open and never writes: EOF means Blender quit or crashed,
    and a job nobody waits for must not keep the CPU or GPU busy. (os.read, not
    sys.stdin: a daemon thread inside a buffered read aborts the interpreter's exit.)"""
    while os.read(fd, 4096):
        pass
    log.warning("the parent process went away; stopping")
    logging.shutdown()
    os._exit(EXIT_ORPHANED)


def _settle_device(settings: ComputeSettings) -> None:
    """Hide GPUs before any library imports torch when the user asked for the CPU."""
    if settings.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def run_job(job_file: Path, emitter: Emitter) -> int:
    """Run the job described by `job_file`, emit its events and return the exit code."""
    try:
        job = json.loads(job_file.read_text(encoding="utf-8"))
        kind = job["kind"]
        settings = ComputeSettings.from_dict(job.get("settings", {}))
        _settle_device(settings)
        function = registry.resolve(kind)
        log.info("job %s started (%s) with params %s", kind, job_file, job.get("params", {}))

        def report(stage: str, fraction: float, message: str = "") -> None:
            log.info("[%3.0f%%] %s %s", 100 * fraction, stage, message)
            emitter.progress(stage, fraction, message)

        result = function(job.get("params", {}), settings, report)
        if not isinstance(result, dict):
            raise TypeError(f"job {kind} returned {type(result).__name__}, not a dict")
        emitter.done(result)
        log.info("job %s done", kind)
        return EXIT_DONE
    except JobCancelled:
        log.warning("job cancelled")
        return EXIT_CANCELLED
    except AvatarCaptureError as exc:
        log.error("%s", exc)
        emitter.error(str(exc), "user")
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - any other failure is a bug: log it whole, report one line
        log.exception("job crashed")
        summary = one_line(f"{type(exc).__name__}: {exc}")
        emitter.error(f"the job crashed ({summary[:300]})", "crash")
        return EXIT_CRASH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_file", type=Path, help="job.json written by the runner")
    parser.add_argument("--watch-stdin", action="store_true",
                        help="stop when stdin closes (the runner's way to say its process is gone)")
    args = parser.parse_args(argv)

    emitter = Emitter(_take_over_stdout())
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.enable(file=sys.stderr)
    signal.signal(signal.SIGTERM, _raise_cancelled)
    if hasattr(signal, "SIGBREAK"):  # Windows: CTRL_BREAK_EVENT sent to our process group
        signal.signal(signal.SIGBREAK, _raise_cancelled)
    if args.watch_stdin:
        threading.Thread(target=_exit_when_parent_goes, args=(sys.stdin.fileno(),), daemon=True).start()
    return run_job(args.job_file, emitter)


if __name__ == "__main__":
    sys.exit(main())

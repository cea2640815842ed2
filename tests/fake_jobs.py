"""Job functions that only the tests run, through the real worker process.

The worker reaches them as kind "fake_jobs:<function>" because the tests put this
folder on the worker's PYTHONPATH (JobRunner extra_paths) and set
AVATAR_CAPTURE_TEST_JOBS=1; the real registry never lists them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from avatar_capture.core.errors import AvatarCaptureError


def count(params: dict, settings, report) -> dict:
    """Report `steps` progress events, print to stdout (must not disturb the protocol)."""
    steps = int(params.get("steps", 5))
    print("a stray print that must land in the log")
    for i in range(steps):
        report("Counting", i / steps, f"step {i + 1} of {steps}")
        time.sleep(float(params.get("delay", 0.0)))
    report("Counting", 1.0, "finished")
    return {"steps": steps, "device": settings.device}


def write_slowly(params: dict, settings, report) -> dict:
    """Start a helper process, then write `output` atomically after `seconds`; the temp file
    is removed if the job is interrupted."""
    output = Path(params["output"])
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(params["helper_pid_file"]).write_text(str(helper.pid))
    temp = output.with_name(output.name + ".tmp")
    try:
        with open(temp, "w") as f:
            f.write("partial")
            for i in range(int(params["seconds"] * 10)):
                report("Writing", i / (params["seconds"] * 10), "")
                time.sleep(0.1)
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)
    return {"output": str(output)}


def ignore_sigterm(params: dict, settings, report) -> dict:
    """Stands for a job stuck in native code that cannot react to SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    report("Stuck", 0.0, "")
    time.sleep(120)
    return {}


def user_error(params: dict, settings, report) -> dict:
    report("Reading", 0.1, "")
    raise AvatarCaptureError(f"{params['path']}: missing field 'fps'")


def raise_bug(params: dict, settings, report) -> dict:
    return {"ratio": 1 / 0}


def hard_exit(params: dict, settings, report) -> dict:
    report("About to vanish", 0.5, "")
    os._exit(int(params.get("code", 3)))

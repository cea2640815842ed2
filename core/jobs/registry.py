"""Which function runs each worker job kind.

Entries are strings ("module:function", module relative to the ``core`` package) so
that looking a kind up imports only that job's module: the worker starts fast and a
job never pays for another job's heavy imports.

A job function has the signature
``job(params: dict, settings: ComputeSettings, report) -> dict`` where
``report(stage: str, fraction: float, message: str)`` streams progress; it returns
JSON data (paths as strings) and raises ``AvatarCaptureError`` for user-facing failures.

Tests may run kinds of the form "package.module:function" (absolute) when the
environment variable AVATAR_CAPTURE_TEST_JOBS is "1"; the registry itself holds only
real jobs.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable

from ..errors import AvatarCaptureError

JOBS: dict[str, str] = {
    "body.build": "body.jobs:build_body",
    "body.rig": "body.jobs:rig_for_clip_job",
    "capture.video": "capture.jobs:capture_video_job",
}

TEST_JOBS_ENV = "AVATAR_CAPTURE_TEST_JOBS"

_CORE_PACKAGE = __package__.rpartition(".")[0]


def resolve(kind: str) -> Callable[..., dict]:
    """The job function for `kind`; AvatarCaptureError if the kind is unknown."""
    target = JOBS.get(kind)
    if target is not None:
        module_name, _, function_name = target.partition(":")
        module_name = f"{_CORE_PACKAGE}.{module_name}"
    elif ":" in kind and os.environ.get(TEST_JOBS_ENV) == "1":
        module_name, _, function_name = kind.partition(":")
    else:
        raise AvatarCaptureError(f"unknown job kind '{kind}' (known: {', '.join(sorted(JOBS))})")
    module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise LookupError(f"job kind '{kind}': {module_name} has no function '{function_name}'")
    return function

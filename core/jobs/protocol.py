"""The worker's JSON-lines protocol: one JSON object per line on the worker's stdout.

Why a protocol and not shared memory or pickles: the worker may run a different Python
(an external environment with CUDA torch) than Blender, so the only thing both sides
share is text. Three events exist:

    {"event": "progress", "stage": str, "fraction": 0..1, "message": str}
    {"event": "done", "result": {...}}
    {"event": "error", "message": str, "kind": "user" | "crash"}

"user" errors are expected problems with the user's input or set-up (an
AvatarCaptureError, shown as is); "crash" errors are bugs whose traceback is in the
job's log. Logs never go to stdout: they go through ``logging`` to stderr, which the
runner writes to the job's log file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import IO, Union

ERROR_KINDS = ("user", "crash")


class ProtocolError(ValueError):
    """A line on the worker's stdout that is not one of the protocol's events."""


@dataclass(frozen=True)
class Progress:
    """stage: short name of the step ("Building Anny cache"); fraction: 0..1 of the whole job."""

    stage: str
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class Done:
    """result: JSON data the job returns (paths as strings)."""

    result: dict


@dataclass(frozen=True)
class Failed:
    """message: one line fit for the UI; kind: "user" (input/set-up problem) or "crash" (bug)."""

    message: str
    kind: str = "crash"


Event = Union[Progress, Done, Failed]


def _json_default(value: object) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"job result holds a {type(value).__name__}, which JSON cannot carry")


def one_line(text: str) -> str:
    """Collapse whitespace so a message stays one line in the status bar and the protocol."""
    return " ".join(str(text).split())


def encode(event: Event) -> str:
    """The event as one JSON line (without the newline)."""
    if isinstance(event, Progress):
        data = {
            "event": "progress",
            "stage": one_line(event.stage),
            "fraction": min(1.0, max(0.0, float(event.fraction))),
            "message": one_line(event.message),
        }
    elif isinstance(event, Done):
        data = {"event": "done", "result": event.result}
    elif isinstance(event, Failed):
        if event.kind not in ERROR_KINDS:
            raise ValueError(f"error kind must be one of {ERROR_KINDS}, not {event.kind!r}")
        data = {"event": "error", "message": one_line(event.message), "kind": event.kind}
    else:
        raise TypeError(f"not a protocol event: {event!r}")
    return json.dumps(data, default=_json_default, ensure_ascii=False)


def decode(line: str) -> Event:
    """Parse one stdout line; raises ProtocolError for anything that is not an event."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {line[:200]!r}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"not a JSON object: {line[:200]!r}")
    event = data.get("event")
    try:
        if event == "progress":
            return Progress(str(data["stage"]), min(1.0, max(0.0, float(data["fraction"]))),
                            str(data.get("message", "")))
        if event == "done":
            if not isinstance(data["result"], dict):
                raise ProtocolError("'done' event whose result is not an object")
            return Done(data["result"])
        if event == "error":
            kind = data.get("kind", "crash")
            return Failed(str(data["message"]), kind if kind in ERROR_KINDS else "crash")
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed '{event}' event: {line[:200]!r}") from exc
    raise ProtocolError(f"unknown event {event!r}: {line[:200]!r}")


class Emitter:
    """Writes events to a text stream, one flushed line each, so the runner sees them at once."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def emit(self, event: Event) -> None:
        self._stream.write(encode(event) + "\n")
        self._stream.flush()

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.emit(Progress(stage, fraction, message))

    def done(self, result: dict) -> None:
        self.emit(Done(result))

    def error(self, message: str, kind: str) -> None:
        self.emit(Failed(message, kind))

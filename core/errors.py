"""User-facing errors: one class the UI, the CLI and the worker turn into one clear line.

Anything else that escapes is a bug and is logged with its traceback; an
AvatarCaptureError is an expected problem with the user's input or set-up.
"""
from __future__ import annotations

from pathlib import Path


class AvatarCaptureError(Exception):
    """An expected failure with a message fit to show to an animator."""


class FileFormatError(AvatarCaptureError):
    """A file exists but its content is not what we need; names the file and the field."""

    def __init__(self, path: str | Path, problem: str, field: str | None = None) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f" (field '{field}')" if field else ""
        super().__init__(f"{self.path}: {problem}{where}")

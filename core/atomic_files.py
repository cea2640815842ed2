"""Files that appear whole or not at all: every writer of the project goes through here.

Each output is written into a hidden staging folder next to its target and moved
into place with os.replace only when complete, so a crash, a cancel or a full
disk leaves the old file (or none), never a truncated one. A staging folder
rather than a single temporary file lets exporters that write companions (a
glTF's .bin) be made atomic too.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import FileFormatError


def check_writable(path: str | Path) -> None:
    """Raise FileFormatError naming path unless a file can be created in its folder.

    Creating (and removing) a staging folder is the only reliable test: a
    permission check alone says yes to root on read-only or virtual file systems.
    """
    with atomic_output(path):
        pass


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a path with path's name inside a new staging folder next to path.

    When the block ends without an error, every file written into the staging
    folder (companions such as a glTF's .bin first, path itself last) is moved
    next to path with os.replace; the staging folder is always removed.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileFormatError(path, f"the folder {folder} does not exist")
    if path.is_dir():
        raise FileFormatError(path, "this is a folder; give a file name")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=folder))
    except OSError:
        raise FileFormatError(path, f"the folder {folder} is not writable") from None
    try:
        target = staging / path.name
        yield target
        if not target.is_file():
            return
        try:
            for written in sorted(p for p in staging.rglob("*") if p.is_file() and p != target):
                destination = folder / written.relative_to(staging)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(written, destination)
            os.replace(target, path)
        except OSError as exc:
            raise FileFormatError(path, f"could not move the finished file into place ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

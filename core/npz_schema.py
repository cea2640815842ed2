"""Versioned ``.npz`` containers: schema checks on load, atomic writes on save.

The motion clip and the rigged-body file both use this, so every file the
project writes is checked the same way and no reader ever sees half a file.
Arrays are stored without pickling (strings as unicode arrays), so loading a
file from elsewhere cannot run code.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic_files import atomic_output
from .errors import FileFormatError

_KIND_WORDS = {"f": "floating-point", "i": "integer", "U": "text", "b": "true/false"}


@dataclass(frozen=True)
class Field:
    """One array of a container: dtype kind ('f', 'i' or 'U') and shape with named dimensions."""

    name: str
    kind: str
    shape: tuple[str | int, ...]
    optional: bool = False
    allow_nan: bool = False  # NaN marks "not observed" (e.g. keypoints of a lost frame)


def load_npz(path: str | Path, format_name: str, max_version: int) -> dict[str, np.ndarray]:
    """Read every array of a container after checking its format tag and version."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FileFormatError(path, f"not a readable .npz file ({exc})") from None
    fmt = arrays.get("format")
    if fmt is None or fmt.shape != () or str(fmt) != format_name:
        raise FileFormatError(path, f"not an '{format_name}' file", "format")
    version = arrays.get("version")
    if version is None or version.shape != () or version.dtype.kind not in "iu":
        raise FileFormatError(path, "missing or malformed version number", "version")
    if not 1 <= int(version) <= max_version:
        raise FileFormatError(
            path, f"version {int(version)} is not supported (this build reads 1 to {max_version})", "version"
        )
    return arrays


def check_fields(path: str | Path, arrays: dict[str, np.ndarray], fields: tuple[Field, ...]) -> dict[str, int]:
    """Check presence, dtype kind, shape and finiteness; return the sizes of the named dimensions."""
    dims: dict[str, int] = {}
    for field in fields:
        value = arrays.get(field.name)
        if value is None:
            if field.optional:
                continue
            raise FileFormatError(path, "required field is missing", field.name)
        if value.dtype.kind not in (field.kind + ("u" if field.kind == "i" else "")):
            raise FileFormatError(
                path, f"expected {_KIND_WORDS[field.kind]} values, found dtype {value.dtype}", field.name
            )
        if value.ndim != len(field.shape):
            raise FileFormatError(path, f"expected {len(field.shape)} dimensions, found shape {value.shape}", field.name)
        for size, expected in zip(value.shape, field.shape):
            if isinstance(expected, str):
                expected = dims.setdefault(expected, size)
            if size != expected:
                raise FileFormatError(
                    path, f"shape {value.shape} does not match the expected {field.shape} with {dims}", field.name
                )
        if field.kind == "f":
            bad = np.isinf(value) if field.allow_nan else ~np.isfinite(value)
            if np.any(bad):
                raise FileFormatError(path, "contains infinite values" if field.allow_nan
                                      else "contains NaN or infinite values", field.name)
    return dims


def save_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays to path atomically (see atomic_files): a reader never sees half a file."""
    with atomic_output(path) as target:
        with open(target, "wb") as stream:
            np.savez(stream, **arrays)
    return Path(path)

"""Compute settings: what the preferences hand to every worker job and CLI command.

Plain data so it travels inside job.json; Blender's preferences, the CLI flags
and the environment all produce one of these.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

BODY_MODELS = ("anny", "smpl", "smplx")
DEVICES = ("auto", "cpu", "cuda")


def default_cache_dir() -> Path:
    """AVATAR_CAPTURE_CACHE if set, else the user's cache folder."""
    env = os.environ.get("AVATAR_CAPTURE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "avatar_capture"


@dataclass(frozen=True)
class ComputeSettings:
    """body_model: "anny" | "smpl" | "smplx"; model_folder: where the user's SMPL/SMPL-X .npz
    files are; python: interpreter for worker jobs ("" = the current one); device:
    "auto" | "cpu" | "cuda"; cache_dir: Anny's cache and built rigs."""

    body_model: str = "anny"
    model_folder: str = ""
    python: str = ""
    device: str = "auto"
    cache_dir: str = ""

    def __post_init__(self) -> None:
        if self.body_model not in BODY_MODELS:
            raise ValueError(f"unknown body model '{self.body_model}' (choose from {', '.join(BODY_MODELS)})")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device '{self.device}' (choose from {', '.join(DEVICES)})")

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    @property
    def anny_cache_path(self) -> Path:
        return self.cache_path / "anny"

    @property
    def rig_cache_path(self) -> Path:
        return self.cache_path / "rigs"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ComputeSettings":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

"""What the user chooses for one capture, as one JSON-able value.

The same options travel from the Blender operator or the CLI through the job
parameters into the worker, so they are a frozen dataclass with a dict form.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import AvatarCaptureError

QUALITY_PRESETS = ("fast", "balanced", "best")


@dataclass(frozen=True)
class CaptureOptions:
    """Options of one capture.

    start / end: video frame range [start, end), end None = to the last frame.
    fov_degrees: horizontal field of view of the camera; None = a default
    (refined by the fit). box: (x0, y0, x1, y1) in pixels of the upright
    full-resolution first frame around the subject; None = the most prominent
    person. detect_max_side: frames are downscaled to this many pixels for detection.
    """

    start: int = 0
    end: int | None = None
    fov_degrees: float | None = None
    moving_camera: bool = False
    box: tuple[float, float, float, float] | None = None
    quality: str = "balanced"
    detect_max_side: int = 640

    def __post_init__(self) -> None:
        if self.start < 0:
            raise AvatarCaptureError(f"start frame must be 0 or more, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise AvatarCaptureError(f"end frame {self.end} must come after start frame {self.start}")
        if self.fov_degrees is not None and not 5.0 <= self.fov_degrees <= 170.0:
            raise AvatarCaptureError(f"field of view must be between 5 and 170 degrees, got {self.fov_degrees}")
        if self.box is not None:
            if len(self.box) != 4:
                raise AvatarCaptureError("subject box needs four numbers: x0,y0,x1,y1")
            x0, y0, x1, y1 = self.box
            if not (x1 > x0 and y1 > y0):
                raise AvatarCaptureError(f"subject box {tuple(self.box)} needs x1 > x0 and y1 > y0")
        if self.quality not in QUALITY_PRESETS:
            raise AvatarCaptureError(f"quality must be one of {', '.join(QUALITY_PRESETS)}, got '{self.quality}'")
        if self.detect_max_side < 64:
            raise AvatarCaptureError(f"detection size must be at least 64 pixels, got {self.detect_max_side}")

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["box"] = list(self.box) if self.box is not None else None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "CaptureOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AvatarCaptureError(f"unknown capture option(s): {', '.join(unknown)}")
        values = dict(values)
        if values.get("box") is not None:
            values["box"] = tuple(float(v) for v in values["box"])
        return cls(**values)

"""What the fit sees: per-frame 2D and 3D landmarks of the subject, in our landmark order.

Keeping this separate from the detector's own output (keypoints.Keypoints)
lets the fit run on any 2D/3D source (another detector, synthetic data in tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Observations:
    """Detections for T frames and the 23 landmarks of landmarks.LANDMARK_NAMES.

    pixels (T, L, 2): image positions in pixels of the full-resolution upright
    video (NaN where unseen). weights (T, L): 0..1 confidence (0 where unseen).
    camera_points (T, L, 3): metric 3D landmarks centred on the pelvis, axes of
    the camera (OpenCV: x right, y down, z forward), NaN where unseen; their
    scale is a detector's guess. lost (T,): frames without the subject.
    image_size: (width, height) in pixels.
    """

    pixels: np.ndarray
    weights: np.ndarray
    camera_points: np.ndarray
    lost: np.ndarray
    image_size: tuple[int, int]

    @property
    def frame_count(self) -> int:
        return len(self.pixels)

"""Names of the landmarks every body model provides and every clip stores.

COCO-17 order first (what 2D detectors and benchmarks speak), then the pelvis
and neck that COCO lacks, then the four foot points used for contacts. A clip's
``contacts`` columns follow CONTACT_NAMES.
"""
from __future__ import annotations

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
CONTACT_NAMES = ("left_heel", "left_toe", "right_heel", "right_toe")
LANDMARK_NAMES = COCO17 + ("pelvis", "neck") + CONTACT_NAMES

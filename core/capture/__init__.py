"""Capture from video: a monocular video becomes a world-grounded animated body.

video -> keypoints (BlazePose, one tracked subject) -> camera (static, or moving
from background tracks) -> whole-sequence fit of the body model (fit/) -> a
motion clip with the camera, the 2D keypoints and per-frame confidence.
``pipeline.capture_video`` runs the stages; ``jobs`` runs it as a worker job.
"""

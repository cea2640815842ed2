"""A motion clip at another frame rate, over the same duration.

Why: a clip lands in a scene that plays at its own frame rate (a 120 fps CMU BVH
in a 24 or 30 fps shot); keying it frame for frame would play it 4-5 times too
slowly. Resampling keeps the motion's timing: new frame k is the clip at time
k / fps, read between the two nearest source frames.

How each field is read between frames (weight w from the earlier frame):
  rotations            slerp (shortest arc), so joints turn at constant speed; signs kept
                       continuous from frame to frame (core.rotations.quat_continuous)
  root_translation,
  landmarks_world,
  contacts             lerp (contacts stay in 0..1)
  joints_world         recomputed by forward kinematics from the resampled rotations and
                       root, so the clip stays self-consistent (a lerp of positions
                       would shorten bones between frames)
  camera world_to_cam  rotation slerped and camera centre lerped in the world, then
                       recomposed: a rigid camera motion, as the camera really moves
  extras               per-frame capture observations (keypoints_2d, frame_confidence,
                       source_frames ...: any extra whose first axis is the frame axis)
                       are dropped: they describe video frames, which a resampled clip
                       no longer has; other extras (source_video) are kept.
Duration: (T - 1) / fps seconds is kept; the new clip has round(duration * fps) + 1
frames, the last one clamped to the last source frame.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..clip import Camera, MotionClip
from ..kinematics import forward_kinematics
from ..rotations import matrix_to_quat, quat_continuous, quat_normalize, quat_to_matrix


def resample_clip(clip: MotionClip, fps: float) -> MotionClip:
    """clip at fps frames per second over the same duration (see the module docstring)."""
    if not fps > 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    frames = clip.frame_count
    if np.isclose(fps, clip.fps, rtol=0.0, atol=1e-9):
        return clip
    duration = (frames - 1) / clip.fps
    count = int(round(duration * fps)) + 1
    source_time = np.minimum(np.arange(count) / fps * clip.fps, frames - 1)
    first = np.minimum(np.floor(source_time).astype(np.int64), frames - 1)
    second = np.minimum(first + 1, frames - 1)
    weight = source_time - first

    def lerp(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        w = weight.reshape((-1,) + (1,) * (values.ndim - 1))
        return values[first] * (1.0 - w) + values[second] * w

    rotations = quat_continuous(_slerp(clip.rotations[first], clip.rotations[second], weight))
    root = lerp(clip.root_translation)
    skeleton = clip.skeleton
    joints = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, rotations, root)[:, :, :3, 3]
    camera = None
    if clip.camera is not None:
        camera = Camera(clip.camera.K, _camera_world_to_cam(clip.camera.world_to_cam, first, second, weight),
                        clip.camera.image_size)
    extras = {name: value for name, value in clip.extras.items()
              if not (np.ndim(value) >= 1 and np.shape(value)[0] == frames)}
    return replace(
        clip,
        fps=float(fps),
        rotations=rotations,
        root_translation=root,
        joints_world=joints,
        landmarks_world=lerp(clip.landmarks_world),
        contacts=np.clip(lerp(clip.contacts), 0.0, 1.0),
        camera=camera,
        extras=extras,
    )


def _slerp(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shortest-arc slerp of unit quaternions a, b (N, ..., 4) wxyz by weight (N,) from a."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0.0, -b, b)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    w = np.asarray(weight, dtype=np.float64).reshape((-1,) + (1,) * (a.ndim - 1))
    angle = np.arccos(dot)
    sin = np.sin(angle)
    small = sin < 1e-6
    safe = np.where(small, 1.0, sin)
    wa = np.where(small, 1.0 - w, np.sin((1.0 - w) * angle) / safe)
    wb = np.where(small, w, np.sin(w * angle) / safe)
    return quat_normalize(wa * a + wb * b)


def _camera_world_to_cam(world_to_cam: np.ndarray, first: np.ndarray, second: np.ndarray,
                         weight: np.ndarray) -> np.ndarray:
    """Rigid in-between cameras (N, 4, 4) OpenCV world_to_cam: slerped rotation, lerped centre."""
    world_to_cam = np.asarray(world_to_cam, dtype=np.float64)
    rotation = world_to_cam[:, :3, :3]
    centre = -np.einsum("tji,tj->ti", rotation, world_to_cam[:, :3, 3])  # -R^T t
    q = matrix_to_quat(rotation)
    r = quat_to_matrix(_slerp(q[first], q[second], weight))
    w = weight[:, None]
    c = centre[first] * (1.0 - w) + centre[second] * w
    out = np.zeros((len(weight), 4, 4))
    out[:, :3, :3] = r
    out[:, :3, 3] = -np.einsum("tij,tj->ti", r, c)
    out[:, 3, 3] = 1.0
    return out

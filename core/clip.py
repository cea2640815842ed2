"""The motion clip file: one versioned ``.npz`` that capture, retarget, import and export share.

Format "avatar-capture/motion", version 2 (version 1 files still load). World frame = Blender's (metres,
Z up, -Y forward, ground at Z = 0); cameras in the OpenCV convention (x right,
y down, z forward) with explicit world_to_cam matrices; quaternions wxyz.

Fields (T frames, J joints, L landmarks, S shape parameters):
  fps ()                          frames per second
  joint_names (J,), parents (J,), rest_frames_world (J, 4, 4), bone_lengths (J,)
                                  the skeleton (see skeleton.Skeleton)
  rotations (T, J, 4)             local rotations relative to the rest frames, wxyz
  root_translation (T, 3)         world position of the root joint
  joints_world (T, J, 3)          world position of every joint head
  landmark_names (L,), landmarks_world (T, L, 3)
                                  COCO-17, pelvis, neck, heels and toes (landmarks.py)
  contacts (T, 4)                 0..1 for left heel, left toe, right heel, right toe
  camera_K (3, 3), camera_world_to_cam (T, 4, 4), camera_image_size (2,) = (width, height)
                                  optional, present together
  body_model ()                   "anny", "smpl", "smplx" or "none" (skeleton only)
  body_shape_names (S,), body_shape (S,)
                                  the body model's shape parameters

Version 2 adds what a capture observed, all optional (K = 33 BlazePose keypoints):
  keypoints_2d (T, K, 2)          detected keypoints in pixels of the upright video, NaN where lost
  keypoints_2d_visibility (T, K)  0..1
  keypoints_2d_names (K,)
  frame_confidence (T,)           0..1, how much the fit of each frame is backed by detections
  frame_lost (T,)                 True where the subject was not found (the motion is bridged there)
  source_video ()                 the captured video's path
  source_frames (T,)              video frame number of each clip frame
They are validated on load and live in ``extras`` with any unknown (newer) field;
extras are written back, so a tool that does not know a newer field does not drop it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FileFormatError
from .npz_schema import Field, check_fields, load_npz, save_npz_atomic
from .skeleton import SKELETON_FIELDS, Skeleton

CLIP_FORMAT = "avatar-capture/motion"
CLIP_VERSION = 2
CAMERA_FIELDS = ("camera_K", "camera_world_to_cam", "camera_image_size")

_CLIP_FIELDS = (Field("fps", "f", ()),) + SKELETON_FIELDS + (
    Field("rotations", "f", ("T", "J", 4)),
    Field("root_translation", "f", ("T", 3)),
    Field("joints_world", "f", ("T", "J", 3)),
    Field("landmark_names", "U", ("L",)),
    Field("landmarks_world", "f", ("T", "L", 3)),
    Field("contacts", "f", ("T", 4)),
    Field("camera_K", "f", (3, 3), optional=True),
    Field("camera_world_to_cam", "f", ("T", 4, 4), optional=True),
    Field("camera_image_size", "i", (2,), optional=True),
    Field("body_model", "U", ()),
    Field("body_shape_names", "U", ("S",)),
    Field("body_shape", "f", ("S",)),
)
CAPTURE_FIELDS = (
    Field("keypoints_2d", "f", ("T", "K", 2), optional=True, allow_nan=True),
    Field("keypoints_2d_visibility", "f", ("T", "K"), optional=True),
    Field("keypoints_2d_names", "U", ("K",), optional=True),
    Field("frame_confidence", "f", ("T",), optional=True),
    Field("frame_lost", "b", ("T",), optional=True),
    Field("source_video", "U", (), optional=True),
    Field("source_frames", "i", ("T",), optional=True),
)
_KNOWN = {f.name for f in _CLIP_FIELDS} | {"format", "version"}


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: K (3, 3) in pixels, world_to_cam (T, 4, 4) OpenCV, image_size (width, height)."""

    K: np.ndarray
    world_to_cam: np.ndarray
    image_size: tuple[int, int]


@dataclass(frozen=True)
class MotionClip:
    """An animated skeleton in the world; see the module docstring for every field's meaning."""

    fps: float
    skeleton: Skeleton
    rotations: np.ndarray
    root_translation: np.ndarray
    joints_world: np.ndarray
    landmark_names: tuple[str, ...]
    landmarks_world: np.ndarray
    contacts: np.ndarray
    body_model: str
    body_shape_names: tuple[str, ...]
    body_shape: np.ndarray
    camera: Camera | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return len(self.rotations)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = dict(self.extras)
        arrays.update(
            format=np.array(CLIP_FORMAT),
            version=np.array(CLIP_VERSION),
            fps=np.array(float(self.fps)),
            **self.skeleton.to_arrays(),
            rotations=np.asarray(self.rotations, dtype=np.float32),
            root_translation=np.asarray(self.root_translation, dtype=np.float64),
            joints_world=np.asarray(self.joints_world, dtype=np.float32),
            landmark_names=np.array(self.landmark_names, dtype=str),
            landmarks_world=np.asarray(self.landmarks_world, dtype=np.float32),
            contacts=np.asarray(self.contacts, dtype=np.float32),
            body_model=np.array(self.body_model),
            body_shape_names=np.array(self.body_shape_names, dtype=str),
            body_shape=np.asarray(self.body_shape, dtype=np.float64),
        )
        if self.camera is not None:
            arrays.update(
                camera_K=np.asarray(self.camera.K, dtype=np.float64),
                camera_world_to_cam=np.asarray(self.camera.world_to_cam, dtype=np.float64),
                camera_image_size=np.asarray(self.camera.image_size, dtype=np.int32),
            )
        return arrays


def save_clip(clip: MotionClip, path: str | Path) -> Path:
    """Write a clip atomically (temporary file in the same folder, then rename)."""
    return save_npz_atomic(path, clip.to_arrays())


def load_clip(path: str | Path) -> MotionClip:
    """Read and validate a clip; FileFormatError names the file and the offending field."""
    arrays = load_npz(path, CLIP_FORMAT, CLIP_VERSION)
    dims = check_fields(path, arrays, _CLIP_FIELDS + CAPTURE_FIELDS)
    if dims["T"] < 1:
        raise FileFormatError(path, "the clip has no frames", "rotations")
    fps = float(arrays["fps"])
    if not fps > 0:
        raise FileFormatError(path, f"frame rate must be positive, found {fps}", "fps")
    norms = np.linalg.norm(arrays["rotations"], axis=-1)
    if np.any(np.abs(norms - 1.0) > 1e-3):
        raise FileFormatError(path, "rotations are not unit quaternions", "rotations")
    contacts = arrays["contacts"]
    if contacts.size and (contacts.min() < 0 or contacts.max() > 1):
        raise FileFormatError(path, "contact values must lie in 0..1", "contacts")
    present = [name for name in CAMERA_FIELDS if name in arrays]
    if present and len(present) != len(CAMERA_FIELDS):
        missing = sorted(set(CAMERA_FIELDS) - set(present))[0]
        raise FileFormatError(path, "camera fields must be given together", missing)
    try:
        skeleton = Skeleton.from_arrays(arrays)
    except ValueError as exc:
        raise FileFormatError(path, str(exc), "parents") from None
    camera = None
    if present:
        width, height = (int(v) for v in arrays["camera_image_size"])
        if width <= 0 or height <= 0:
            raise FileFormatError(path, "image size must be positive", "camera_image_size")
        camera = Camera(arrays["camera_K"], arrays["camera_world_to_cam"], (width, height))
    return MotionClip(
        fps=fps,
        skeleton=skeleton,
        rotations=arrays["rotations"].astype(np.float64),
        root_translation=arrays["root_translation"].astype(np.float64),
        joints_world=arrays["joints_world"].astype(np.float64),
        landmark_names=tuple(str(n) for n in arrays["landmark_names"]),
        landmarks_world=arrays["landmarks_world"].astype(np.float64),
        contacts=contacts.astype(np.float64),
        body_model=str(arrays["body_model"]),
        body_shape_names=tuple(str(n) for n in arrays["body_shape_names"]),
        body_shape=arrays["body_shape"].astype(np.float64),
        camera=camera,
        extras={k: v for k, v in arrays.items() if k not in _KNOWN},
    )


def clip_from_pose(
    rig, rotations: np.ndarray, root_translation: np.ndarray, fps: float,
    contacts: np.ndarray | None = None, camera: Camera | None = None,
) -> MotionClip:
    """Build a clip for a RiggedBody pose sequence, computing joints and landmarks by FK.

    rotations (T, J, 4) wxyz local; root_translation (T, 3) metres; contacts (T, 4)
    default to zeros (unknown).
    """
    frames = rig.pose(rotations, root_translation)
    return MotionClip(
        fps=float(fps),
        skeleton=rig.skeleton,
        rotations=np.asarray(rotations, dtype=np.float64),
        root_translation=np.asarray(root_translation, dtype=np.float64),
        joints_world=frames[:, :, :3, 3],
        landmark_names=rig.landmark_names,
        landmarks_world=rig.landmarks(frames),
        contacts=np.zeros((len(frames), 4)) if contacts is None else np.asarray(contacts, dtype=np.float64),
        body_model=rig.body_model,
        body_shape_names=rig.shape_names,
        body_shape=rig.shape_values,
        camera=camera,
    )

"""The camera a splat image is rendered from, shared by the reference rasterizer and the viewport shaders.

OpenCV convention like every camera in the project: x right, y down, z forward;
``world_to_cam`` (4, 4) maps world (Blender frame, metres) to camera
coordinates; K (3, 3) is in pixels with the origin at the top-left corner of the
top-left pixel (pixel centres at +0.5). The JSON form is what ``avatarcap
splat render --camera`` reads.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FileFormatError

NEAR_PLANE = 0.01
FAR_PLANE = 1e10


@dataclass(frozen=True)
class SplatCamera:
    """Pinhole camera: K (3, 3) pixels, world_to_cam (4, 4) OpenCV, image width and height in pixels."""

    K: np.ndarray
    world_to_cam: np.ndarray
    width: int
    height: int
    near: float = NEAR_PLANE
    far: float = FAR_PLANE

    @property
    def cam_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_cam)

    @property
    def centre_world(self) -> np.ndarray:
        """Camera centre (3,) in world metres."""
        return self.cam_to_world[:3, 3]

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "K": np.asarray(self.K).tolist(),
                "world_to_cam": np.asarray(self.world_to_cam).tolist(), "near": self.near, "far": self.far}


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """K (3, 3) for a horizontal field of view in degrees, square pixels, principal point at the centre."""
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """world_to_cam (4, 4), OpenCV, of a camera at eye (3,) looking at target (3,) with world ``up`` up."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-8:  # looking straight along up: any right vector will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3] = rotation
    world_to_cam[:3, 3] = -rotation @ eye
    return world_to_cam


def framing_camera(means_world: np.ndarray, width: int, height: int, fov_deg: float = 40.0) -> SplatCamera:
    """The default view of a cloud: from the front (-Y), a little above, the whole cloud in frame.

    Uses the 0.5th-99.5th percentile box of the means so a few stray splats far out do
    not shrink the subject to a dot.
    """
    lo, hi = np.percentile(np.asarray(means_world, float), [0.5, 99.5], axis=0)
    centre = (lo + hi) / 2.0
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-3)
    K = intrinsics(width, height, fov_deg)
    half_fov = math.atan(min(width, height) / 2.0 / K[0, 0])
    distance = radius / math.sin(half_fov) * 1.15  # room for the splats' own extent around their means
    direction = np.array([0.0, -math.cos(math.radians(15.0)), math.sin(math.radians(15.0))])
    return SplatCamera(K, look_at(centre + distance * direction, centre), int(width), int(height))


def camera_from_json(path: str | Path) -> SplatCamera:
    """Read a camera file: {"width", "height", "K": 3x3, "world_to_cam": 4x4} (optional "near", "far").

    Instead of K, "fov_deg" (horizontal) may be given; instead of world_to_cam, "eye" and
    "target" (world metres, Z up).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileFormatError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(path, f"not a readable JSON camera ({exc})") from None
    if not isinstance(data, dict):
        raise FileFormatError(path, "a camera file holds one JSON object")
    width, height = _positive_int(path, data, "width"), _positive_int(path, data, "height")
    if "K" in data:
        K = _matrix(path, data, "K", (3, 3))
        if not (K[0, 0] > 0.0 and K[1, 1] > 0.0 and np.allclose(K[2], [0.0, 0.0, 1.0])):
            raise FileFormatError(path, "not a pinhole matrix: need positive focal lengths and a [0, 0, 1] last row",
                                  "K")
    elif "fov_deg" in data:
        fov = data["fov_deg"]
        if not isinstance(fov, (int, float)) or not 0.0 < fov < 180.0:
            raise FileFormatError(path, "must be a number between 0 and 180", "fov_deg")
        K = intrinsics(width, height, float(fov))
    else:
        raise FileFormatError(path, "give either 'K' or 'fov_deg'")
    if "world_to_cam" in data:
        world_to_cam = _matrix(path, data, "world_to_cam", (4, 4))
        rotation = world_to_cam[:3, :3]
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) or np.linalg.det(rotation) < 0:
            raise FileFormatError(path, "the upper 3x3 block is not a rotation", "world_to_cam")
        if not np.allclose(world_to_cam[3], [0.0, 0.0, 0.0, 1.0]):
            raise FileFormatError(path, "the last row must be [0, 0, 0, 1]", "world_to_cam")
    elif "eye" in data and "target" in data:
        eye, target = _matrix(path, data, "eye", (3,)), _matrix(path, data, "target", (3,))
        if np.linalg.norm(target - eye) < 1e-9:
            raise FileFormatError(path, "eye and target are the same point", "target")
        world_to_cam = look_at(eye, target)
    else:
        raise FileFormatError(path, "give either 'world_to_cam' or 'eye' and 'target'")
    near, far = data.get("near", NEAR_PLANE), data.get("far", FAR_PLANE)
    for key, value in (("near", near), ("far", far)):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise FileFormatError(path, "must be a number of metres", key)
    if not 0.0 < near < far:
        raise FileFormatError(path, "need 0 < near < far", "near")
    return SplatCamera(K, world_to_cam, width, height, float(near), float(far))


def _positive_int(path: Path, data: dict, key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 16384:
        raise FileFormatError(path, "must be a whole number of pixels between 1 and 16384", key)
    return value


def _matrix(path: Path, data: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        value = np.asarray(data[key], dtype=np.float64)
    except (ValueError, TypeError):
        value = None
    if value is None or value.shape != shape or not np.all(np.isfinite(value)):
        raise FileFormatError(path, f"must be a {'x'.join(map(str, shape))} array of numbers", key)
    return value

"""A Blender camera reproducing a clip's OpenCV pinhole camera.

Lets the animator look through the capture camera: every joint projects onto
the same pixel in Blender's camera view as in the source video. OpenCV cameras
look down +Z with +Y down; Blender's down -Z with +Y up, hence the axis flip.
Pixel centres are at integer OpenCV coordinates, so pixel u spans Blender's
normalised frame [u, u+1] / width.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.clip import Camera
from ..core.rotations import matrix_to_quat, quat_continuous
from .action import assign_new_action, key_channels

# Sensor width (mm) the focal length is expressed against; only the ratio lens / sensor matters.
SENSOR_WIDTH_MM = 36.0
# OpenCV camera axes (x right, y down, z forward) -> Blender camera axes, which are also the OpenGL
# view axes (x right, y up, z backward): the same flip serves both.
OPENCV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])


def camera_to_world_blender(world_to_cam: np.ndarray) -> np.ndarray:
    """Blender camera object matrices (..., 4, 4) from OpenCV world_to_cam (..., 4, 4)."""
    return np.linalg.inv(np.asarray(world_to_cam, dtype=np.float64)) @ OPENCV_TO_BLENDER_CAMERA


def world_to_cam_opencv(camera_to_world: np.ndarray) -> np.ndarray:
    """OpenCV world_to_cam (..., 4, 4) of Blender camera object matrices (..., 4, 4).

    The inverse of camera_to_world_blender. Blender cameras ignore the object's scale, so
    each axis column is normalised first (a scaled camera sees what the unscaled one sees).
    """
    matrices = np.array(camera_to_world, dtype=np.float64)
    matrices[..., :3, :3] /= np.linalg.norm(matrices[..., :3, :3], axis=-2, keepdims=True)
    return OPENCV_TO_BLENDER_CAMERA @ np.linalg.inv(matrices)


def create_camera(name: str, camera: Camera, collection: bpy.types.Collection,
                  scene: bpy.types.Scene) -> bpy.types.Object:
    """A camera object matching K, image size and world_to_cam; keyed per frame if it moves.

    Sets the scene's resolution (and pixel aspect when fx != fy) and makes it the
    scene camera. Focal length: lens = fx * sensor width / image width with a
    horizontal sensor fit; with that fit Blender expresses lens shift in units
    of the image width.
    """
    (fx, _, cx), (_, fy, cy), _ = np.asarray(camera.K, dtype=np.float64)
    width, height = camera.image_size
    data = bpy.data.cameras.new(name)
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = SENSOR_WIDTH_MM
    data.lens = fx * SENSOR_WIDTH_MM / width
    data.shift_x = ((width - 1) / 2 - cx) / width
    data.shift_y = (cy - (height - 1) / 2) / width * (fx / fy)
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)

    render = scene.render
    render.resolution_x, render.resolution_y = int(width), int(height)
    render.resolution_percentage = 100
    # Blender wants both aspects >= 1; aspect_y / aspect_x = fx / fy makes pixels fx/fy times taller.
    render.pixel_aspect_x, render.pixel_aspect_y = max(1.0, fy / fx), max(1.0, fx / fy)
    scene.camera = obj

    matrices = camera_to_world_blender(camera.world_to_cam)
    obj.rotation_mode = "QUATERNION"
    locations = matrices[:, :3, 3]
    quats = quat_continuous(matrix_to_quat(matrices[:, :3, :3]))
    obj.location = locations[0].tolist()
    obj.rotation_quaternion = quats[0].tolist()
    if np.abs(matrices - matrices[:1]).max() > 1e-9:
        _, new_fcurve = assign_new_action(obj, f"{name}Action")
        key_channels(new_fcurve, "location", locations, "Object Transforms")
        key_channels(new_fcurve, "rotation_quaternion", quats, "Object Transforms")
    return obj

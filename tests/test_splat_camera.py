"""The render camera: default framing of a cloud and the JSON camera file of `avatarcap splat render`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avatar_capture.core.errors import FileFormatError
from avatar_capture.core.splats.camera import camera_from_json, framing_camera, intrinsics, look_at


def project(camera, points):
    cam = points @ camera.world_to_cam[:3, :3].T + camera.world_to_cam[:3, 3]
    pixels = cam @ camera.K.T
    return pixels[:, :2] / pixels[:, 2:], cam[:, 2]


def test_look_at_puts_the_target_on_the_optical_axis_with_world_up_pointing_up_in_the_image() -> None:
    w2c = look_at(np.array([0.0, -5.0, 1.0]), np.array([0.0, 0.0, 1.0]))
    assert np.allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3)) and np.isclose(np.linalg.det(w2c[:3, :3]), 1)
    target_cam = w2c[:3, :3] @ [0, 0, 1.0] + w2c[:3, 3]
    assert np.allclose(target_cam, [0, 0, 5])
    above_cam = w2c[:3, :3] @ [0, 0, 2.0] + w2c[:3, 3]
    assert above_cam[1] < 0  # OpenCV y points down: a point above the target is higher in the image


def test_the_default_camera_frames_the_whole_cloud_from_the_front() -> None:
    rng = np.random.default_rng(0)
    means = rng.normal(size=(2000, 3)) * [0.3, 0.2, 0.9] + [1.0, 2.0, 1.0]
    camera = framing_camera(means, 320, 240)
    pixels, depth = project(camera, np.percentile(means, [2, 98], axis=0))
    assert np.all(depth > 0)
    inner = np.percentile(means, [5, 95], axis=0)
    corners = np.array([[x, y, z] for x in inner[:, 0] for y in inner[:, 1] for z in inner[:, 2]])
    px, _ = project(camera, corners)
    assert np.all((px >= 0) & (px <= [320, 240]))
    assert camera.centre_world[1] < means[:, 1].min()  # in front: on the -Y side


def test_camera_json_accepts_matrices_or_fov_and_eye(tmp_path) -> None:
    path = tmp_path / "cam.json"
    path.write_text(json.dumps({"width": 64, "height": 48, "fov_deg": 60, "eye": [0, -3, 1], "target": [0, 0, 1]}))
    camera = camera_from_json(path)
    assert np.allclose(camera.K, intrinsics(64, 48, 60.0))
    again = tmp_path / "again.json"
    again.write_text(json.dumps(camera.to_json()))
    assert np.allclose(camera_from_json(again).world_to_cam, camera.world_to_cam)


@pytest.mark.parametrize("content, words", [
    ("{", "not a readable JSON camera"),
    ('{"width": 0, "height": 4, "fov_deg": 50, "eye": [0,0,0], "target": [1,0,0]}', "width"),
    ('{"width": 8, "height": 4, "eye": [0,0,0], "target": [1,0,0]}', "'K' or 'fov_deg'"),
    ('{"width": 8, "height": 4, "fov_deg": 50, "world_to_cam": [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}',
     "not a rotation"),
    ('{"width": 8, "height": 4, "fov_deg": 50, "world_to_cam": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,1,1]]}',
     "last row"),
    ('{"width": 8, "height": 4, "K": [[0,0,4],[0,8,2],[0,0,1]], "eye": [0,0,0], "target": [1,0,0]}',
     "focal"),
    ('{"width": 8, "height": 4, "fov_deg": 50, "eye": [0,0,0], "target": [1,0,0], "near": "0.1"}',
     "'near'"),
])
def test_bad_camera_files_are_named_with_the_problem(tmp_path, content, words) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FileFormatError, match=words) as error:
        camera_from_json(path)
    assert str(path) in str(error.value)

"""Capture-shaped clips and videos for tests that need them before (or without) a real capture.

A demo walk seen by a known camera, with the optional clip fields a capture writes
(source_frames, frame_lost, keypoints_2d), and a video whose frames say which
frame they are (their number in binary on a stripe at the right edge), so a test
can tell which video frame an overlay or a Blender render shows.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from avatar_capture.core.capture.overlay import project
from avatar_capture.core.clip import Camera, MotionClip
from avatar_capture.core.demo_motion import make_demo_clip


BACKGROUND = 100  # grey level of every numbered video frame
CODE_BITS = 8  # a frame's number is written in binary on a stripe at the right edge


def stripe_width(width: int) -> int:
    return max(4, width // 20)


def frame_number(image: np.ndarray) -> int:
    """The number numbered_video wrote on this frame (also after scaling or re-encoding)."""
    height, width = image.shape[:2]
    stripe = image[:, width - stripe_width(width) // 2 - 1].astype(float).mean(axis=1)  # (h,)
    cells = np.array_split(stripe, CODE_BITS)
    return sum(1 << bit for bit, cell in enumerate(cells) if np.median(cell) > 128)


def look_at(eye, target) -> np.ndarray:
    """world_to_cam (4, 4), OpenCV axes (x right, y down, z forward), Z-up world, no roll."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross([0.0, 0.0, -1.0], z)
    x /= np.linalg.norm(x)
    rotation = np.stack((x, np.cross(z, x), z))
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, -rotation @ eye
    return out


def captured_walk(rig, frames: int, size: tuple[int, int], first_video_frame: int,
                  lost: tuple[int, ...] = ()) -> MotionClip:
    """The demo walk (frames at 30 fps) filmed from the side by a static camera of image size
    (w, h), as a capture of video frames first_video_frame.. would store it."""
    clip = make_demo_clip(rig, seconds=frames / 30.0)
    width, height = size
    focal = 0.9 * width
    K = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    middle = clip.root_translation.mean(axis=0)
    world_to_cam = np.repeat(look_at(middle + [4.5, 0.0, 0.0], [middle[0], middle[1], 0.9])[None], frames, 0)
    camera = Camera(K, world_to_cam, (width, height))
    frame_lost = np.zeros(frames, bool)
    frame_lost[list(lost)] = True
    keypoints, _ = project(clip.landmarks_world, K, world_to_cam)
    extras = {
        "source_frames": np.arange(frames) + first_video_frame,
        "frame_lost": frame_lost,
        "keypoints_2d": keypoints,
        "keypoints_2d_visibility": np.ones(keypoints.shape[:2]),
    }
    return dataclasses.replace(clip, camera=camera, extras=extras)


def numbered_video(path: Path, frames: int, size: tuple[int, int], fps: float = 30.0) -> Path:
    """An mp4 of flat grey BACKGROUND frames, each with its number in binary on a stripe at the
    right edge (CODE_BITS cells from the top, white = 1): see frame_number."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    rows = np.array_split(np.arange(height), CODE_BITS)
    for i in range(frames):
        image = np.full((height, width, 3), BACKGROUND, np.uint8)
        for bit, cell in enumerate(rows):
            image[cell[0]:cell[-1] + 1, width - stripe_width(width):] = 255 if i >> bit & 1 else 0
        writer.write(image)
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    return images

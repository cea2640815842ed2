"""Camera motion from background tracks, on synthetic videos whose camera path is known.

Each video films a textured box room (ray-cast per pixel, so walls at different depths give real
parallax) from a known camera path, with a textured "person" ellipse moving in the foreground and its
mask at half resolution. The mp4 is written with cv2.VideoWriter and read back through the capture's
own video reader, so compression and decoding are part of the test.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_capture.core.capture.camera_motion import CameraMotion, estimate_camera_motion
from avatar_capture.core.capture.video import probe_video

W, H = 320, 240
K = np.array([[260.0, 0.0, (W - 1) / 2], [0.0, 260.0, (H - 1) / 2], [0.0, 0.0, 1.0]])  # ~63 deg wide
ROOM_LO = np.array([-3.0, -1.6, -3.0])  # OpenCV axes of the first camera: y down, floor 1.4 m below it
ROOM_HI = np.array([3.0, 1.4, 7.0])
MASK_SCALE = 2.0  # full-resolution pixels per mask pixel
FRAMES = 48


def turned(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """world_to_cam rotation of a camera turned right by yaw and down by pitch."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    yaw = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    pitch = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return (yaw @ pitch).T


def room_textures(rng: np.random.Generator) -> list[np.ndarray]:
    """One grey texture per wall: smooth blobs at two scales (corners LK can follow)."""
    textures = []
    for _ in range(6):
        tex = sum(cv2.resize(rng.random((n, n)), (512, 512), interpolation=cv2.INTER_CUBIC) for n in (24, 96))
        textures.append((30 + 195 * (tex - tex.min()) / np.ptp(tex)).astype(np.float32))
    return textures


def render_room(textures: list[np.ndarray], R: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Grey image (H,W) float32 of the room from a camera with world_to_cam rotation R at `centre`."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T @ R  # world directions
    with np.errstate(divide="ignore"):
        distance = (np.where(rays > 0, ROOM_HI, ROOM_LO) - centre) / rays
    distance = np.where(np.isfinite(distance) & (distance > 0), distance, np.inf)
    axis = np.argmin(distance, axis=-1)  # inside a box the nearest wall along the ray is the one seen
    hit = centre + np.take_along_axis(distance, axis[..., None], -1) * rays
    image = np.zeros((H, W), np.float32)
    for a in range(3):
        b, c = [i for i in range(3) if i != a]
        tu = ((hit[..., b] - ROOM_LO[b]) / (ROOM_HI[b] - ROOM_LO[b]) * 511).astype(np.float32)
        tv = ((hit[..., c] - ROOM_LO[c]) / (ROOM_HI[c] - ROOM_LO[c]) * 511).astype(np.float32)
        for side in range(2):
            wall = (axis == a) & ((rays[..., a] > 0) == bool(side))
            image[wall] = cv2.remap(textures[2 * a + side], tu, tv, cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)[wall]
    return image


def film(path: Path, rotations, centres, person: dict, background_contrast: float = 1.0,
         blank: tuple[int, ...] = ()) -> np.ndarray:
    """Write the room seen along the camera path, a person ellipse on top; returns its masks (T,H/2,W/2).

    person: centre (x, y) px at frame 0, velocity (px/frame), axes (px). Frames in `blank` are flat grey.
    """
    rng = np.random.default_rng(0)
    textures = [128 + background_contrast * (t - 128) for t in room_textures(rng)]
    person_texture = (cv2.resize(rng.random((40, 40)), (W, H), interpolation=cv2.INTER_NEAREST) * 255)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (W, H))
    masks = []
    for i, (R, centre) in enumerate(zip(rotations, centres)):
        image = render_room(textures, R, np.asarray(centre, float))
        x, y = np.add(person["centre"], np.multiply(person["velocity"], i))
        mask = np.zeros((H, W), np.uint8)
        cv2.ellipse(mask, (int(x), int(y)), person["axes"], 0, 0, 360, 255, -1)
        moved = cv2.warpAffine(person_texture.astype(np.float32), np.float32([[1, 0, x - W / 2], [0, 1, y - H / 2]]),
                               (W, H), borderMode=cv2.BORDER_WRAP)
        image[mask > 0] = moved[mask > 0]
        if i in blank:
            image[:] = 128
        writer.write(cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
        masks.append(cv2.resize(mask, (W // 2, H // 2), interpolation=cv2.INTER_NEAREST))
    writer.release()
    return np.array(masks)


def rotation_errors_deg(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    cos = (np.trace(np.swapaxes(estimated, -1, -2) @ truth, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def relative_to_first(rotations: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true path expressed in the first frame's camera, as estimate_camera_motion reports it."""
    return rotations @ rotations[0].T, (centres - centres[0]) @ rotations[0].T


def estimate(path: Path, masks, frames=None, report=None) -> CameraMotion:
    video = probe_video(path)
    frames = np.arange(video.frame_count) if frames is None else frames
    return estimate_camera_motion(video, frames, K, None if masks is None else masks[frames], MASK_SCALE, report)


SMALL_PERSON = {"centre": (150, 140), "velocity": (1.0, 0.0), "axes": (35, 70)}


def test_static_camera_gives_identity(tmp_path):
    path = tmp_path / "static.mp4"
    masks = film(path, [np.eye(3)] * FRAMES, [np.zeros(3)] * FRAMES, SMALL_PERSON)
    calls = []
    motion = estimate(path, masks, report=lambda stage, fraction, message: calls.append((stage, fraction)))
    assert motion.rotations.shape == (FRAMES, 3, 3) and motion.translations.shape == (FRAMES, 3)
    assert rotation_errors_deg(motion.rotations, np.eye(3)).max() < 0.1
    assert np.all(motion.translations == 0.0)  # no parallax, no translation at all
    assert motion.reliable.all() and motion.inlier_counts.min() >= 50
    assert np.all(motion.scale_segments == 0)
    assert calls and all(stage == "camera motion" and 0.0 <= fraction <= 1.0 for stage, fraction in calls)


def test_pure_pan_gives_rotation_and_zero_translation(tmp_path):
    path = tmp_path / "pan.mp4"
    rotations = np.array([turned(35 * i / FRAMES, 6 * np.sin(3 * i / FRAMES)) for i in range(FRAMES)])
    masks = film(path, rotations, [np.zeros(3)] * FRAMES, SMALL_PERSON)
    frames = np.arange(6, FRAMES)  # a clip that starts after the video's first frame
    motion = estimate(path, masks, frames)
    truth, _ = relative_to_first(rotations[frames], np.zeros((len(frames), 3)))
    errors = rotation_errors_deg(motion.rotations, truth)
    assert errors.max() < 0.5, errors
    assert rotation_errors_deg(motion.rotations[-1], np.eye(3)) > 25  # it did turn
    assert np.all(motion.translations == 0.0)
    assert motion.reliable.all()


def test_walking_and_panning_camera_path_up_to_scale(tmp_path):
    path = tmp_path / "walk.mp4"
    rotations = np.array([turned(20 * i / FRAMES, 3 * np.sin(4 * i / FRAMES)) for i in range(FRAMES)])
    centres = np.array([[0.4 * i / FRAMES, 0.05 * np.sin(i / 3), 1.5 * i / FRAMES] for i in range(FRAMES)])
    masks = film(path, rotations, centres, {"centre": (160, 140), "velocity": (0.5, 0.0), "axes": (35, 70)})
    motion = estimate(path, masks)
    true_rotations, true_centres = relative_to_first(rotations, centres)
    assert np.allclose(motion.rotations[0], np.eye(3)) and np.allclose(motion.translations[0], 0.0)
    assert rotation_errors_deg(motion.rotations, true_rotations).max() < 1.0
    estimated = motion.centres
    assert np.linalg.norm(estimated, axis=1).max() == pytest.approx(1.0)  # the documented normalisation
    scale = np.sum(estimated * true_centres) / np.sum(estimated * estimated)
    path_length = np.linalg.norm(np.diff(true_centres, axis=0), axis=1).sum()
    assert np.linalg.norm(scale * estimated - true_centres, axis=1).max() < 0.03 * path_length
    assert motion.reliable.all()


def test_person_mask_keeps_a_large_moving_foreground_out(tmp_path):
    """A big, strongly textured object sliding across a static shot: it drags an unmasked estimate along."""
    path = tmp_path / "occluder.mp4"
    masks = film(path, [np.eye(3)] * FRAMES, [np.zeros(3)] * FRAMES,
                 {"centre": (110, 120), "velocity": (2.5, 0.0), "axes": (110, 110)}, background_contrast=0.3)

    def static(motion: CameraMotion) -> bool:
        return rotation_errors_deg(motion.rotations, np.eye(3)).max() < 0.5 and np.all(motion.translations == 0)

    assert not static(estimate(path, None))
    assert static(estimate(path, masks))


def test_unusable_frames_are_bridged_and_marked(tmp_path):
    path = tmp_path / "flash.mp4"
    rotations = np.array([turned(30 * i / FRAMES) for i in range(FRAMES)])
    blank = (20, 21, 22)
    masks = film(path, rotations, [np.zeros(3)] * FRAMES, SMALL_PERSON, blank=blank)
    motion = estimate(path, masks)
    assert np.flatnonzero(~motion.reliable).tolist() == list(blank)
    # Tracks resume after the gap, and the gap is interpolated along the (steady) pan.
    assert rotation_errors_deg(motion.rotations, rotations).max() < 0.5


def test_rejects_inconsistent_arguments(tmp_path):
    path = tmp_path / "short.mp4"
    masks = film(path, [np.eye(3)] * 4, [np.zeros(3)] * 4, SMALL_PERSON)
    video = probe_video(path)
    with pytest.raises(ValueError, match="ascending"):
        estimate_camera_motion(video, np.array([2, 1, 3]), K, None, MASK_SCALE)
    with pytest.raises(ValueError, match="masks"):
        estimate_camera_motion(video, np.arange(4), K, masks[:2], MASK_SCALE)

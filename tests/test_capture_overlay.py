"""The overlay video (core/capture/overlay.py) with the real Anny body: right frames, right places,
right size, atomic writes and clear errors."""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import pytest
from capture_factory import BACKGROUND, captured_walk, frame_number, numbered_video, read_video, stripe_width

from avatar_capture.core.capture import overlay
from avatar_capture.core.capture.overlay import outline_vertices, project, write_overlay
from avatar_capture.core.errors import AvatarCaptureError, FileFormatError

SIZE = (320, 240)
FRAMES = 24
FIRST = 5  # the clip starts at video frame 5
LOST = (3, 4)


@pytest.fixture(scope="module")
def walk(anny_rig):
    return captured_walk(anny_rig, FRAMES, SIZE, FIRST, lost=LOST)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return numbered_video(tmp_path_factory.mktemp("video") / "numbered.mp4", FIRST + FRAMES + 6, SIZE)


def body_box(rig, clip, t: int, margin: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) around every projected mesh vertex of clip frame t."""
    vertices = rig.skin(rig.pose(clip.rotations[t:t + 1], clip.root_translation[t:t + 1]))
    pixels, _ = project(vertices, clip.camera.K, clip.camera.world_to_cam[t:t + 1])
    (x0, y0), (x1, y1) = pixels[0].min(axis=0), pixels[0].max(axis=0)
    return int(x0) - margin, int(y0) - margin, int(x1) + margin, int(y1) + margin


def test_project_matches_the_pinhole_model():
    K = np.array([[500.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    world_to_cam = np.eye(4)[None]
    pixels, depth = project(np.array([[[0.2, -0.1, 2.0], [0.0, 0.0, -1.0]]]), K, world_to_cam)
    assert pixels[0, 0] == pytest.approx([320 + 500 * 0.1, 240 - 400 * 0.05])
    assert depth[0, 0] == 2.0 and np.isnan(pixels[0, 1]).all()  # behind the camera


def test_overlay_draws_each_clip_frame_on_its_video_frame(anny_rig, walk, video, tmp_path):
    out = tmp_path / "overlay.mp4"
    started = time.perf_counter()
    stats = write_overlay(video, walk, out, anny_rig)
    print(f"\noverlay {SIZE[0]}x{SIZE[1]}: {stats.ms_per_frame:.1f} ms per frame "
          f"({time.perf_counter() - started:.2f} s for {stats.frames} frames)")
    assert (stats.frames, stats.size) == (FRAMES, SIZE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]  # no staging debris
    images = read_video(out)
    assert len(images) == FRAMES and images[0].shape == (SIZE[1], SIZE[0], 3)
    for t, image in enumerate(images):
        x0, y0, x1, y1 = body_box(anny_rig, walk, t, margin=6)
        background = np.ones(image.shape[:2], bool)
        background[max(0, y0):y1, max(0, x0):x1] = False
        background[:, SIZE[0] - stripe_width(SIZE[0]) - 3:] = False  # the frame number
        if t in LOST:
            background[:30, :140] = False  # the banner
        assert frame_number(image) == FIRST + t, f"clip frame {t} drawn on the wrong video frame"
        # Away from the body the video is untouched.
        grey = BACKGROUND
        changed = np.abs(image.astype(int) - grey).max(axis=2) > 40
        assert changed[background].mean() < 0.002
        # On the body: the skeleton's bones and the silhouette (a third of the box or more changed).
        inside = changed[max(0, y0):y1, max(0, x0):x1]
        assert inside.mean() > 0.2, f"frame {t}: too little drawn on the body"
        pelvis = walk.landmark_names.index("pelvis")
        u, v = np.round(project(walk.landmarks_world[t:t + 1, [pelvis]], walk.camera.K,
                                walk.camera.world_to_cam[t:t + 1])[0][0, 0]).astype(int)
        assert changed[v - 2:v + 3, u - 2:u + 3].any()
        banner = image[5:20, 5:100].reshape(-1, 3).mean(axis=0)
        is_red = banner[2] > 150 and banner[0] < 100
        assert is_red == (t in LOST), f"frame {t}: 'subject lost' banner wrong"


def test_outline_vertices_stand_for_the_whole_mesh(anny_rig, walk):
    """The silhouette from the few outline vertices covers the projection of every mesh vertex."""
    chosen, parts = outline_vertices(anny_rig)
    assert len(chosen) < len(anny_rig.vertices_rest) / 2
    t = 10
    frames = anny_rig.pose(walk.rotations[t:t + 1], walk.root_translation[t:t + 1])
    everything, _ = project(anny_rig.skin(frames), walk.camera.K, walk.camera.world_to_cam[t:t + 1])
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    overlay._silhouette(image, everything[0][chosen], parts, 1)
    mask = cv2.dilate((image.max(axis=2) > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    u, v = np.round(everything[0]).astype(int).T
    inside = (u >= 0) & (u < SIZE[0]) & (v >= 0) & (v < SIZE[1])
    assert inside.mean() > 0.99
    covered = mask[v[inside], u[inside]].mean()
    assert covered > 0.99, f"only {covered:.1%} of the mesh lies inside the silhouette"
    assert mask.mean() < 0.25  # and it is a body, not the whole frame


def test_large_video_is_written_at_most_max_side_skeleton_only(walk, tmp_path):
    big = (1280, 960)  # 4x the clip camera's image size, with K scaled to match
    K = walk.camera.K.copy()
    K[:2] *= 4
    clip = dataclasses.replace(walk, camera=dataclasses.replace(walk.camera, K=K, image_size=big))
    video = numbered_video(tmp_path / "big.mp4", FIRST + FRAMES, big)
    stats = write_overlay(video, clip, tmp_path / "small.mp4", max_side=400)
    assert stats.size == (400, 300) and stats.frames == FRAMES
    image = read_video(tmp_path / "small.mp4")[7]
    knee = walk.landmark_names.index("left_knee")
    u, v = np.round(project(walk.landmarks_world[7:8, [knee]], K, walk.camera.world_to_cam[7:8])[0][0, 0]
                    * 400 / 1280).astype(int)
    assert frame_number(image) == FIRST + 7
    assert np.abs(image[v - 1:v + 2, u - 1:u + 2].astype(int) - BACKGROUND).max() > 40


def test_overlay_refuses_what_it_cannot_draw(walk, video, tmp_path):
    with pytest.raises(FileFormatError, match="must be an .mp4"):
        write_overlay(video, walk, tmp_path / "overlay.avi")
    with pytest.raises(AvatarCaptureError, match="no camera"):
        write_overlay(video, dataclasses.replace(walk, camera=None), tmp_path / "o.mp4")
    other = numbered_video(tmp_path / "other.mp4", 10, (160, 120))
    with pytest.raises(AvatarCaptureError, match="not the clip's video"):
        write_overlay(other, walk, tmp_path / "o.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(FileFormatError, match="notes.mp4"):
        write_overlay(text, walk, tmp_path / "o.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4", "other.mp4"]


def test_a_failure_half_way_leaves_no_file(walk, video, tmp_path, monkeypatch):
    drawn = []

    def draw_then_fail(self, image, t, zoom):
        drawn.append(t)
        if len(drawn) == 5:
            raise RuntimeError("disk full, say")
        return image

    monkeypatch.setattr(overlay._Drawer, "draw", draw_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_overlay(video, walk, tmp_path / "overlay.mp4")
    assert list(tmp_path.iterdir()) == []

"""Make the project's own capture demo video, assets/demo_capture.mp4, and its ground-truth clip.

Why: `make demo` and the capture tests need a real video of a person that ships
with the repository (no downloads, no ../shared). This renders the default Anny
body performing the procedural demo walk (core/demo_motion.py) headless in
Blender with garment colours, seen by a static camera from the front-left three
quarters while it walks diagonally across the view (bench/render_person.py).
The ground truth (the rendered body's own joints, landmarks, contacts and the
camera) goes to a clip file that is not committed: rerun this tool to compare.

Usage (repository root, the project's .venv):
    .venv/bin/python tools/make_demo_video.py [--video assets/demo_capture.mp4] [--truth out/demo_capture_gt.npz]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 640, 480
HORIZONTAL_FOV_DEGREES = 62.0
SECONDS, FPS, SPEED = 4.0, 30.0, 1.0  # seconds, frames per second, metres per second
CAMERA_EYE = np.array([3.6, -2.4, 1.3])  # metres; the walk is centred on the origin and heads along -Y
CAMERA_TARGET = np.array([0.0, -0.5, 0.85])
MARGIN_PIXELS = 8


def demo_truth_clip(rig):
    """The demo walk centred on the origin, with the static camera: a MotionClip (camera included)."""
    from avatar_capture.bench.cameras import intrinsics, look_at, project
    from avatar_capture.core.clip import Camera, clip_from_pose
    from avatar_capture.core.demo_motion import make_demo_clip
    from avatar_capture.core.errors import AvatarCaptureError

    walk = make_demo_clip(rig, seconds=SECONDS, fps=FPS, speed=SPEED)
    root = walk.root_translation.copy()
    root[:, :2] -= 0.5 * (root[0, :2] + root[-1, :2])
    camera = Camera(intrinsics(WIDTH, HEIGHT, HORIZONTAL_FOV_DEGREES),
                    np.repeat(look_at(CAMERA_EYE, CAMERA_TARGET), walk.frame_count, axis=0), (WIDTH, HEIGHT))
    clip = clip_from_pose(rig, walk.rotations, root, walk.fps, walk.contacts, camera)
    pixels = project(camera, rig.skin(rig.pose(clip.rotations, clip.root_translation)))
    low, high = pixels.min(axis=(0, 1)), pixels.max(axis=(0, 1))
    if np.any(low < MARGIN_PIXELS) or np.any(high > np.array([WIDTH, HEIGHT]) - MARGIN_PIXELS):
        raise AvatarCaptureError(f"the body leaves the demo frame: pixels span {low.round()}..{high.round()}")
    return clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=REPO / "assets" / "demo_capture.mp4")
    parser.add_argument("--truth", type=Path, default=REPO / "out" / "demo_capture_gt.npz",
                        help="ground-truth clip file (not committed)")
    args = parser.parse_args()

    from avatar_capture.bench.render_person import render_person_video
    from avatar_capture.core.body.models import cached_rig
    from avatar_capture.core.clip import save_clip
    from avatar_capture.core.settings import ComputeSettings

    rig, _ = cached_rig(ComputeSettings())
    clip = demo_truth_clip(rig)
    args.video.parent.mkdir(parents=True, exist_ok=True)
    args.truth.parent.mkdir(parents=True, exist_ok=True)
    stats = render_person_video(clip, rig, args.video)
    save_clip(clip, args.truth)
    print(f"wrote {args.video} ({stats.file_bytes / 1e6:.2f} MB, {stats.frames} frames, "
          f"{stats.seconds_per_frame:.2f} s per frame) and {args.truth}")


if __name__ == "__main__":
    main()

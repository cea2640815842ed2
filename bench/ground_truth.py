"""Ground-truth capture sequences: the Anny body driven by CMU mocap, rendered through known cameras.

Why: a capture can only be scored against a video whose body, joints and
camera are known exactly. Each sequence here is a BVH clip retargeted onto an
Anny body (by landmark directions, core.pose_transfer.pose_from_landmarks),
grounded, given foot contacts, and rendered headless in Blender as a clothed-
looking person in a textured set (bench/render_person.py), from a static or a
moving camera. The truth is the rendered body's own clip: its landmarks,
joints, contacts and camera.

Retargeting choices:
  * the BVH is resampled to 30 fps by keeping every n-th frame and scaled so
    its legs are as long as the body's (strides then fit the body's legs);
  * targets: hips, knees, ankles, shoulders, elbows and wrists at the mocap
    joints; pelvis and neck at the midpoints of hips and shoulders (as both our
    landmarks and BlazePose define them); ears and nose turned with the mocap
    head; the foot (heel to toe) along the mocap ankle-to-toe direction, pitched
    by one constant per clip so the foot is as flat on the ground in stance as
    the body's rest foot (mocap skeletons do not agree on the foot's rest pitch);
  * the body is lowered or raised so its flat feet stand on Z = 0, following
    the mocap floor slowly over time (_floor_height), and its path is centred
    on the origin;
  * contacts: a heel or toe is in contact where it is within CONTACT_HEIGHT_M of
    its standing height and moves under CONTACT_STEP_M per frame on both sides of
    the frame (so a perfect capture never "skates" on a true contact).

Usage: .venv/bin/python bench/ground_truth.py [--out DIR] [--only static|moving] [--bvh-dir DIR]
Prints JSON (files, frames, render seconds per frame). Default folder:
$AVATAR_CAPTURE_CACHE/bench (or the user cache's bench/); never the repository.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from avatar_capture.bench.cameras import intrinsics, look_at, project
from avatar_capture.core.bvh import BvhMotion, BvhPose, read_bvh, world_pose
from avatar_capture.core.clip import Camera, MotionClip, clip_from_pose, load_clip
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.landmarks import CONTACT_NAMES, LANDMARK_NAMES
from avatar_capture.core.rig import RiggedBody
from avatar_capture.core.rotations import axis_angle_to_quat, quat_to_matrix
from avatar_capture.core.settings import ComputeSettings

BVH_DIR = Path(__file__).resolve().parents[2] / "shared" / "media" / "bvh"
FPS = 30.0
WIDTH, HEIGHT = 640, 480
HORIZONTAL_FOV_DEGREES = 60.0
BODY_SHAPE = {"height": 0.57}  # Anny phenotype: about 1.70 m tall
CONTACT_HEIGHT_M = 0.03
CONTACT_STEP_M = 0.005  # per frame at 30 fps: 0.15 m/s
CAMERA_HEIGHT_M = 1.4
LOOK_AT_HEIGHT_M = 0.9
FRAME_MARGIN = 0.06  # the body keeps this share of the image size from every edge
SMOOTHING_FRAMES = 31  # the moving camera follows the path averaged over about a second

# Our landmark -> mocap joint names, first found wins (CMU files come with two naming schemes; in the
# second, "LeftShoulder" is the shoulder joint, in the first it is the clavicle and "LeftArm" the shoulder).
_JOINTS = {
    "{side}_hip": ("{Side}UpLeg", "{Side}Hip"),
    "{side}_knee": ("{Side}Leg", "{Side}Knee"),
    "{side}_ankle": ("{Side}Foot", "{Side}Ankle"),
    "{side}_toe": ("{Side}ToeBase", "{Side}Toe"),
    "{side}_shoulder": ("{Side}Arm", "{Side}Shoulder"),
    "{side}_elbow": ("{Side}ForeArm", "{Side}Elbow"),
    "{side}_wrist": ("{Side}Hand", "{Side}Wrist"),
}
_HEAD_JOINT = "Head"
_STAMP_FIELD = "bench_sequence"  # extra field of the truth clip: the stamp of what it was made from
GROUND_TRUTH_VERSION = 1  # raise whenever retargeting, cameras or rendering change what is made


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One benchmark sequence: `frames` frames at 30 fps of a CMU clip from `start` (30 fps frames on)."""

    name: str
    bvh_file: str
    start: int
    frames: int | None
    moving_camera: bool


SEQUENCES = (
    Sequence("static", "yuki-koyama_bvh11__131_03.bvh", 0, 240, moving_camera=False),
    Sequence("moving", "facebookresearch_fairmotion__01_01.bvh", 0, 240, moving_camera=True),
)


def stamp(sequence: Sequence) -> str:
    """What a rendered sequence was made from; a truth clip with another stamp is stale."""
    return json.dumps({**dataclasses.asdict(sequence), "shape": BODY_SHAPE, "version": GROUND_TRUTH_VERSION},
                      sort_keys=True)


def is_rendered(folder: Path, sequence: Sequence) -> bool:
    """True when the sequence's video and truth clip exist and were made from the current definition."""
    video, truth = sequence_files(folder, sequence.name)
    if not (video.is_file() and truth.is_file()):
        return False
    made_from = load_clip(truth).extras.get(_STAMP_FIELD)
    return made_from is not None and str(made_from) == stamp(sequence)


def default_folder() -> Path:
    return ComputeSettings().cache_path / "bench"


def sequence_files(folder: Path, name: str) -> tuple[Path, Path]:
    """(video, ground-truth clip) paths of a sequence."""
    return folder / f"{name}.mp4", folder / f"{name}_truth.npz"


def load_sequence(folder: Path, name: str) -> tuple[Path, MotionClip]:
    """The video path and ground-truth clip of a rendered sequence."""
    video, truth = sequence_files(folder, name)
    if not (video.is_file() and truth.is_file()):
        raise AvatarCaptureError(f"sequence '{name}' is not rendered in {folder}: run bench/ground_truth.py")
    return video, load_clip(truth)


def body_rig(settings: ComputeSettings) -> RiggedBody:
    """The benchmark's body: Anny, about 1.70 m tall."""
    from avatar_capture.core.body.models import cached_rig

    return cached_rig(settings, body_model="anny", shape=BODY_SHAPE)[0]


def retarget(bvh: BvhMotion, rig: RiggedBody, start: int = 0, frames: int | None = None) -> MotionClip:
    """The body performing the BVH clip at 30 fps, grounded and centred, with contacts; no camera."""
    from avatar_capture.core.pose_transfer import pose_from_landmarks

    step = max(1, int(round(bvh.fps / FPS)))
    pose = world_pose(bvh)
    stop = None if frames is None else start + frames
    pose = BvhPose(*(array[::step][start:stop] for array in (pose.positions, pose.rotations, pose.end_sites)))
    if len(pose.positions) < 2:
        raise AvatarCaptureError(f"{bvh.path}: fewer than 2 frames from frame {start} at {FPS:g} fps")
    rest = rig.landmarks(rig.skeleton.rest_frames_world[None])[0]  # (23, 3) standing at rest
    targets = landmark_targets(bvh, pose, rest, scale=_leg_length(rest) / _bvh_leg_length(bvh, pose))
    rotations, root = pose_from_landmarks(rig, targets)

    landmarks = rig.landmarks(rig.pose(rotations, root))
    feet = [LANDMARK_NAMES.index(n) for n in CONTACT_NAMES]
    standing = rest[feet, 2]  # (4,) heights of heels and toes when standing
    lift = landmarks[:, feet, 2] - standing  # (T, 4): left heel, left toe, right heel, right toe
    root[:, 2] -= _floor_height(0.5 * (lift[:, 0::2] + lift[:, 1::2]).min(axis=1), int(round(FPS)))
    pelvis = landmarks[:, LANDMARK_NAMES.index("pelvis"), :2]
    root[:, :2] -= 0.5 * (pelvis.min(axis=0) + pelvis.max(axis=0))
    feet_world = rig.landmarks(rig.pose(rotations, root))[:, feet]
    return clip_from_pose(rig, rotations, root, bvh.fps / step, contacts_of(feet_world, standing))


def landmark_targets(bvh: BvhMotion, pose: BvhPose, rest: np.ndarray, scale: float) -> np.ndarray:
    """Targets (T, 23, 3) in LANDMARK_NAMES order for pose_from_landmarks (NaN = unknown).

    rest (23, 3) are the body's rest landmarks; scale multiplies the mocap positions.
    """
    names = {name: i for i, name in enumerate(bvh.joint_names)}
    positions = scale * pose.positions
    targets = np.full((len(positions), len(LANDMARK_NAMES), 3), np.nan)
    for side, Side in (("left", "Left"), ("right", "Right")):
        for landmark, candidates in _JOINTS.items():
            joint = _find(names, [c.format(Side=Side) for c in candidates], bvh.path)
            targets[:, LANDMARK_NAMES.index(landmark.format(side=side))] = positions[:, joint]
    index = {name: i for i, name in enumerate(LANDMARK_NAMES)}
    targets[:, index["pelvis"]] = 0.5 * (targets[:, index["left_hip"]] + targets[:, index["right_hip"]])
    targets[:, index["neck"]] = 0.5 * (targets[:, index["left_shoulder"]] + targets[:, index["right_shoulder"]])

    head = pose.rotations[:, _find(names, [_HEAD_JOINT], bvh.path)]
    for name in ("nose", "left_ear", "right_ear"):
        targets[:, index[name]] = targets[:, index["neck"]] + head @ (rest[index[name]] - rest[index["neck"]])

    for side, Side in (("left", "Left"), ("right", "Right")):
        ankle, toe = index[f"{side}_ankle"], index[f"{side}_toe"]
        foot = pose.rotations[:, _find(names, [c.format(Side=Side) for c in _JOINTS["{side}_ankle"]], bvh.path)]
        direction = _flattened_foot(targets[:, ankle], targets[:, toe], foot[:, :, 0],
                                    rest[toe] - rest[index[f"{side}_heel"]])
        targets[:, index[f"{side}_heel"]] = targets[:, ankle]
        targets[:, toe] = targets[:, ankle] + direction
    return targets


def contacts_of(feet: np.ndarray, standing: np.ndarray) -> np.ndarray:
    """Contacts (T, 4) 0/1 of heel and toe points (T, 4, 3) standing at heights standing (4,) when down."""
    low = feet[..., 2] - standing < CONTACT_HEIGHT_M
    step = np.linalg.norm(np.diff(feet, axis=0), axis=-1)  # (T-1, 4)
    still = np.ones(low.shape, dtype=bool)
    still[1:] &= step < CONTACT_STEP_M
    still[:-1] &= step < CONTACT_STEP_M
    return (low & still).astype(np.float64)


def static_camera(clip: MotionClip, rig: RiggedBody) -> Camera:
    """A fixed camera seeing the whole performance from the front-left three quarters, as close as fits."""
    pelvis = clip.landmarks_world[:, LANDMARK_NAMES.index("pelvis")]
    centre = np.array([*0.5 * (pelvis[:, :2].min(axis=0) + pelvis[:, :2].max(axis=0)), LOOK_AT_HEIGHT_M])
    travel = pelvis[-1, :2] - pelvis[0, :2]
    heading = np.arctan2(travel[1], travel[0]) if np.linalg.norm(travel) > 0.5 else -0.5 * np.pi
    azimuth = heading + np.radians(45.0)  # from ahead of the path and to its left

    def at(distance: float) -> Camera:
        eye = centre + distance * np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
        eye[2] = CAMERA_HEIGHT_M
        return Camera(intrinsics(WIDTH, HEIGHT, HORIZONTAL_FOV_DEGREES),
                      np.repeat(look_at(eye, centre), clip.frame_count, axis=0), (WIDTH, HEIGHT))

    return _closest_fitting(at, clip, rig)


def moving_camera(clip: MotionClip, rig: RiggedBody) -> Camera:
    """A camera that follows the performer's smoothed path while orbiting 70 degrees and dollying in.

    The orbit pans the view over the background; the distance shrinks by a quarter
    over the clip; both change smoothly (cosine ease), as a hand-held or dolly shot would.
    """
    pelvis = clip.landmarks_world[:, LANDMARK_NAMES.index("pelvis")]
    kernel = np.ones(SMOOTHING_FRAMES) / SMOOTHING_FRAMES
    padded = np.pad(pelvis[:, :2], ((SMOOTHING_FRAMES // 2,) * 2, (0, 0)), mode="edge")
    path = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(2)], axis=1)
    ease = 0.5 - 0.5 * np.cos(np.pi * np.linspace(0.0, 1.0, clip.frame_count))
    azimuth = np.radians(-60.0 + 70.0 * ease)
    dolly = 1.0 - 0.25 * ease
    target = np.column_stack([path, np.full(len(path), LOOK_AT_HEIGHT_M)])

    def at(distance: float) -> Camera:
        offset = distance * dolly[:, None] * np.column_stack([np.cos(azimuth), np.sin(azimuth)])
        eye = np.column_stack([path + offset, np.full(len(path), CAMERA_HEIGHT_M)])
        return Camera(intrinsics(WIDTH, HEIGHT, HORIZONTAL_FOV_DEGREES), look_at(eye, target), (WIDTH, HEIGHT))

    return _closest_fitting(at, clip, rig)


def make_sequence(sequence: Sequence, rig: RiggedBody, folder: Path, bvh_dir: Path = BVH_DIR) -> dict:
    """Retarget, place the camera, render the video and save the truth; returns what was written."""
    from avatar_capture.bench.render_person import render_person_video
    from avatar_capture.core.clip import save_clip

    bvh_path = bvh_dir / sequence.bvh_file
    clip = retarget(read_bvh(bvh_path), rig, sequence.start, sequence.frames)
    camera = (moving_camera if sequence.moving_camera else static_camera)(clip, rig)
    clip = clip_from_pose(rig, clip.rotations, clip.root_translation, clip.fps, clip.contacts, camera)
    clip = dataclasses.replace(clip, extras={_STAMP_FIELD: np.array(stamp(sequence))})
    video, truth = sequence_files(folder, sequence.name)
    stats = render_person_video(clip, rig, video)
    save_clip(clip, truth)
    pelvis = clip.landmarks_world[:, LANDMARK_NAMES.index("pelvis"), :2]
    return {
        "name": sequence.name, "bvh": str(bvh_path), "video": str(video), "truth": str(truth),
        "frames": clip.frame_count, "fps": round(clip.fps, 4), "moving_camera": sequence.moving_camera,
        "distance_travelled_m": round(float(np.sum(np.linalg.norm(np.diff(pelvis, axis=0), axis=-1))), 3),
        "contact_share": round(float(np.mean(clip.contacts >= 0.5)), 3),
        "render_s": round(stats.seconds, 1), "render_s_per_frame": round(stats.seconds_per_frame, 3),
        "video_bytes": stats.file_bytes,
    }


def _closest_fitting(camera_at, clip: MotionClip, rig: RiggedBody) -> Camera:
    """camera_at(distance) for the smallest distance (metres, 0.25 steps from 3) at which the body stays in frame."""
    sample = slice(None, None, 3)
    vertices = rig.skin(rig.pose(clip.rotations[sample], clip.root_translation[sample]))
    size = np.array([WIDTH, HEIGHT])
    for distance in np.arange(3.0, 15.0, 0.25):
        camera = camera_at(distance)
        sampled = Camera(camera.K, camera.world_to_cam[sample], camera.image_size)
        pixels = project(sampled, vertices)
        if pixels.min() >= 0 and np.all(pixels.min(axis=(0, 1)) > FRAME_MARGIN * size) \
                and np.all(pixels.max(axis=(0, 1)) < (1 - FRAME_MARGIN) * size):
            return camera
    raise AvatarCaptureError("no camera distance up to 15 m keeps the whole performance in frame")


def _flattened_foot(ankle: np.ndarray, toe: np.ndarray, foot_side: np.ndarray,
                    rest_heel_to_toe: np.ndarray) -> np.ndarray:
    """Heel-to-toe vectors (T, 3), as long as rest_heel_to_toe, from mocap ankle and toe positions (T, 3).

    The mocap ankle-to-toe vectors are pitched about the foot's side axis
    foot_side (T, 3) by one angle: the one that makes their median pitch in
    stance (flat-foot frames: ankle and toe both among their slowest 30 %)
    equal to the pitch of the body's rest foot.
    """
    ankle_to_toe = toe - ankle
    pitch = np.arcsin(np.clip(-ankle_to_toe[:, 2] / np.linalg.norm(ankle_to_toe, axis=-1), -1.0, 1.0))
    rest_pitch = np.arcsin(-rest_heel_to_toe[2] / np.linalg.norm(rest_heel_to_toe))
    ankle_speed, toe_speed = (np.linalg.norm(np.gradient(p, axis=0), axis=-1) for p in (ankle, toe))
    stance = (ankle_speed <= np.percentile(ankle_speed, 30)) & (toe_speed <= np.percentile(toe_speed, 30))
    correction = float(np.median(pitch[stance if stance.any() else slice(None)]) - rest_pitch)
    axis = foot_side / np.linalg.norm(foot_side, axis=-1, keepdims=True)
    # Turning about the side axis (the body's left) by a positive angle pitches the toe down: undo the excess.
    direction = np.einsum("tij,tj->ti", quat_to_matrix(axis_angle_to_quat(-correction * axis)), ankle_to_toe)
    return direction / np.linalg.norm(direction, axis=-1, keepdims=True) * np.linalg.norm(rest_heel_to_toe)


def _floor_height(flat_lift: np.ndarray, window: int) -> np.ndarray:
    """Height (T,) of the mocap floor under the body: a running minimum over `window` frames, smoothed.

    flat_lift (T,) is the lower foot's mean heel-and-toe height above standing
    (a flat foot, not the lowest point: that would be a toe pushing off, which the
    body's foot, shaped unlike the actor's, pitches lower than the actor's). The
    floor is followed over time because mocap floors are not exactly level.
    """
    half = window // 2
    padded = np.pad(flat_lift, half, mode="edge")
    lowest = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1).min(axis=1)
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.convolve(np.pad(lowest, half, mode="edge"), kernel, mode="valid")


def _leg_length(rest: np.ndarray) -> float:
    index = {name: i for i, name in enumerate(LANDMARK_NAMES)}
    hip, knee, ankle = (rest[index[f"left_{n}"]] for n in ("hip", "knee", "ankle"))
    return float(np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee))


def _bvh_leg_length(bvh: BvhMotion, pose: BvhPose) -> float:
    names = {name: i for i, name in enumerate(bvh.joint_names)}
    hip, knee, ankle = (pose.positions[0, _find(names, [c.format(Side="Left") for c in _JOINTS[f"{{side}}_{n}"]],
                                                 bvh.path)] for n in ("hip", "knee", "ankle"))
    return float(np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee))


def _find(names: dict[str, int], candidates: list[str], path: str) -> int:
    for candidate in candidates:
        if candidate in names:
            return names[candidate]
    raise AvatarCaptureError(f"{path}: no joint named {' or '.join(candidates)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the videos and truth clips")
    parser.add_argument("--only", choices=[s.name for s in SEQUENCES], action="append")
    parser.add_argument("--bvh-dir", type=Path, default=BVH_DIR)
    args = parser.parse_args()
    folder = args.out or default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    rig = body_rig(ComputeSettings())
    results = []
    for sequence in SEQUENCES:
        if args.only and sequence.name not in args.only:
            continue
        started = time.perf_counter()
        results.append(make_sequence(sequence, rig, folder, args.bvh_dir))
        print(f"{sequence.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(json.dumps({"folder": str(folder), "sequences": results}, indent=2))


if __name__ == "__main__":
    main()

"""Retargeting (core.retarget.transfer): a small humanoid built here with known motion, a renamed,
scaled, A-posed and rolled copy of it, and a real CMU BVH clip onto the real Anny skeleton."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_capture.core.clip import MotionClip
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.kinematics import forward_kinematics, frames_from_heads_tails
from avatar_capture.core.retarget.bvh_clip import clip_from_bvh
from avatar_capture.core.retarget.humanoid import BoneMapping
from avatar_capture.core.retarget.metrics import contact_foot_speeds, position_errors, twist_flips
from avatar_capture.core.retarget.presets import PRESETS
from avatar_capture.core.retarget.transfer import retarget
from avatar_capture.core.rotations import axis_angle_to_quat, quat_to_axis_angle, quat_to_matrix
from avatar_capture.core.skeleton import Skeleton
from motion_factory import random_clip

SHARED_BVH = Path(__file__).resolve().parents[2] / "shared" / "media" / "bvh"
CMU_FILES = sorted(SHARED_BVH.glob("*.bvh")) if SHARED_BVH.is_dir() else []

# name, parent, head (m), tail (m) of a T-pose humanoid; the character's left is +X (it faces -Y).
_TRUNK = [
    ("hips", None, (0, 0, 1.0), (0, 0, 1.1)),
    ("spine", "hips", (0, 0, 1.1), (0, 0, 1.25)),
    ("chest", "spine", (0, 0, 1.25), (0, 0, 1.4)),
    ("upper_chest", "chest", (0, 0, 1.4), (0, 0, 1.55)),
    ("neck", "upper_chest", (0, 0, 1.55), (0, 0, 1.65)),
    ("head", "neck", (0, 0, 1.65), (0, 0, 1.85)),
]


def _side(side: str, x: float) -> list:
    s = f"{side}_"
    return [
        (s + "shoulder", "upper_chest", (0.03 * x, 0, 1.5), (0.18 * x, 0, 1.5)),
        (s + "upper_arm", s + "shoulder", (0.18 * x, 0, 1.5), (0.45 * x, 0, 1.5)),
        (s + "lower_arm", s + "upper_arm", (0.45 * x, 0, 1.5), (0.7 * x, 0, 1.5)),
        (s + "hand", s + "lower_arm", (0.7 * x, 0, 1.5), (0.8 * x, 0, 1.5)),
        (s + "upper_leg", "hips", (0.1 * x, 0, 0.95), (0.1 * x, 0, 0.52)),
        (s + "lower_leg", s + "upper_leg", (0.1 * x, 0, 0.52), (0.1 * x, 0, 0.1)),
        (s + "foot", s + "lower_leg", (0.1 * x, 0, 0.1), (0.1 * x, -0.12, 0.02)),
        (s + "toes", s + "foot", (0.1 * x, -0.12, 0.02), (0.1 * x, -0.2, 0.02)),
    ]


BONES = _TRUNK + _side("left", 1.0) + _side("right", -1.0)
NAMES = tuple(b[0] for b in BONES)
LIMBS = [(f"{side}_{a}", f"{side}_{b}") for side in ("left", "right") for a, b in (
    ("shoulder", "upper_arm"), ("upper_arm", "lower_arm"), ("lower_arm", "hand"),
    ("upper_leg", "lower_leg"), ("lower_leg", "foot"), ("foot", "toes"))]


def _skeleton(names, heads, tails, roll_deg=None) -> Skeleton:
    parents = np.array([-1 if p is None else NAMES.index(p) for _n, p, _h, _t in BONES])
    frames = frames_from_heads_tails(heads, tails, np.tile([0.0, -1.0, 0.0], (len(heads), 1)))
    if roll_deg is not None:  # turn each bone about its own Y axis
        frames[:, :3, :3] = frames[:, :3, :3] @ quat_to_matrix(
            axis_angle_to_quat(np.radians(roll_deg)[:, None] * [0.0, 1.0, 0.0]))
    return Skeleton(tuple(names), parents, frames, np.linalg.norm(tails - heads, axis=-1))


def _source_skeleton() -> Skeleton:
    return _skeleton(NAMES, np.array([b[2] for b in BONES], float), np.array([b[3] for b in BONES], float))


def _mapping(rename=lambda n: n) -> BoneMapping:
    return BoneMapping(bones={n: rename(n) for n in NAMES}, spine_chain=tuple(map(rename, ("spine", "chest",
                       "upper_chest"))), neck_chain=(rename("neck"),))


def _clip(skeleton: Skeleton, frames: int = 24) -> MotionClip:
    """Smooth random local rotations (up to ~0.7 rad) and a walking, bobbing root."""
    rng = np.random.default_rng(3)
    t = np.linspace(0, 1, frames)[:, None, None]
    amplitude = rng.normal(0, 0.35, (1, skeleton.joint_count, 3))
    axis_angle = amplitude * np.sin(2 * np.pi * t + rng.uniform(0, 6, (1, skeleton.joint_count, 1)))
    rotations = axis_angle_to_quat(axis_angle)
    root = skeleton.rest_heads_world[0] + np.stack(
        (0.3 * t[:, 0, 0], -1.2 * t[:, 0, 0], 0.05 * np.sin(6 * t[:, 0, 0])), axis=-1)
    joints = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, rotations, root)[..., :3, 3]
    return MotionClip(fps=24.0, skeleton=skeleton, rotations=rotations, root_translation=root, joints_world=joints,
                      landmark_names=(), landmarks_world=np.zeros((frames, 0, 3)),
                      contacts=rng.uniform(0, 1, (frames, 4)), body_model="none", body_shape_names=(),
                      body_shape=np.zeros(0))


def _variant() -> tuple[Skeleton, BoneMapping]:
    """The source rig renamed, scaled by 1.2, arms lowered 45 degrees (A-pose), limb bones rolled 90 degrees."""
    heads = np.array([b[2] for b in BONES], float)
    tails = np.array([b[3] for b in BONES], float)
    for side, x in (("left", 1.0), ("right", -1.0)):
        pivot = heads[NAMES.index(f"{side}_upper_arm")].copy()
        turn = quat_to_matrix(axis_angle_to_quat(np.array([0.0, x * np.radians(45), 0.0])))
        for part in ("upper_arm", "lower_arm", "hand"):
            j = NAMES.index(f"{side}_{part}")
            heads[j], tails[j] = pivot + turn @ (heads[j] - pivot), pivot + turn @ (tails[j] - pivot)
    limb = np.array([0.0 if n in {b[0] for b in _TRUNK} else 90.0 for n in NAMES])
    rename = lambda n: f"X_{n.upper()}"  # noqa: E731
    return _skeleton([rename(n) for n in NAMES], heads * 1.2, tails * 1.2, limb), _mapping(rename)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1, 1)))


def test_retarget_onto_own_skeleton_reproduces_the_motion():
    skeleton = _source_skeleton()
    clip = _clip(skeleton)
    out = retarget(clip, _mapping(), skeleton, _mapping(), foot_lock=False)
    assert np.abs(out.joints_world - clip.joints_world).max() < 1e-5
    assert out.fps == clip.fps and out.body_model == "none"
    np.testing.assert_array_equal(out.contacts, clip.contacts)
    assert "left_wrist" in out.landmark_names
    np.testing.assert_allclose(out.landmarks_world[:, out.landmark_names.index("left_wrist")],
                               clip.joints_world[:, NAMES.index("left_hand")], atol=1e-9)
    # joints_world is the clip's own forward kinematics
    fk = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, out.rotations, out.root_translation)
    np.testing.assert_allclose(fk[..., :3, 3], out.joints_world, atol=1e-9)


def test_a_pose_rolled_scaled_target_gets_the_source_bone_directions():
    source = _clip(_source_skeleton())
    target, target_map = _variant()
    out = retarget(source, _mapping(), target, target_map, foot_lock=False)
    worst = 0.0
    for a, b in LIMBS:
        want = source.joints_world[:, NAMES.index(b)] - source.joints_world[:, NAMES.index(a)]
        got = out.joints_world[:, NAMES.index(b)] - out.joints_world[:, NAMES.index(a)]
        worst = max(worst, _angle_deg(got, want).max())
    print(f"worst limb direction error {worst:.2e} deg")
    assert worst < 1.0
    # the arms really start in another rest pose: copying local rotations misses by tens of degrees
    copied = forward_kinematics(target.rest_frames_world, target.parents, source.rotations,
                                source.root_translation)[..., :3, 3]
    j, k = NAMES.index("left_upper_arm"), NAMES.index("left_lower_arm")
    assert _angle_deg(copied[:, k] - copied[:, j], source.joints_world[:, k] - source.joints_world[:, j]).min() > 20
    hips = 0
    np.testing.assert_allclose(out.joints_world[:, hips] - target.rest_heads_world[hips],
                               1.2 * (source.joints_world[:, hips] - source.skeleton.rest_heads_world[hips]),
                               atol=1e-9)
    assert twist_flips(out.rotations) == 0

    still = retarget(source, _mapping(), target, target_map, in_place=True)
    np.testing.assert_allclose(still.joints_world[:, hips, :2] - target.rest_heads_world[hips, :2], 0.0, atol=1e-9)
    np.testing.assert_allclose(still.joints_world[:, hips, 2], out.joints_world[:, hips, 2], atol=1e-9)
    assert np.ptp(out.joints_world[:, hips, 1]) > 1.0  # the moving version does travel


def test_longer_target_spine_chain_shares_the_turn_equally():
    """A target whose chest and upper_chest are only chain bones: both get the same share of the turn."""
    source = _clip(_source_skeleton())
    skeleton = source.skeleton
    mapping = BoneMapping(bones={n: n for n in NAMES if n not in ("chest", "upper_chest")},
                          spine_chain=("spine", "chest", "upper_chest"))
    src_map = BoneMapping(bones={n: n for n in NAMES if n not in ("chest", "upper_chest")},
                          spine_chain=("spine", "chest", "upper_chest"))
    out = retarget(source, src_map, skeleton, mapping, foot_lock=False)
    angles = np.linalg.norm(quat_to_axis_angle(out.rotations[:, [NAMES.index("chest"),
                                                                 NAMES.index("upper_chest")]]), axis=-1)
    np.testing.assert_allclose(angles[:, 0], angles[:, 1], atol=1e-9)
    assert angles.max() > 0.05
    # the chain end lands on the source's world rotation
    top = NAMES.index("upper_chest")
    posed = [forward_kinematics(skeleton.rest_frames_world, skeleton.parents, c.rotations, c.root_translation)
             for c in (source, out)]
    np.testing.assert_allclose(posed[1][:, top, :3, :3], posed[0][:, top, :3, :3], atol=1e-9)
    assert np.abs(posed[1][:, top - 1, :3, :3] - posed[0][:, top - 1, :3, :3]).max() > 1e-3


def test_mapping_naming_absent_bones_is_refused():
    skeleton = _source_skeleton()
    target, _ = _variant()
    with pytest.raises(AvatarCaptureError, match="target rig lacks"):
        retarget(_clip(skeleton), _mapping(), target, _mapping())


@pytest.fixture(scope="module")
def cmu_on_anny(anny_rig):
    """A real CMU clip (the first shared file with CMU bone names) retargeted onto the Anny skeleton,
    without and with foot locking."""
    cmu = PRESETS["cmu"]
    files = [f for f in CMU_FILES if not cmu.missing_in_rig(clip_from_bvh(f).skeleton.joint_names)][:1]
    if not files:
        pytest.skip("no CMU-named BVH file among the shared clips")
    source = clip_from_bvh(files[0])
    return files[0].name, source, {lock: retarget(source, cmu, anny_rig.skeleton, PRESETS["anny"], foot_lock=lock)
                                   for lock in (False, True)}


@pytest.mark.skipif(not CMU_FILES, reason=f"no CMU BVH files in {SHARED_BVH}")
def test_cmu_clip_onto_anny_keeps_limb_directions_without_flips(cmu_on_anny):
    name, source, outs = cmu_on_anny
    out = outs[False]
    cmu, anny = PRESETS["cmu"], PRESETS["anny"]
    worst = {}
    for a, b in [(a, b) for a, b in LIMBS if b in anny.bones]:
        want = source.joints_world[:, source.skeleton.index(cmu.bones[b])] - \
            source.joints_world[:, source.skeleton.index(cmu.bones[a])]
        got = out.joints_world[:, out.skeleton.index(anny.bones[b])] - \
            out.joints_world[:, out.skeleton.index(anny.bones[a])]
        worst[f"{a}->{b}"] = float(_angle_deg(got, want).max())
    errors = position_errors(source, cmu, out, anny)
    print(f"{name}: {source.frame_count} frames; limb direction error max {max(worst.values()):.2e} deg; "
          f"position error (share of stature) uniform mean {100 * errors.uniform.mean():.2f}%, proportional "
          f"mean {100 * errors.proportional.mean():.2f}% max {100 * errors.proportional.max():.2f}%; "
          f"twist flips {twist_flips(out.rotations)}")
    assert max(worst.values()) < 1.0
    assert errors.proportional.mean() < 0.03
    assert twist_flips(out.rotations) == 0
    assert out.frame_count == source.frame_count and out.fps == source.fps
    feet = [out.skeleton.index(anny.bones[f"{s}_foot"]) for s in ("left", "right")]
    ankle = np.percentile(out.joints_world[:, feet, 2], 1)
    print(f"Anny ankles' lowest (1st percentile) height {ankle:.3f} m, "
          f"at rest {out.skeleton.rest_heads_world[feet, 2].mean():.3f} m")
    assert abs(ankle - out.skeleton.rest_heads_world[feet, 2].mean()) < 0.03  # standing, not floating or sunk


@pytest.mark.skipif(not CMU_FILES, reason=f"no CMU BVH files in {SHARED_BVH}")
def test_foot_lock_holds_the_cmu_contacts_on_anny(cmu_on_anny):
    name, source, outs = cmu_on_anny
    anny = PRESETS["anny"]
    free, locked = (contact_foot_speeds(outs[lock], anny) for lock in (False, True))
    source_speed = contact_foot_speeds(source, PRESETS["cmu"])
    print(f"{name}: contact foot speed, cm/frame: source mean {100 * source_speed.mean():.3f}; on Anny free mean "
          f"{100 * free.mean():.3f} max {100 * free.max():.2f}; locked mean {100 * locked.mean():.4f} "
          f"max {100 * locked.max():.3f}")
    assert len(locked) > 50
    assert locked.max() < 0.01
    assert locked.mean() < 0.25 * free.mean()
    assert twist_flips(outs[True].rotations) == 0


def test_unmapped_bones_inside_a_source_limb_still_steer_the_target_limb(anny_rig):
    """Anny's limbs have unmapped in-between bones (upperarm02, lowerarm02 ...): when a clip turns them
    sideways, the target limbs still point at the source's mapped joints."""
    source = random_clip(anny_rig, frames=12, seed=4, amplitude_rad=0.5)
    anny = PRESETS["anny"]
    target = _source_skeleton()
    out = retarget(source, anny, target, _mapping(), foot_lock=False)
    worst = 0.0
    for a, b in [(a, b) for a, b in LIMBS if a in anny.bones and b in anny.bones]:
        want = source.joints_world[:, anny_rig.skeleton.index(anny.bones[b])] - \
            source.joints_world[:, anny_rig.skeleton.index(anny.bones[a])]
        got = out.joints_world[:, NAMES.index(b)] - out.joints_world[:, NAMES.index(a)]
        worst = max(worst, _angle_deg(got, want).max())
    print(f"worst limb direction error with turned in-between bones: {worst:.2e} deg")
    assert worst < 1e-3

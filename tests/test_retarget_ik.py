"""Two-bone IK, foot locking and hand reaching (core.retarget.ik, retarget(foot_lock=, hand_ik=))
on the small test humanoid of test_retarget_transfer and a copy of it with longer legs."""
from __future__ import annotations

import numpy as np

from dataclasses import replace

from avatar_capture.core.kinematics import forward_kinematics, local_rotations
from avatar_capture.core.retarget.ik import contact_locks, descendants, drop_to_reach, two_bone_ik
from avatar_capture.core.retarget.transfer import retarget
from avatar_capture.core.rotations import axis_angle_to_quat, quat_to_axis_angle
from avatar_capture.core.skeleton import Skeleton

from test_retarget_transfer import BONES, NAMES, _clip, _mapping, _skeleton, _source_skeleton


def _long_legged() -> Skeleton:
    """The test humanoid with 1.5x longer shins (0.63 m instead of 0.42 m), the body above raised to keep
    the feet on the floor: a leg-length ratio of 1.247 that the thighs do not share."""
    heads = np.array([b[2] for b in BONES], float)
    tails = np.array([b[3] for b in BONES], float)
    extra = 0.5 * 0.42
    shin_and_below = [j for j, n in enumerate(NAMES) if n.split("_", 1)[-1] in ("foot", "toes")]
    for j in range(len(NAMES)):
        if j not in shin_and_below:
            heads[j, 2] += extra
            if NAMES[j].endswith("lower_leg"):
                continue
            tails[j, 2] += extra
    return _skeleton(NAMES, heads, tails)


def _heads(frames: np.ndarray) -> np.ndarray:
    return frames[..., :3, 3]


def test_two_bone_ik_puts_the_end_on_the_target_keeping_lengths_plane_and_end_rotation():
    skeleton = _source_skeleton()
    clip = _clip(skeleton, frames=12)
    frames = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, clip.rotations, clip.root_translation)
    hip, knee, ankle = (NAMES.index(f"left_{p}") for p in ("upper_leg", "lower_leg", "foot"))
    rng = np.random.default_rng(0)
    targets = _heads(frames)[:, ankle] + rng.normal(0, 0.08, (12, 3))
    reach = targets - _heads(frames)[:, hip]  # keep them within the 0.85 m leg
    targets = _heads(frames)[:, hip] + reach * np.minimum(1.0, 0.8 / np.linalg.norm(reach, axis=-1))[:, None]
    targets[3] = _heads(frames)[3, ankle]  # already there: that frame must not change at all
    out = two_bone_ik(frames, skeleton.parents, hip, knee, ankle, targets)
    np.testing.assert_allclose(_heads(out)[:, ankle], targets, atol=1e-9)
    np.testing.assert_array_equal(out[3], frames[3])
    # rigid bones: every joint keeps its distance to its parent, every frame stays a rotation
    parents = skeleton.parents
    for f in (frames, out):
        assert np.allclose(np.linalg.norm(_heads(f)[:, 1:] - _heads(f)[:, parents[1:]], axis=-1),
                           np.linalg.norm(_heads(frames)[:, 1:] - _heads(frames)[:, parents[1:]], axis=-1))
    rotations = out[..., :3, :3]
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, -1, -2), np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-9)
    np.testing.assert_allclose(out[:, ankle, :3, :3], frames[:, ankle, :3, :3], atol=1e-9)  # foot keeps its turn
    # the knee stays on its side of the hip -> target line, in the plane of that line and the old thigh
    a, old_knee, new_knee = _heads(frames)[:, hip], _heads(frames)[:, knee], _heads(out)[:, knee]
    line = (targets - a) / np.linalg.norm(targets - a, axis=-1, keepdims=True)

    def off_line(p):
        v = (p - a) - np.sum((p - a) * line, axis=-1, keepdims=True) * line
        return v / np.linalg.norm(v, axis=-1, keepdims=True)
    np.testing.assert_allclose(off_line(new_knee), off_line(old_knee), atol=1e-9)
    # bones outside the leg never move
    leg = set(descendants(parents, hip))
    others = [j for j in range(len(NAMES)) if j not in leg]
    np.testing.assert_array_equal(out[:, others], frames[:, others])


def test_unreachable_target_straightens_the_leg_towards_it():
    skeleton = _source_skeleton()
    frames = forward_kinematics(skeleton.rest_frames_world, skeleton.parents,
                                np.tile([1.0, 0, 0, 0], (1, len(NAMES), 1)), skeleton.rest_heads_world[:1])
    hip, knee, ankle = (NAMES.index(f"left_{p}") for p in ("upper_leg", "lower_leg", "foot"))
    goal = _heads(frames)[:, hip] + [[0.0, -2.0, 0.0]]
    out = two_bone_ik(frames, skeleton.parents, hip, knee, ankle, goal)
    reach = _heads(out)[0, ankle] - _heads(out)[0, hip]
    assert np.linalg.norm(reach) > 0.849  # thigh + shin = 0.85 m, fully stretched
    assert np.dot(reach / np.linalg.norm(reach), [0.0, -1.0, 0.0]) > 0.999


def test_contact_locks_hold_each_run_and_fade_around_it():
    points = np.cumsum(np.full((30, 3), 0.01), axis=0)
    contact = np.zeros(30)
    contact[10:20] = 1.0
    locks, weights = contact_locks(points, contact, blend_frames=3)
    np.testing.assert_allclose(locks[10:20], np.broadcast_to(points[10:20].mean(axis=0), (10, 3)))
    np.testing.assert_allclose(weights[10:20], 1.0)
    np.testing.assert_allclose(weights[[7, 8, 9, 20, 21, 22]], [0.25, 0.5, 0.75, 0.75, 0.5, 0.25])
    assert weights[:7].max() == 0.0 and weights[23:].max() == 0.0


def _planted_clip(skeleton, frames: int = 40):
    """Gentle motion (a quarter of the test motion's turns, a third of its travel) whose left ankle
    stands still on frames 10..29, marked as a heel contact there."""
    clip = _clip(skeleton, frames=frames)
    rotations = axis_angle_to_quat(0.25 * quat_to_axis_angle(clip.rotations))
    root = skeleton.rest_heads_world[0] + (clip.root_translation - skeleton.rest_heads_world[0]) / 3.0
    posed = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, rotations, root)
    contacts = np.zeros((frames, 4))
    contacts[10:30, 0] = 1.0
    hip, knee, ankle = (NAMES.index(f"left_{p}") for p in ("upper_leg", "lower_leg", "foot"))
    goal = _heads(posed)[:, ankle].copy()
    goal[10:30] = goal[20] + [0.0, 0.0, 0.12]  # raised: the knee bends, so the foot can stay put
    posed = two_bone_ik(posed, skeleton.parents, hip, knee, ankle, goal)
    rotations, root = local_rotations(posed, skeleton.rest_frames_world, skeleton.parents)
    return replace(clip, rotations=rotations, root_translation=root, joints_world=_heads(posed), contacts=contacts)


def test_foot_lock_holds_the_ankle_on_contact_frames_of_a_longer_legged_target():
    source = _planted_clip(_source_skeleton())
    target = _long_legged()
    free = retarget(source, _mapping(), target, _mapping(), foot_lock=False)
    locked = retarget(source, _mapping(), target, _mapping(), foot_lock=True)
    ankle = NAMES.index("left_foot")
    speed = lambda clip: np.linalg.norm(np.diff(clip.joints_world[:, ankle], axis=0), axis=-1)  # noqa: E731
    on_contact = slice(10, 29)  # steps from frame 10 to 11 ... 28 to 29
    print(f"left ankle speed on contact frames: free {100 * speed(free)[on_contact].mean():.2f} cm/frame, "
          f"locked {100 * speed(locked)[on_contact].max():.2e} cm/frame max")
    assert speed(free)[on_contact].mean() > 0.005  # the test really slides without locking
    assert speed(locked)[on_contact].max() < 1e-6
    # frames far from the contact are untouched, and the result is the target's own FK
    np.testing.assert_allclose(locked.joints_world[:3], free.joints_world[:3], atol=1e-12)
    fk = forward_kinematics(target.rest_frames_world, target.parents, locked.rotations, locked.root_translation)
    np.testing.assert_allclose(fk[..., :3, 3], locked.joints_world, atol=1e-9)
    # the other foot keeps its place; the trunk and arms at most drop a little where the held foot
    # is out of reach (ik.drop_to_reach)
    right = [NAMES.index(f"right_{p}") for p in ("foot", "toes")]
    np.testing.assert_allclose(locked.joints_world[:, right], free.joints_world[:, right], atol=1e-9)
    above = [j for j, n in enumerate(NAMES) if "leg" not in n and "foot" not in n and "toes" not in n]
    shift = locked.joints_world[:, above] - free.joints_world[:, above]
    np.testing.assert_allclose(shift[..., :2], 0.0, atol=1e-9)
    assert np.all(shift[..., 2] <= 1e-12) and shift[..., 2].min() >= -0.1


def test_in_place_clips_are_not_foot_locked():
    source = _planted_clip(_source_skeleton())
    target = _long_legged()
    a = retarget(source, _mapping(), target, _mapping(), in_place=True, foot_lock=True)
    b = retarget(source, _mapping(), target, _mapping(), in_place=True, foot_lock=False)
    np.testing.assert_array_equal(a.joints_world, b.joints_world)


def _long_forearms() -> Skeleton:
    """The test humanoid with 1.4x longer forearms (0.35 m instead of 0.25 m), hands moved out with them."""
    heads = np.array([b[2] for b in BONES], float)
    tails = np.array([b[3] for b in BONES], float)
    for side, x in (("left", 1.0), ("right", -1.0)):
        tails[NAMES.index(f"{side}_lower_arm"), 0] += 0.1 * x
        for j in (NAMES.index(f"{side}_hand"),):
            heads[j, 0] += 0.1 * x
            tails[j, 0] += 0.1 * x
    return _skeleton(NAMES, heads, tails)


def test_hand_ik_puts_the_hands_at_the_sources_scaled_offsets_from_the_hips():
    source = _clip(_source_skeleton(), frames=16)
    target = _long_forearms()
    free = retarget(source, _mapping(), target, _mapping(), foot_lock=False)
    reached = retarget(source, _mapping(), target, _mapping(), foot_lock=False, hand_ik=True)
    hips = [NAMES.index(f"{s}_upper_leg") for s in ("left", "right")]
    # reach ratio: mid-hip to shoulder (0.18, 0, 0.55) plus 0.27 m upper arm plus forearm, 0.35 m vs 0.25 m
    shoulder = np.linalg.norm([0.18, 0.0, 0.55])
    scale = (shoulder + 0.27 + 0.35) / (shoulder + 0.27 + 0.25)
    for side in ("left", "right"):
        hand, shoulder_joint = NAMES.index(f"{side}_hand"), NAMES.index(f"{side}_upper_arm")
        middle = reached.joints_world[:, hips].mean(axis=1)
        want = (source.joints_world[:, hand] - source.joints_world[:, hips].mean(axis=1)) * scale
        got = reached.joints_world[:, hand] - middle
        before = free.joints_world[:, hand] - free.joints_world[:, hips].mean(axis=1)
        reachable = np.linalg.norm(want - (reached.joints_world[:, shoulder_joint] - middle), axis=-1) < 0.61
        print(f"{side}: {reachable.sum()} of 16 frames reachable, error before IK up to "
              f"{np.linalg.norm(before - want, axis=-1).max():.3f} m")
        assert reachable.sum() > 8
        np.testing.assert_allclose(got[reachable], want[reachable], atol=1e-6)
        assert np.linalg.norm(before - want, axis=-1).max() > 0.02
        np.testing.assert_allclose(reached.joints_world[:, shoulder_joint], free.joints_world[:, shoulder_joint],
                                   atol=1e-12)  # the shoulders stay


def test_a_flickering_contact_is_one_lock():
    points = np.cumsum(np.full((40, 3), 0.01), axis=0)
    contact = np.zeros(40)
    contact[5:15] = contact[17:30] = 1.0  # a 2-frame gap: shorter than the 3-frame blend
    locks, weights = contact_locks(points, contact, blend_frames=3)
    np.testing.assert_allclose(weights[5:30], 1.0)
    np.testing.assert_allclose(locks[5:30], np.broadcast_to(points[5:30].mean(axis=0), (25, 3)))
    contact[15:21] = 0.0  # a 6-frame gap: two contacts, two locks
    locks, _weights = contact_locks(points, contact, blend_frames=3)
    assert np.linalg.norm(locks[10] - locks[25]) > 0.1


def test_a_held_foot_out_of_reach_lowers_the_body_just_enough():
    skeleton = _source_skeleton()
    frames = forward_kinematics(skeleton.rest_frames_world, skeleton.parents,
                                np.tile([1.0, 0, 0, 0], (30, len(NAMES), 1)), np.tile(skeleton.rest_heads_world[0],
                                                                                      (30, 1)))
    legs = {side: tuple(NAMES.index(f"{side}_{p}") for p in ("upper_leg", "lower_leg", "foot"))
            for side in ("left", "right")}
    ankle = NAMES.index("left_foot")
    goals = {side: frames[:, legs[side][2], :3, 3].copy() for side in legs}
    goals["left"][12:18] += [0.0, 0.2, 0.0]  # 20 cm behind: the straight leg cannot reach it
    drop = drop_to_reach(frames, legs, goals, blend_frames=3)
    need = 0.85 - np.sqrt(0.85 ** 2 - 0.2 ** 2)  # the leg from the hip joint, 0.85 m, over 0.2 m
    assert drop[12:18].min() >= need - 1e-3 and drop.max() < need + 0.01
    assert drop[:5].max() == 0.0 and drop[25:].max() == 0.0  # only around the held frames
    lowered = frames.copy()
    lowered[..., 2, 3] -= drop[:, None]
    solved = two_bone_ik(lowered, skeleton.parents, *legs["left"], goals["left"])
    np.testing.assert_allclose(solved[12:18, ankle, :3, 3], goals["left"][12:18], atol=1e-9)

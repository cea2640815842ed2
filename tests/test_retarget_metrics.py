"""The retargeting figures (core.retarget.metrics) on the small test humanoid, where the answers are known."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from test_retarget_ik import _long_legged, _planted_clip
from test_retarget_transfer import NAMES, _clip, _mapping, _source_skeleton, _variant

from avatar_capture.core.retarget.metrics import contact_foot_speeds, position_errors, stature, twist_flips
from avatar_capture.core.retarget.transfer import retarget
from avatar_capture.core.rotations import axis_angle_to_quat


def test_same_proportions_give_no_position_error_either_way():
    source = _clip(_source_skeleton())
    target, target_map = _variant()  # 1.2x, A-posed, rolled: the same proportions
    out = retarget(source, _mapping(), target, target_map, foot_lock=False)
    errors = position_errors(source, _mapping(), out, target_map)
    assert "hips" in errors.joints and "left_hand" in errors.joints
    assert errors.uniform.max() < 1e-6 and errors.proportional.max() < 1e-6
    assert abs(stature(target) - 1.2 * stature(source.skeleton)) < 1e-9


def test_other_proportions_count_in_the_uniform_error_only():
    source = _clip(_source_skeleton())
    target = _long_legged()  # shins 1.5x: the leg-ratio scaling misplaces the trunk and arms
    out = retarget(source, _mapping(), target, _mapping(), foot_lock=False)
    errors = position_errors(source, _mapping(), out, _mapping())
    assert errors.proportional.max() < 1e-6
    assert errors.uniform.mean() > 0.01
    # a wrong retarget (the arms not turned at all) shows in the proportional error
    frozen = replace(out, joints_world=out.joints_world.copy())
    arm = [NAMES.index(f"left_{p}") for p in ("lower_arm", "hand")]
    frozen.joints_world[:, arm] = out.joints_world[:1, arm] + (out.joints_world[:, :1] - out.joints_world[:1, :1])
    assert position_errors(source, _mapping(), frozen, _mapping()).proportional.max() > 0.02


def test_contact_foot_speed_counts_steps_between_contact_frames_only():
    clip = _planted_clip(_source_skeleton())  # left ankle still on frames 10..29 (a heel contact)
    speeds = contact_foot_speeds(clip, _mapping())
    assert len(speeds) == 19 and speeds.max() < 1e-9
    moving = replace(clip, contacts=np.ones_like(clip.contacts) * [1, 0, 0, 0])
    assert len(contact_foot_speeds(moving, _mapping())) == 39
    assert contact_foot_speeds(moving, _mapping()).max() > 0.05


def test_twist_flips_count_turns_over_90_degrees_between_frames():
    turns = np.zeros((5, 2, 3))
    turns[3, 1] = [0.0, 2.0, 0.0]  # 115 degrees at frame 3, and back at frame 4
    turns[2, 0] = [0.0, 1.2, 0.0]  # 69 degrees: not a flip
    assert twist_flips(axis_angle_to_quat(turns)) == 2

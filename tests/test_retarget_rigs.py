"""The real target rigs of tests/rig_factory.py: bones, mapping, skinned mesh and rest poses.

Each rig is built in a fresh empty Blender file. The checks are what a retarget
test relies on: the files' bones all arrive (none dropped for zero length), the
automatic mapping recognises the rig's preset and finds every required joint, the
base mesh stands on the floor around the bones that deform it, its weights are
normalised and the Armature modifier moves it with the bones.
"""
from __future__ import annotations

import bpy
import numpy as np
import pytest

import rig_factory
from avatar_capture.blender.readback import read_rest_vertices, read_skeleton
from avatar_capture.core.retarget.auto_map import auto_map
from avatar_capture.core.retarget.humanoid import REQUIRED_JOINTS
from avatar_capture.core.retarget.presets import PRESETS

MPFB_PRESETS = {"mixamo": "mixamo", "game_engine": "ue4_game_engine", "cmu_mb": "cmu",
                "default": "mpfb_default", "rigify": "rigify_metarig"}
# Joints whose bone must lie inside the box of the vertices it dominates (1 cm margin).
ENVELOPE_JOINTS = ("head", "spine", "left_upper_arm", "left_lower_arm", "left_hand", "right_lower_leg",
                   "left_foot")
BASE_MESH_BODY_VERTICES = 13380


@pytest.fixture(autouse=True)
def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _mapping(armature):
    bones = armature.data.bones
    return auto_map([b.name for b in bones], [b.parent.name if b.parent else None for b in bones])


def _check_preset(armature, preset: str) -> None:
    mapping, report = _mapping(armature)
    assert report.preset == preset
    assert mapping.missing_required() == ()
    expected = PRESETS[preset].bones
    for joint in REQUIRED_JOINTS:
        assert mapping.bones[joint] == expected[joint]
        assert mapping.bones[joint] in armature.data.bones


def _dominant_groups(mesh) -> tuple[np.ndarray, np.ndarray]:
    """Per vertex: index of its strongest vertex group, and the sum of its weights."""
    strongest = np.full(len(mesh.data.vertices), -1)
    total = np.zeros(len(mesh.data.vertices))
    for vertex in mesh.data.vertices:
        best = 0.0
        for group in vertex.groups:
            total[vertex.index] += group.weight
            if group.weight > best:
                best, strongest[vertex.index] = group.weight, group.group
    return strongest, total


@pytest.mark.parametrize("name", rig_factory.MPFB_RIGS)
def test_mpfb_rig_bones_mapping_and_mesh(name):
    armature = rig_factory.mpfb_rig(name)
    assert len(armature.data.bones) == rig_factory.BONE_COUNTS[name]
    assert set(armature.data.bones.keys()) == set(rig_factory._rig_json(name))
    _check_preset(armature, MPFB_PRESETS[name])

    (mesh,) = armature.children
    assert any(m.type == "ARMATURE" and m.object == armature for m in mesh.modifiers)
    vertices = read_rest_vertices(mesh)
    assert len(vertices) == BASE_MESH_BODY_VERTICES
    assert vertices[:, 2].min() == pytest.approx(0.0, abs=1e-6)  # soles on the floor
    assert 1.6 < vertices[:, 2].max() < 1.8
    strongest, total = _dominant_groups(mesh)
    assert np.abs(total - 1.0).max() < 1e-5  # every vertex weighted, weights normalised
    groups = [g.name for g in mesh.vertex_groups]
    assert set(groups) <= set(armature.data.bones.keys())
    mapping, _ = _mapping(armature)
    for joint in ENVELOPE_JOINTS:
        bone = armature.data.bones[mapping.bones[joint]]
        owned = vertices[strongest == groups.index(bone.name)]
        assert len(owned) > 20, joint
        middle = (np.array(bone.head_local) + np.array(bone.tail_local)) / 2
        assert np.all(middle > owned.min(axis=0) - 0.01) and np.all(middle < owned.max(axis=0) + 0.01), joint


def test_mesh_follows_the_bones():
    armature = rig_factory.mpfb_rig("mixamo")
    mesh = armature.children[0]
    hand = armature.data.bones["mixamorig:LeftHand"]
    strongest, _ = _dominant_groups(mesh)
    owned = strongest == mesh.vertex_groups["mixamorig:LeftHand"].index
    rest = read_rest_vertices(mesh)[owned]
    armature.pose.bones["mixamorig:LeftForeArm"].rotation_quaternion = (np.cos(0.5), 0.0, 0.0, np.sin(0.5))
    bpy.context.view_layer.update()
    evaluated = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    posed = np.array([v.co for v in evaluated.vertices])[owned]
    moved = np.linalg.norm(posed - rest, axis=1)
    # The hand swings about the elbow: its vertices move by about their distance from the elbow.
    elbow = np.array(armature.data.bones["mixamorig:LeftForeArm"].head_local)
    assert moved.min() > 0.5 * np.linalg.norm(np.array(hand.head_local) - elbow)


def test_ue5_rig():
    armature = rig_factory.ue5_rig()
    bones = armature.data.bones
    assert len(bones) == 71
    _check_preset(armature, "ue5_mannequin")
    assert bones["root"].parent is None and bones["pelvis"].parent.name == "root"
    assert np.allclose(bones["root"].head_local, 0.0, atol=1e-6)  # on the floor, at the origin
    spine = [bones[f"spine_0{k}"] for k in range(1, 6)]
    for lower, upper in zip(spine, spine[1:]):
        assert upper.parent == lower
        assert np.allclose(upper.head_local, lower.tail_local, atol=1e-6)
    assert bones["neck_01"].parent.name == "spine_05" and bones["neck_02"].parent.name == "neck_01"
    assert bones["head"].parent.name == "neck_02"
    assert bones["clavicle_l"].parent.name == "spine_05"
    # The five spine bones span exactly the game-engine rig's three.
    source = {s.name: s for s in rig_factory._mpfb("game_engine")[0]}
    assert np.allclose(spine[0].head_local, source["spine_01"].head, atol=1e-6)
    assert np.allclose(spine[-1].tail_local, source["spine_03"].tail, atol=1e-6)
    assert bones["upperarm_twist_01_l"].parent.name == "upperarm_l"
    assert "ik_foot_l" in bones and "ik_hand_gun" in bones


def test_rigify_rig_is_a_generated_deform_rig():
    armature = rig_factory.rigify_rig()
    bones = armature.data.bones
    assert len(bones) == rig_factory.RIGIFY_DEF_BONE_COUNT
    assert all(b.name.startswith("DEF-") for b in bones)
    assert [o.name for o in bpy.data.objects] == ["rigify"]  # the generator's objects are gone
    assert all(len(p.constraints) == 0 for p in armature.pose.bones)
    _check_preset(armature, "rigify")
    parent = {b.name: b.parent.name if b.parent else None for b in bones}
    assert parent["DEF-spine"] is None
    assert parent["DEF-thigh.L"] == "DEF-spine" and parent["DEF-shin.L"] == "DEF-thigh.L.001"
    assert parent["DEF-upper_arm.L"] == "DEF-shoulder.L" and parent["DEF-shoulder.L"] == "DEF-spine.003"
    assert parent["DEF-f_index.01.L"] == "DEF-palm.01.L" and parent["DEF-palm.01.L"] == "DEF-hand.L"
    skeleton = read_skeleton(armature)
    assert 1.5 < skeleton.rest_heads_world[:, 2].max() < 2.2  # Rigify's metarig is about 1.8 m tall


def test_a_pose_rolled_rig():
    t_pose = read_skeleton(rig_factory.mpfb_rig("mixamo", with_mesh=False))
    armature = rig_factory.a_pose_rolled_rig()
    _check_preset(armature, "mixamo")
    a_pose = read_skeleton(armature)
    assert a_pose.joint_names == t_pose.joint_names
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        shoulder = a_pose.index(f"mixamorig:{side}Arm")
        hand = a_pose.index(f"mixamorig:{side}Hand")
        arm = a_pose.rest_heads_world[hand] - a_pose.rest_heads_world[shoulder]
        t_arm = t_pose.rest_heads_world[hand] - t_pose.rest_heads_world[shoulder]
        drop = np.degrees(np.arctan2(-arm[2], sign * arm[0])) - np.degrees(np.arctan2(-t_arm[2], sign * t_arm[0]))
        assert drop == pytest.approx(45.0, abs=0.5)
        assert np.linalg.norm(arm) == pytest.approx(np.linalg.norm(t_arm), abs=1e-5)
    for name in ("mixamorig:LeftUpLeg", "mixamorig:RightLeg", "mixamorig:LeftFoot"):
        j = a_pose.index(name)
        turned, rest = a_pose.rest_frames_world[j, :3, :3], t_pose.rest_frames_world[j, :3, :3]
        assert np.allclose(turned[:, 1], rest[:, 1], atol=1e-5)  # same bone direction
        assert turned[:, 0] @ rest[:, 2] == pytest.approx(-1.0, abs=1e-4)  # +90 deg roll: X onto the old -Z
    untouched = a_pose.index("mixamorig:Spine")
    assert np.allclose(a_pose.rest_frames_world[untouched], t_pose.rest_frames_world[untouched], atol=1e-6)

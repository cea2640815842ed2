"""Retargeting in Blender with real bpy: baking onto any armature, the Retarget operator end to
end on the MPFB2 rigs (tests/rig_factory.py), bone mappings stored on armatures, the panel.

The truth every bake is checked against is Blender's own evaluation of the keys
(readback.read_pose_frames: the depsgraph poses the armature), never our arrays read back.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import bpy
import mathutils
import numpy as np
import pytest

from avatar_capture.blender.readback import read_pose_frames, read_skeleton
from avatar_capture.blender.retarget_bake import (bake_clip, quat_to_blender_axis_angle,
                                                  quat_to_euler_continuous)
from avatar_capture.blender.retarget_mapping import mapping_for_armature, store_mapping, stored_mapping
from avatar_capture.core.clip import MotionClip, clip_from_pose, load_clip, save_clip
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.kinematics import forward_kinematics
from avatar_capture.core.retarget.auto_map import auto_map
from avatar_capture.core.retarget.humanoid import REQUIRED_JOINTS, load_mapping
from avatar_capture.core.retarget.presets import PRESETS
from avatar_capture.core.rotations import axis_angle_to_quat, quat_normalize
from avatar_capture.core.skeleton import Skeleton
from motion_factory import random_clip
from rig_factory import a_pose_rolled_rig, mpfb_rig, rigify_rig, ue5_rig
from shared_media import SHARED_MEDIA

CMU_BVH = SHARED_MEDIA / "bvh" / "TMoCo_InverseKinematics__02_01.bvh"  # 343 frames at 120 fps

ROTATION_MODES = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX", "QUATERNION", "AXIS_ANGLE")
# Parent -> child canonical joints whose heads give a limb direction.
LIMBS = tuple((f"{side}_{a}", f"{side}_{b}") for side in ("left", "right")
              for a, b in (("upper_arm", "lower_arm"), ("lower_arm", "hand"),
                           ("upper_leg", "lower_leg"), ("lower_leg", "foot")))


def swinging_clip(skeleton: Skeleton, frames: int, fps: float = 30.0, amplitude: float = 0.6,
                  seed: int = 0) -> MotionClip:
    """Every joint of skeleton swings on random sinusoids while the root walks along -Y; no contacts."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None]
    joints = skeleton.joint_count
    angles = rng.uniform(-amplitude, amplitude, (1, joints, 3)) * np.sin(
        2 * np.pi * t / rng.uniform(15, 60, (1, joints, 3)) + rng.uniform(0, 2 * np.pi, (1, joints, 3)))
    rotations = axis_angle_to_quat(angles)
    root = skeleton.rest_heads_world[0] + np.outer(np.arange(frames), [0.004, -0.015, 0.0])
    posed = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, rotations, root)
    return MotionClip(fps=fps, skeleton=skeleton, rotations=rotations, root_translation=root,
                      joints_world=posed[:, :, :3, 3], landmark_names=(), landmarks_world=np.zeros((frames, 0, 3)),
                      contacts=np.zeros((frames, 4)), body_model="none", body_shape_names=(),
                      body_shape=np.zeros(0))


def action_of(obj) -> bpy.types.Action | None:
    return obj.animation_data.action if obj.animation_data else None


def fcurves(action: bpy.types.Action) -> list:
    """Every F-curve of a (layered or legacy) action."""
    if hasattr(action, "layers"):
        return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                for fc in bag.fcurves]
    return list(action.fcurves)


def keys_of(action: bpy.types.Action) -> dict:
    return {(fc.data_path, fc.array_index): [tuple(k.co) for k in fc.keyframe_points] for fc in fcurves(action)}


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def limb_directions(joints_world: np.ndarray, names: tuple[str, ...], mapping) -> np.ndarray:
    """Unit directions (T, L, 3) from each LIMBS parent head to its child head."""
    index = {n: i for i, n in enumerate(names)}
    heads = np.array([index[mapping.bones[a]] for a, _ in LIMBS])
    tails = np.array([index[mapping.bones[b]] for _, b in LIMBS])
    d = joints_world[:, tails] - joints_world[:, heads]
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def angle_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def evaluated_joints(scene, armature, frames: int) -> np.ndarray:
    names = read_skeleton(armature).joint_names
    return read_pose_frames(scene, armature, names, range(1, frames + 1))[:, :, :3, 3]


def make_source_file(tmp_path: Path, frames: int = 24, fps: float = 30.0) -> tuple[Path, MotionClip]:
    """A clip on the game-engine rig's skeleton (built in the scene, read back, then deleted) saved as .npz."""
    rig = mpfb_rig("game_engine", with_mesh=False)
    clip = swinging_clip(read_skeleton(rig), frames, fps=fps, seed=3)
    data = rig.data
    bpy.data.objects.remove(rig)
    bpy.data.armatures.remove(data)
    path = save_clip(clip, tmp_path / "walk.npz")
    return path, load_clip(path)


def retarget_op(*args, **kwargs) -> set[str]:
    kwargs.setdefault("source_type", "FILE")
    return bpy.ops.avatar.retarget(*args, **kwargs)


# ---------------------------------------------------------------- baking


def test_bake_is_exact_on_a_rotated_scaled_parented_armature_with_any_rotation_mode(fresh_addon) -> None:
    scene = bpy.context.scene
    rig = mpfb_rig("mixamo", with_mesh=False)
    parent = bpy.data.objects.new("Offset", None)
    scene.collection.objects.link(parent)
    parent.location = (0.3, -1.2, 0.1)
    parent.rotation_euler = (0.0, 0.0, 0.4)
    rig.parent = parent
    rig.rotation_euler = (math.pi / 2, 0.0, 0.0)  # an FBX import: Y-up data turned Z-up ...
    rig.scale = (0.01, 0.01, 0.01)                # ... in centimetres
    for i, bone in enumerate(rig.pose.bones):
        bone.rotation_mode = ROTATION_MODES[i % len(ROTATION_MODES)]
    bpy.context.view_layer.update()
    skeleton = read_skeleton(rig)
    frames = 40
    clip = swinging_clip(skeleton, frames, amplitude=1.8)  # large turns: Euler wrap-around happens
    action = bake_clip(rig, clip, action_name="Baked")
    assert action_of(rig) == action and action.name == "Baked"

    posed = read_pose_frames(scene, rig, skeleton.joint_names, range(1, frames + 1))
    assert np.abs(posed[:, :, :3, 3] - clip.joints_world).max() < 1e-4
    expected = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, clip.rotations,
                                  clip.root_translation)
    assert np.abs(posed[:, :, :3, :3] - expected[:, :, :3, :3]).max() < 1e-4

    curves = {(fc.data_path, fc.array_index): fc for fc in fcurves(action)}
    root = skeleton.joint_names[0]
    location = np.array([[k.co[1] for k in curves[(f'pose.bones["{root}"].location', i)].keyframe_points]
                         for i in range(3)]).T
    # The root's keys are in its local units: the world walk divided by the object's scale 0.01.
    walk = np.linalg.norm(clip.root_translation[-1] - clip.root_translation[0])
    assert np.linalg.norm(location[-1] - location[0]) == pytest.approx(walk / 0.01, rel=1e-4)
    for (path, _), curve in curves.items():
        if path.endswith("rotation_euler"):
            values = np.array([k.co[1] for k in curve.keyframe_points], dtype=np.float64)
            assert np.allclose(np.unwrap(values), values, atol=1e-5), f"{path} jumps a turn"


def test_bones_at_rest_get_one_identity_key(fresh_addon) -> None:
    rig = mpfb_rig("mixamo", with_mesh=False)
    skeleton = read_skeleton(rig)
    clip = swinging_clip(skeleton, 10)
    rest = [j for j, name in enumerate(skeleton.joint_names) if "Hand" in name and name[-1].isdigit()]
    rotations = clip.rotations.copy()
    rotations[:, rest] = (1.0, 0.0, 0.0, 0.0)
    clip = replace(clip, rotations=rotations)
    keys = keys_of(bake_clip(rig, clip, action_name="Hands still"))
    finger = skeleton.joint_names[rest[0]]
    assert keys[(f'pose.bones["{finger}"].rotation_quaternion', 0)] == [(1.0, 1.0)]
    assert len(keys[(f'pose.bones["{skeleton.joint_names[0]}"].rotation_quaternion', 0)]) == 10


def test_euler_and_axis_angle_values_are_blenders_rotations() -> None:
    rng = np.random.default_rng(7)
    quats = quat_normalize(rng.normal(size=(50, 4)))
    for order in ROTATION_MODES[:6]:
        eulers = quat_to_euler_continuous(quats, order)
        for q, e in zip(quats, eulers):
            ours = mathutils.Euler(e, order).to_matrix()
            assert np.allclose(np.array(ours), np.array(mathutils.Quaternion(q).to_matrix()), atol=1e-6), order
    for q, (angle, *axis) in zip(quats, quat_to_blender_axis_angle(quats)):
        ours = mathutils.Quaternion(axis, angle).to_matrix()
        assert np.allclose(np.array(ours), np.array(mathutils.Quaternion(q).to_matrix()), atol=1e-6)


def test_bake_keeps_or_replaces_an_existing_action(fresh_addon) -> None:
    rig = mpfb_rig("mixamo", with_mesh=False)
    clip = swinging_clip(read_skeleton(rig), 5)
    first = bake_clip(rig, clip, action_name="First")
    second = bake_clip(rig, clip, action_name="Second")
    assert action_of(rig) == second and "First" in bpy.data.actions and first.use_fake_user
    third = bake_clip(rig, clip, action_name="Third", replace_action=True)
    assert action_of(rig) == third
    assert "Second" not in bpy.data.actions  # no other user: removed
    # Replace never removes an action something else still uses.
    other = bpy.data.objects.new("Other", None)
    other.animation_data_create().action = third
    bake_clip(rig, clip, action_name="Fourth", replace_action=True)
    assert "Third" in bpy.data.actions and action_of(other) == third


# ---------------------------------------------------------------- mappings


def test_mapping_store_read_and_json_round_trip(fresh_addon, tmp_path: Path) -> None:
    rig = mpfb_rig("mixamo", with_mesh=False)
    assert stored_mapping(rig) is None
    auto = mapping_for_armature(rig)
    assert auto.bones == PRESETS["mixamo"].bones
    store_mapping(rig, auto)
    assert stored_mapping(rig) == auto and len(rig.avatar_retarget_map.joints) > len(auto.bones)

    bpy.context.view_layer.objects.active = rig
    path = tmp_path / "mixamo_map.json"
    assert bpy.ops.avatar.retarget_mapping_save(filepath=str(path)) == {"FINISHED"}
    assert load_mapping(path) == auto
    other = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = other
    assert bpy.ops.avatar.retarget_mapping_load(filepath=str(path)) == {"FINISHED"}
    assert stored_mapping(other) == auto

    # An edit in the sidebar: a required joint cleared, then one moved to another bone.
    items = {item.name: item for item in other.avatar_retarget_map.joints}
    items["left_hand"].bone = ""
    with pytest.raises(AvatarCaptureError, match="left_hand"):
        mapping_for_armature(other)
    items["left_hand"].bone = "mixamorig:LeftHandIndex1"
    with pytest.raises(AvatarCaptureError, match="mapped to both 'left_hand' and 'left_index_1'"):
        mapping_for_armature(other)
    items["left_hand"].bone = "mixamorig:LeftHand"
    assert mapping_for_armature(other) == auto


def test_auto_map_operator_by_preset_and_auto(fresh_addon) -> None:
    rig = mpfb_rig("cmu_mb", with_mesh=False)
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.avatar.retarget_auto_map(preset="AUTO") == {"FINISHED"}
    names = [b.name for b in rig.data.bones]
    parents = [b.parent.name if b.parent else None for b in rig.data.bones]
    assert stored_mapping(rig) == auto_map(names, parents)[0]
    with pytest.raises(RuntimeError, match="none of the bones of preset 'mixamo'"):
        bpy.ops.avatar.retarget_auto_map(preset="mixamo")
    assert stored_mapping(rig) == auto_map(names, parents)[0]  # unchanged by the failed call

    # A chosen preset on a rig that has its bones: exactly the preset (from the sidebar's choice).
    mixamo = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = mixamo
    bpy.context.scene.avatar_retarget.preset = "mixamo"
    assert bpy.ops.avatar.retarget_auto_map() == {"FINISHED"}
    assert stored_mapping(mixamo) == PRESETS["mixamo"]


# ---------------------------------------------------------------- the operator


TARGETS = {"mixamo": lambda: mpfb_rig("mixamo", with_mesh=False), "a_pose_rolled": a_pose_rolled_rig,
           "ue5": ue5_rig, "rigify": rigify_rig}


@pytest.mark.parametrize("rig", TARGETS)
def test_retarget_a_clip_file_onto_real_rigs(fresh_addon, tmp_path: Path, rig: str) -> None:
    scene = bpy.context.scene
    path, source = make_source_file(tmp_path, frames=30, fps=30.0)
    before = file_hash(path)
    scene.render.fps, scene.render.fps_base = 30, 1.0
    target = TARGETS[rig]()
    bpy.context.view_layer.objects.active = target
    assert retarget_op(filepath=str(path), foot_lock=False) == {"FINISHED"}
    action = action_of(target)
    assert action is not None and (scene.frame_start, scene.frame_end) == (1, 30)
    assert file_hash(path) == before

    source_map = auto_map(source.skeleton.joint_names, source.skeleton.parents)[0]
    target_map = mapping_for_armature(target)
    moved = evaluated_joints(scene, target, 30)
    err = angle_degrees(limb_directions(moved, read_skeleton(target).joint_names, target_map),
                        limb_directions(source.joints_world, source.skeleton.joint_names, source_map))
    assert err.max() < 1.0, err.max()
    # The motion is not just the rest pose: limbs really turn over the clip.
    rest = limb_directions(moved[:1], read_skeleton(target).joint_names, target_map)
    assert angle_degrees(limb_directions(moved, read_skeleton(target).joint_names, target_map), rest).max() > 10


def test_a_loose_bone_beside_the_body_is_left_alone(fresh_addon, tmp_path: Path) -> None:
    """A second root bone (a prop or IK helper at the top level) neither blocks the retarget nor moves."""
    scene = bpy.context.scene
    path, _source = make_source_file(tmp_path, frames=12, fps=30.0)
    scene.render.fps, scene.render.fps_base = 30, 1.0
    target = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = target
    bpy.ops.object.mode_set(mode="EDIT")
    loose = target.data.edit_bones.new("ik_hand_gun")
    loose.head, loose.tail = (0.3, 0.0, 1.0), (0.3, 0.0, 1.1)
    bpy.ops.object.mode_set(mode="OBJECT")
    assert sum(bone.parent is None for bone in target.data.bones) == 2
    assert retarget_op(filepath=str(path), foot_lock=False) == {"FINISHED"}
    paths = {fcurve.data_path for fcurve in fcurves(action_of(target))}
    assert 'pose.bones["mixamorig:Hips"].location' in paths
    assert not any("ik_hand_gun" in p for p in paths)
    body = read_pose_frames(scene, target, ["mixamorig:Hips"], range(1, 13))[:, 0, :3, 3]
    assert np.ptp(body, axis=0).max() > 0.05  # the body walks
    loose_track = read_pose_frames(scene, target, ["ik_hand_gun"], range(1, 13))
    np.testing.assert_allclose(loose_track[:, 0, :3, 3], np.tile([0.3, 0.0, 1.0], (12, 1)), atol=1e-6)


def test_a_target_imported_like_fbx_moves_like_one_at_identity(fresh_addon, tmp_path: Path) -> None:
    """The same rig as an FBX import has it (Y-up centimetre bones, object turned 90 degrees about X
    and scaled 0.01, under a parent) gets the same world motion as the rig at identity; run from the
    sidebar (no options given: the scene's retarget settings)."""
    scene = bpy.context.scene
    path, _ = make_source_file(tmp_path, frames=12)
    plain = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = plain
    assert retarget_op(filepath=str(path)) == {"FINISHED"}
    expected = evaluated_joints(scene, plain, 12)

    imported = mpfb_rig("mixamo", with_mesh=False)
    parent = bpy.data.objects.new("Import", None)
    scene.collection.objects.link(parent)
    parent.location = (0.0, 0.0, 0.0)
    fbx = mathutils.Matrix.Rotation(math.pi / 2, 4, "X") @ mathutils.Matrix.Scale(0.01, 4)
    imported.data.transform(fbx.inverted())  # bone data in Y-up centimetres
    imported.parent = parent
    imported.matrix_world = fbx
    for bone in imported.pose.bones:
        bone.rotation_mode = "ZXY"
    bpy.context.view_layer.update()
    # The same rest skeleton in the world (float32 bone data in centimetres: ~1e-5 m).
    assert np.abs(read_skeleton(imported).rest_frames_world - read_skeleton(plain).rest_frames_world).max() < 1e-4
    settings = scene.avatar_retarget
    settings.source_type, settings.source_path, settings.foot_lock = "FILE", str(path), True
    bpy.context.view_layer.objects.active = imported
    assert bpy.ops.avatar.retarget() == {"FINISHED"}
    assert np.abs(evaluated_joints(scene, imported, 12) - expected).max() < 1e-4


def test_retarget_a_captured_anny_clip(fresh_addon, tmp_path: Path, anny_rig) -> None:
    """A clip as capture writes it (Anny skeleton, landmarks, body model) lands on the Mixamo rig."""
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    source = random_clip(anny_rig, 20, seed=5, amplitude_rad=0.3)
    source_map = auto_map(source.skeleton.joint_names, source.skeleton.parents)[0]
    # Anny's limbs have unmapped twist segments (upperarm02 ...) between mapped bones: moved by
    # capture only about their own axis. Hold them still here (random swings would bend the limb
    # between the mapped joints, which no bone-by-bone transfer can reproduce).
    mapped = {source.skeleton.index(b) for b in source_map.bones.values()} | {0}
    rotations = source.rotations.copy()
    rotations[:, [j for j in range(source.skeleton.joint_count) if j not in mapped]] = (1.0, 0.0, 0.0, 0.0)
    source = clip_from_pose(anny_rig, rotations, source.root_translation, source.fps, contacts=source.contacts)
    path = save_clip(source, tmp_path / "captured.npz")
    target = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = target
    assert retarget_op(filepath=str(path), foot_lock=False) == {"FINISHED"}
    assert source_map.name == "anny"
    err = angle_degrees(limb_directions(evaluated_joints(scene, target, 20), read_skeleton(target).joint_names,
                                        mapping_for_armature(target)),
                        limb_directions(source.joints_world, source.skeleton.joint_names, source_map))
    assert err.max() < 1.0, err.max()


@pytest.mark.skipif(not CMU_BVH.exists(), reason="shared CMU BVH clips absent")
def test_retarget_a_cmu_bvh_resampled_to_the_scene(fresh_addon) -> None:
    from avatar_capture.core.retarget.bvh_clip import clip_from_bvh
    from avatar_capture.core.retarget.resample import resample_clip

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    target = ue5_rig()
    bpy.context.view_layer.objects.active = target
    assert retarget_op(filepath=str(CMU_BVH)) == {"FINISHED"}
    source = resample_clip(clip_from_bvh(CMU_BVH), 24.0)
    assert scene.frame_end == source.frame_count == 69  # 342 / 120 s at 24 fps
    source_map = auto_map(source.skeleton.joint_names, source.skeleton.parents)[0]
    moved = evaluated_joints(scene, target, source.frame_count)
    err = angle_degrees(limb_directions(moved, read_skeleton(target).joint_names, mapping_for_armature(target)),
                        limb_directions(source.joints_world, source.skeleton.joint_names, source_map))
    # Foot locking (on by default) may bend the legs on contact frames; the arms are transferred as they are.
    arms = [i for i, (a, _) in enumerate(LIMBS) if "arm" in a]
    assert err[:, arms].max() < 1.0, err[:, arms].max()
    assert np.median(err) < 1.0


def test_retarget_from_an_armature_keeps_the_source_and_undo_restores(fresh_addon) -> None:
    scene = bpy.context.scene
    source = mpfb_rig("game_engine", with_mesh=False)
    source_clip = swinging_clip(read_skeleton(source), 12, fps=scene.render.fps / scene.render.fps_base)
    source_action = bake_clip(source, source_clip, action_name="Source motion")
    source_keys = keys_of(source_action)
    target = mpfb_rig("mixamo", with_mesh=False)
    old = bake_clip(target, swinging_clip(read_skeleton(target), 4, seed=9), action_name="Old take")
    bpy.context.view_layer.objects.active = target

    bpy.ops.ed.undo_push(message="before retarget")
    assert retarget_op("EXEC_DEFAULT", True, source_type="ARMATURE", source_armature=source.name,
                       foot_lock=False) == {"FINISHED"}
    new = action_of(target)
    assert new != old and "Old take" in bpy.data.actions and bpy.data.actions["Old take"].use_fake_user
    assert action_of(source) == source_action and keys_of(source_action) == source_keys
    source_map = mapping_for_armature(source)
    target_map = mapping_for_armature(target)
    err = angle_degrees(limb_directions(evaluated_joints(scene, target, 12), read_skeleton(target).joint_names,
                                        target_map),
                        limb_directions(source_clip.joints_world, source_clip.skeleton.joint_names, source_map))
    assert err.max() < 1.0, err.max()
    new_name = new.name

    bpy.ops.ed.undo()
    target = bpy.data.objects["mixamo"]
    assert new_name not in bpy.data.actions
    assert action_of(target).name == "Old take"


def test_replace_removes_the_old_action_only_when_chosen(fresh_addon, tmp_path: Path) -> None:
    path, _ = make_source_file(tmp_path, frames=8)
    target = mpfb_rig("mixamo", with_mesh=False)
    bake_clip(target, swinging_clip(read_skeleton(target), 4), action_name="Old take")
    bpy.context.view_layer.objects.active = target
    assert retarget_op(filepath=str(path), existing_action="REPLACE") == {"FINISHED"}
    assert "Old take" not in bpy.data.actions and action_of(target) is not None


def test_in_place_keeps_the_hips_over_their_rest_spot(fresh_addon, tmp_path: Path) -> None:
    scene = bpy.context.scene
    path, _ = make_source_file(tmp_path, frames=20)  # the source walks 0.3 m along -Y
    target = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = target
    hips = read_skeleton(target).index("mixamorig:Hips")
    rest = read_skeleton(target).rest_heads_world[hips]
    assert retarget_op(filepath=str(path), in_place=True) == {"FINISHED"}
    assert np.abs(evaluated_joints(scene, target, 20)[:, hips, :2] - rest[:2]).max() < 1e-4
    assert retarget_op(filepath=str(path), in_place=False, foot_lock=False) == {"FINISHED"}
    travel = evaluated_joints(scene, target, 20)[-1, hips, :2] - evaluated_joints(scene, target, 20)[0, hips, :2]
    assert travel[1] < -0.2


@pytest.mark.parametrize("mode", ["RESAMPLE", "SCENE"])
def test_a_clip_at_another_frame_rate(fresh_addon, tmp_path: Path, mode: str) -> None:
    scene = bpy.context.scene
    path, source = make_source_file(tmp_path, frames=31, fps=60.0)  # half a second
    scene.render.fps, scene.render.fps_base = 24, 1.0
    target = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = target
    assert retarget_op(filepath=str(path), fps_mode=mode, foot_lock=False) == {"FINISHED"}
    fps = scene.render.fps / scene.render.fps_base
    if mode == "RESAMPLE":
        assert fps == 24 and scene.frame_end == 13  # 0.5 s at 24 fps
    else:
        assert fps == pytest.approx(60.0) and scene.frame_end == 31
    # Same motion at the same times: the last frame is the source's last pose.
    target_map = mapping_for_armature(target)
    source_map = auto_map(source.skeleton.joint_names, source.skeleton.parents)[0]
    last = evaluated_joints(scene, target, scene.frame_end)[-1:]
    err = angle_degrees(limb_directions(last, read_skeleton(target).joint_names, target_map),
                        limb_directions(source.joints_world[-1:], source.skeleton.joint_names, source_map))
    assert err.max() < 1.0


def data_counts() -> dict:
    return {name: len(getattr(bpy.data, name)) for name in ("actions", "objects", "armatures")}


def test_bad_input_is_one_error_and_changes_nothing(fresh_addon, tmp_path: Path) -> None:
    scene = bpy.context.scene
    path, _ = make_source_file(tmp_path, frames=6)
    with pytest.raises(RuntimeError, match="active object must be an armature"):
        retarget_op(filepath=str(path))

    # A non-humanoid target: a three-bone arm.
    data = bpy.data.armatures.new("Crane")
    crane = bpy.data.objects.new("Crane", data)
    scene.collection.objects.link(crane)
    bpy.context.view_layer.objects.active = crane
    bpy.ops.object.mode_set(mode="EDIT")
    for i, name in enumerate(("base", "boom", "hook")):
        bone = data.edit_bones.new(name)
        bone.head, bone.tail = (0, 0, i), (0, 0, i + 1)
        if i:
            bone.parent = data.edit_bones[i - 1]
    bpy.ops.object.mode_set(mode="OBJECT")
    before = data_counts()
    with pytest.raises(RuntimeError, match="'Crane': no humanoid skeleton recognised.*could not find hips"):
        retarget_op(filepath=str(path))
    assert data_counts() == before and crane.animation_data is None

    # A partial mapping: the user cleared two required joints.
    target = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = target
    store_mapping(target, mapping_for_armature(target))
    items = {item.name: item for item in target.avatar_retarget_map.joints}
    items["right_foot"].bone = items["head"].bone = ""
    before = data_counts()
    with pytest.raises(RuntimeError, match="required joint\\(s\\) unmapped: head, right_foot"):
        retarget_op(filepath=str(path))
    assert data_counts() == before and target.animation_data is None

    # Unreadable files.
    store_mapping(target, PRESETS["mixamo"])
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="broken.npz: "):
        retarget_op(filepath=str(broken))
    with pytest.raises(RuntimeError, match="notes.txt: the source motion must be a .npz or .bvh file"):
        retarget_op(filepath=str(tmp_path / "notes.txt"))
    assert data_counts() == before and target.animation_data is None


# ---------------------------------------------------------------- the panel


def test_panel_lists_the_mapping_and_marks_missing_required_joints(fresh_addon) -> None:
    from test_ui import RecordingLayout, operators_drawn

    from avatar_capture.panels.retarget import VIEW3D_PT_avatar_retarget

    panel = bpy.types.VIEW3D_PT_avatar_retarget
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "Avatar")
    target = mpfb_rig("mixamo", with_mesh=False)
    bpy.context.view_layer.objects.active = target

    def draw() -> list:
        calls: list = []
        context = type("Context", (), dict(scene=bpy.context.scene, active_object=target,
                                           region=type("Region", (), {"width": 300}),
                                           preferences=bpy.context.preferences))
        VIEW3D_PT_avatar_retarget.draw(type("Panel", (), {"layout": RecordingLayout(calls)}), context)
        return calls

    calls = draw()
    assert {"avatar.retarget", "avatar.retarget_auto_map", "avatar.retarget_mapping_save",
            "avatar.retarget_mapping_load"} <= set(operators_drawn(calls))
    registered = hasattr(bpy.types, "AVATAR_OT_rebind_to_rig")
    assert ("avatar.rebind_to_rig" in operators_drawn(calls)) == registered
    if not registered:  # the button appears once the rebind operator is registered
        stand_in = type("AVATAR_OT_rebind_to_rig", (bpy.types.Operator,),
                        {"bl_idname": "avatar.rebind_to_rig", "bl_label": "Rebind"})
        bpy.utils.register_class(stand_in)
        try:
            assert "avatar.rebind_to_rig" in operators_drawn(draw())
        finally:
            bpy.utils.unregister_class(stand_in)
    assert not any(name == "prop_search" for name, _, _ in calls)  # nothing stored yet: auto-mapping

    store_mapping(target, mapping_for_armature(target))
    {item.name: item for item in target.avatar_retarget_map.joints}["left_hand"].bone = ""
    calls = draw()
    searched = [args for name, args, _ in calls if name == "prop_search"]
    assert len(searched) == len(REQUIRED_JOINTS)  # optional joints hidden by default
    labels = " ".join(kwargs.get("text", "") for name, _, kwargs in calls if name == "label")
    assert "Required joints unmapped: left_hand" in labels
    bpy.context.scene.avatar_retarget.show_optional = True
    assert len([1 for name, _, _ in draw() if name == "prop_search"]) == len(target.avatar_retarget_map.joints)

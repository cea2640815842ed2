"""Importing a clip into Blender (real bpy, real Anny body): the scene must reproduce the core exactly."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector
from blender_probe import evaluated_vertices
from motion_factory import random_clip

from avatar_capture.blender import import_scene
from avatar_capture.blender.action import FIRST_FRAME
from avatar_capture.blender.import_scene import import_avatar
from avatar_capture.core.clip import Camera, save_clip
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.landmarks import CONTACT_NAMES

CLIP_FRAMES = 300
DATA_KINDS = ("objects", "armatures", "meshes", "materials", "actions", "cameras", "collections")


@pytest.fixture(scope="module")
def rig(anny_rig):
    return anny_rig


@pytest.fixture(scope="module")
def clip(rig):
    return random_clip(rig, CLIP_FRAMES, seed=1)


@pytest.fixture(autouse=True)
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def pose_heads(armature, names) -> np.ndarray:
    return np.array([np.array(armature.matrix_world @ armature.pose.bones[n].head) for n in names])


def data_snapshot() -> dict[str, list[str]]:
    return {kind: sorted(block.name for block in getattr(bpy.data, kind)) for kind in DATA_KINDS}


def look_at_opencv(eye, target) -> np.ndarray:
    """world_to_cam (4, 4), OpenCV axes (x right, y down, z forward), Z-up world."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0.0, 0.0, -1.0])
    x /= np.linalg.norm(x)
    rotation = np.stack((x, np.cross(z, x), z))
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, -rotation @ eye
    return out


def test_evaluated_mesh_equals_core_skinning(scene, rig, clip):
    armature = import_avatar(scene, clip, rig, name="Walker")

    (body,) = [child for child in armature.children if child.type == "MESH"]
    frames = rig.pose(clip.rotations, clip.root_translation)
    for t in (0, 97, 211, CLIP_FRAMES - 1):
        scene.frame_set(t + FIRST_FRAME)
        blender = evaluated_vertices(body)
        core = rig.skin(frames[t:t + 1])[0]
        assert np.abs(core - rig.vertices_rest).max() > 0.05  # the pose really deforms the body
        assert np.abs(blender - core).max() < 1e-4, f"frame {t}"


def test_pose_bone_heads_follow_clip_joints(scene, rig, clip):
    armature = import_avatar(scene, clip, rig)
    names = clip.skeleton.joint_names
    for t in (0, 1, 150, CLIP_FRAMES - 1):
        scene.frame_set(t + FIRST_FRAME)
        assert np.abs(pose_heads(armature, names) - clip.joints_world[t]).max() < 1e-5, f"frame {t}"


def test_armature_bones_are_the_skeleton(scene, rig, clip):
    armature = import_avatar(scene, clip, rig)
    skeleton = clip.skeleton
    bones = armature.data.bones
    assert sorted(b.name for b in bones) == sorted(skeleton.joint_names)
    for name, parent, rest, length in zip(skeleton.joint_names, skeleton.parents, skeleton.rest_frames_world,
                                          skeleton.bone_lengths):
        bone = bones[name]
        assert np.abs(np.array(bone.matrix_local) - rest).max() < 1e-5, name
        assert bone.length == pytest.approx(length, abs=1e-5)
        assert (bone.parent.name if bone.parent else None) == (skeleton.joint_names[parent] if parent >= 0 else None)
        assert bone.use_deform and not bone.use_connect
        assert armature.pose.bones[name].rotation_mode == "QUATERNION"
    groups = {g.name for g in armature.children[0].vertex_groups}
    assert groups == set(skeleton.joint_names)


def test_scene_timing_and_contacts(scene, rig):
    clip = random_clip(rig, 12, seed=4, fps=29.97)
    armature = import_avatar(scene, clip)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(29.97, rel=1e-6)
    assert (scene.frame_start, scene.frame_end) == (FIRST_FRAME, FIRST_FRAME + 11)
    assert armature.animation_data.action.frame_range[:] == pytest.approx((FIRST_FRAME, FIRST_FRAME + 11))
    for t in (0, 5, 11):
        scene.frame_set(t + FIRST_FRAME)
        values = [armature[f"contact_{name}"] for name in CONTACT_NAMES]
        assert values == pytest.approx(clip.contacts[t], abs=1e-6)
    scene.frame_set(FIRST_FRAME + 6, subframe=0.5)  # LINEAR keys: halfway between frames 6 and 7
    values = [armature[f"contact_{name}"] for name in CONTACT_NAMES]
    assert values == pytest.approx(clip.contacts[6:8].mean(axis=0), abs=1e-6)
    if hasattr(bpy.types, "ActionSlot"):  # Blender 4.4+: a layered action with a slot for the armature
        assert armature.animation_data.action_slot is not None
    assert not [c for c in armature.children if c.type == "MESH"]  # no rig given: skeleton only

    bpy.ops.wm.read_factory_settings(use_empty=True)
    import_avatar(bpy.context.scene, random_clip(rig, 3, fps=24.0))
    assert (bpy.context.scene.render.fps, bpy.context.scene.render.fps_base) == (24, 1.0)


@pytest.mark.parametrize("size, K", [
    ((1280, 720), [[1000.0, 0, 600], [0, 1000.0, 380], [0, 0, 1]]),
    ((720, 1280), [[900.0, 0, 370], [0, 980.0, 600], [0, 0, 1]]),  # portrait, non-square pixels
])
def test_camera_reprojects_joints(scene, rig, size, K):
    frames = 40
    K = np.array(K)
    world_to_cam = np.stack([look_at_opencv(np.array([0.5 + 0.03 * t, -4.0, 1.2 + 0.01 * t]),
                                            np.array([0.0, 0.0, 0.9])) for t in range(frames)])
    clip = random_clip(rig, frames, seed=2, camera=Camera(K, world_to_cam, size))
    import_avatar(scene, clip)
    camera = scene.camera
    assert camera is not None and (scene.render.resolution_x, scene.render.resolution_y) == size
    width, height = size
    for t in (3, 33):
        scene.frame_set(t + FIRST_FRAME)
        joints = clip.joints_world[t]
        cam = joints @ world_to_cam[t, :3, :3].T + world_to_cam[t, :3, 3]
        expected = (cam @ K.T)[:, :2] / cam[:, 2:]
        ndc = np.array([world_to_camera_view(scene, camera, Vector(p))[:2] for p in joints])
        # Blender's normalised frame spans whole pixels; OpenCV pixel centres sit at integers.
        blender = np.stack((ndc[:, 0] * width - 0.5, (1.0 - ndc[:, 1]) * height - 0.5), axis=1)
        assert np.abs(blender - expected).max() < 0.5, f"frame {t}"


def test_static_camera_has_no_keys(scene, rig):
    world_to_cam = np.repeat(look_at_opencv(np.array([0.0, -5.0, 1.0]), np.array([0.0, 0.0, 1.0]))[None], 5, 0)
    clip = random_clip(rig, 5, camera=Camera(np.array([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]]),
                                             world_to_cam, (640, 480)))
    import_avatar(scene, clip)
    bpy.context.view_layer.update()
    assert scene.camera.animation_data is None
    assert np.allclose(np.array(scene.camera.matrix_world),
                       np.linalg.inv(world_to_cam[0]) @ np.diag([1.0, -1.0, -1.0, 1.0]), atol=1e-6)


def test_mismatched_rig_is_refused_and_scene_untouched(scene, rig, clip):
    before = data_snapshot()
    moved = rig.skeleton.rest_frames_world.copy()
    moved[:, :3, 3] += 0.01  # another body shape: every joint 1 cm away
    other = dataclasses.replace(rig, skeleton=dataclasses.replace(rig.skeleton, rest_frames_world=moved))
    with pytest.raises(AvatarCaptureError, match="rest pose differs"):
        import_avatar(scene, clip, other)
    assert data_snapshot() == before


def test_failed_import_removes_everything_it_made(scene, rig, monkeypatch):
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.view_layer.objects.active
    scene.render.fps, scene.frame_end, scene.render.resolution_x = 50, 77, 333
    before = data_snapshot()

    def broken_camera(*args, **kwargs):
        raise RuntimeError("camera exploded")

    monkeypatch.setattr(import_scene, "create_camera", broken_camera)
    world_to_cam = np.repeat(np.eye(4)[None], 6, 0)
    clip = random_clip(rig, 6, camera=Camera(np.eye(3), world_to_cam, (64, 48)))
    with pytest.raises(RuntimeError, match="camera exploded"):
        import_avatar(scene, clip, rig)  # armature, mesh, material and actions exist when the camera fails
    assert data_snapshot() == before
    assert (scene.render.fps, scene.frame_end, scene.render.resolution_x) == (50, 77, 333)
    assert list(scene.collection.children) == []
    assert bpy.context.view_layer.objects.active == cube
    assert bpy.context.mode == "OBJECT"


@pytest.fixture(scope="module")
def addon():
    """The add-on registered as Blender registers it (operators, scene properties, preferences)."""
    import avatar_capture

    avatar_capture.register()
    yield
    avatar_capture.unregister()


def test_operator_refuses_a_bad_clip_and_leaves_the_scene(scene, addon, tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip file")
    before = data_snapshot()
    frame_end = scene.frame_end
    with pytest.raises(RuntimeError, match=r"broken\.npz: not a readable \.npz file"):
        bpy.ops.avatar.import_clip(filepath=str(bad))
    with pytest.raises(RuntimeError, match=r"missing\.npz: file not found"):
        bpy.ops.avatar.import_clip(filepath=str(tmp_path / "missing.npz"))
    assert data_snapshot() == before and scene.frame_end == frame_end


def test_operator_imports_a_skeleton_only_clip_at_once(scene, addon, rig, tmp_path):
    path = save_clip(dataclasses.replace(random_clip(rig, 20, seed=5), body_model="none"), tmp_path / "dance.npz")
    assert bpy.ops.avatar.import_clip(filepath=str(path)) == {"FINISHED"}
    armature = bpy.context.view_layer.objects.active
    assert armature.name == "dance" and armature.type == "ARMATURE"
    assert not armature.children and scene.frame_end == FIRST_FRAME + 19
    assert armature["avatar_capture_body_model"] == "none"


def test_operator_builds_the_body_in_a_worker_and_imports_it(scene, addon, rig, tmp_path):
    clip = random_clip(rig, 30, seed=6)
    path = save_clip(clip, tmp_path / "walk.npz")
    assert bpy.ops.avatar.import_clip(filepath=str(path)) == {"FINISHED"}
    job = bpy.context.window_manager.avatar_capture_job
    assert job.stage == "Done" and Path(job.log_path).is_file()  # the body came from a worker job
    armature = bpy.context.view_layer.objects.active
    (body,) = armature.children
    frames = rig.pose(clip.rotations, clip.root_translation)
    for t in (4, 29):
        scene.frame_set(t + FIRST_FRAME)
        assert np.abs(evaluated_vertices(body) - rig.skin(frames[t:t + 1])[0]).max() < 1e-4

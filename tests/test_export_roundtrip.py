"""Export round trips (real bpy, real Anny body): export, re-import with Blender's own importers, compare.

Every joint of every frame must come back within 1 mm of the clip, the skinned
mesh within 1 mm of the core's skinning, a T-/A-pose export must change only
the rest pose, and an export must leave the user's scene as it was.
Re-import settings are Blender's defaults except where noted: FBX anim_offset=0
(Blender's FBX importer shifts keys one frame later by default) and the scene
frame rate set to the clip's before a glTF import (glTF stores seconds).
"""
from __future__ import annotations

import re
from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import kdtree
from blender_probe import evaluated_vertices
from motion_factory import random_clip

from avatar_capture.blender.action import FIRST_FRAME
from avatar_capture.blender.export import FORMAT_EXTENSIONS, export_avatar
from avatar_capture.blender.import_scene import import_avatar
from avatar_capture.core.errors import AvatarCaptureError

from avatar_capture.core.rest_pose import rebase_clip, rebase_rig, rest_frames_for

FRAMES = 40
TOLERANCE = 1e-3  # metres
MESH_FRAMES = (0, 13, 27, 39)
ARMS = {"L": ("upperarm01.L", "wrist.L", 1.0), "R": ("upperarm01.R", "wrist.R", -1.0)}


@pytest.fixture(scope="module")
def rig(anny_rig):
    return anny_rig


@pytest.fixture(scope="module")
def clip(rig):
    return random_clip(rig, FRAMES, seed=7, amplitude_rad=0.5)


@pytest.fixture(autouse=True)
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def export_clip(folder: Path, rig, clip, file_format: str, rest_pose: str = "AS_IS") -> Path:
    armature = import_avatar(bpy.context, clip, rig, "Walker")
    path = folder / f"walker{FORMAT_EXTENSIONS[file_format]}"
    assert export_avatar(bpy.context.scene, armature, path, file_format, rest_pose) == path
    return path


def reimport(path: Path, file_format: str, fps: float):
    """(armature, skinned meshes) after importing path into an empty scene with Blender's importer."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = round(fps), round(fps) / fps
    if file_format == "FBX":
        bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)
    elif file_format == "BVH":
        bpy.ops.import_anim.bvh(filepath=str(path))
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))
    (armature,) = [obj for obj in scene.objects if obj.type == "ARMATURE"]
    meshes = [obj for obj in scene.objects if obj.type == "MESH" and obj.parent == armature]
    return armature, meshes


def joint_errors(armature, clip) -> np.ndarray:
    """Distances (T, J), metres, between the re-imported bone heads and the clip's joints on every frame."""
    scene = bpy.context.scene
    names = clip.skeleton.joint_names
    out = np.empty((clip.frame_count, len(names)))
    for t in range(clip.frame_count):
        scene.frame_set(FIRST_FRAME + t)
        world = np.array(armature.matrix_world)
        heads = np.array([armature.pose.bones[n].head for n in names]) @ world[:3, :3].T + world[:3, 3]
        out[t] = np.linalg.norm(heads - clip.joints_world[t], axis=-1)
    return out


def mesh_errors(mesh_obj, rig, clip) -> list[float]:
    """Largest vertex distance (metres) to the core's skinned mesh at each of MESH_FRAMES.

    Importers may reorder or split vertices, so each imported vertex is matched
    to the nearest core vertex on the first frame (which every core vertex must
    receive); later frames then check that correspondence.
    """
    posed = rig.skin(rig.pose(clip.rotations[list(MESH_FRAMES)], clip.root_translation[list(MESH_FRAMES)]))
    tree = kdtree.KDTree(len(posed[0]))
    for index, point in enumerate(posed[0]):
        tree.insert(point, index)
    tree.balance()
    errors = []
    for number, t in enumerate(MESH_FRAMES):
        bpy.context.scene.frame_set(FIRST_FRAME + t)
        vertices = evaluated_vertices(mesh_obj)
        if number == 0:
            match = np.array([tree.find(v)[1] for v in vertices])
            assert len(np.unique(match)) == len(posed[0]), "some body vertices are missing after the round trip"
        errors.append(float(np.linalg.norm(vertices - posed[number][match], axis=-1).max()))
    return errors


def arm_elevation_degrees(armature, side: str) -> float:
    """Angle of the rest shoulder-to-wrist line above the horizontal (negative: below), degrees."""
    start, end, outward = ARMS[side]
    world = np.array(armature.matrix_world)
    bones = armature.data.bones
    direction = world[:3, :3] @ (np.array(bones[end].head_local) - np.array(bones[start].head_local))
    assert direction[0] * outward > 0, f"the {side} arm does not point to its own side"
    return float(np.degrees(np.arcsin(direction[2] / np.linalg.norm(direction))))


@pytest.mark.parametrize("file_format", ["FBX", "GLB", "GLTF", "BVH"])
def test_every_joint_of_every_frame_round_trips(tmp_path, rig, clip, file_format):
    path = export_clip(tmp_path, rig, clip, file_format)
    written = sorted(p.name for p in tmp_path.iterdir())
    expected = ["walker.bin", "walker.gltf"] if file_format == "GLTF" else [path.name]
    assert written == expected  # no staging folder or partial file left behind

    armature, meshes = reimport(path, file_format, clip.fps)
    errors = joint_errors(armature, clip)
    print(f"\n{file_format}: joint error max {errors.max() * 1000:.4f} mm, mean {errors.mean() * 1000:.4f} mm "
          f"over {clip.frame_count} frames x {clip.skeleton.joint_count} joints")
    assert errors.max() < TOLERANCE
    if file_format == "BVH":
        assert meshes == []
    else:
        (body,) = meshes
        per_frame = mesh_errors(body, rig, clip)
        print(f"{file_format}: mesh error per frame (mm) {[round(e * 1000, 4) for e in per_frame]}")
        assert max(per_frame) < TOLERANCE


def rest_frames(armature, names) -> np.ndarray:
    """World rest frames (J, 4, 4) of the named bones, scale removed."""
    world = np.array(armature.matrix_world)
    frames = np.array([world @ np.array(armature.data.bones[n].matrix_local) for n in names])
    frames[:, :3, :3] /= np.linalg.norm(frames[:, :3, :3], axis=-2, keepdims=True)
    return frames


@pytest.mark.parametrize("file_format", ["FBX", "GLB"])
def test_bone_frames_survive(tmp_path, rig, clip, file_format):
    """Re-imported bones have our rest frames (head, Y along the bone, roll), not just our heads."""
    path = export_clip(tmp_path, rig, clip, file_format)
    armature, _ = reimport(path, file_format, clip.fps)
    assert np.abs(rest_frames(armature, clip.skeleton.joint_names) - clip.skeleton.rest_frames_world).max() < 1e-4


@pytest.mark.parametrize("file_format", ["FBX", "GLB"])
@pytest.mark.parametrize("rest_pose, elevation", [("T_POSE", 0.0), ("A_POSE", -45.0)])
def test_rest_pose_changes_only_the_rest(tmp_path, rig, clip, file_format, rest_pose, elevation):
    """New rest, same world motion; the mesh is the core's rig re-bound in that rest (core/rest_pose.py)."""
    as_is = [arm_elevation_degrees(import_avatar(bpy.context, clip, rig, "Before"), side) for side in ARMS]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    path = export_clip(tmp_path, rig, clip, file_format, rest_pose)
    armature, (body,) = reimport(path, file_format, clip.fps)
    elevations = [arm_elevation_degrees(armature, side) for side in ARMS]
    errors = joint_errors(armature, clip)
    new_rest = rest_frames_for(rig.skeleton, rig.body_model, rest_pose[0])
    rebased_errors = mesh_errors(body, rebase_rig(rig, new_rest), rebase_clip(clip, new_rest))
    print(f"\n{rest_pose} {file_format}: arm elevation {np.round(as_is, 1)} -> {np.round(elevations, 2)} degrees; "
          f"joint error max {errors.max() * 1000:.4f} mm; mesh vs re-bound core rig max "
          f"{max(rebased_errors) * 1000:.4f} mm")
    assert np.abs(np.array(elevations) - elevation).max() < 1.0
    assert np.abs(np.array(as_is) - elevation).min() > 1.5  # the export really changed the rest pose
    assert np.abs(rest_frames(armature, rig.skeleton.joint_names) - new_rest).max() < 1e-4
    assert errors.max() < TOLERANCE
    assert max(rebased_errors) < TOLERANCE
    assert armature.name == "Walker" and body.name == "WalkerBody"  # the user's names, not temporary ones


def scene_state() -> dict:
    scene = bpy.context.scene
    kinds = [name for name in dir(bpy.data) if isinstance(getattr(bpy.data, name), bpy.types.bpy_prop_collection)]
    assert {"scenes", "objects", "meshes", "actions", "materials", "collections"} <= set(kinds)
    return {
        "data": {kind: sorted(block.name for block in getattr(bpy.data, kind)) for kind in kinds},
        "names": (scene.name, [(obj.name, obj.data.name if obj.data else None) for obj in scene.objects]),
        "selected": sorted(obj.name for obj in bpy.context.selected_objects),
        "active": bpy.context.view_layer.objects.active.name,
        "frame": (scene.frame_current, scene.frame_start, scene.frame_end),
        "pose": np.array([b.matrix for b in bpy.data.objects["Walker"].pose.bones]).round(6).tolist(),
    }


@pytest.mark.parametrize("file_format, rest_pose", [("FBX", "AS_IS"), ("GLB", "T_POSE"), ("BVH", "AS_IS")])
def test_export_leaves_the_scene_unchanged(tmp_path, rig, clip, file_format, rest_pose):
    scene = bpy.context.scene
    armature = import_avatar(bpy.context, clip, rig, "Walker")
    extra = bpy.data.objects.new("Other", None)
    scene.collection.objects.link(extra)
    extra.select_set(True)
    armature.select_set(False)
    bpy.context.view_layer.objects.active = extra
    scene.frame_set(FIRST_FRAME + 5)
    scene.frame_start, scene.frame_end = 3, 20
    before = scene_state()
    export_avatar(scene, armature, tmp_path / f"x{FORMAT_EXTENSIONS[file_format]}", file_format, rest_pose)
    assert scene_state() == before


@pytest.mark.parametrize("target", ["/proc/walker.fbx", "{tmp}/missing/walker.fbx", "{tmp}/file.txt/walker.fbx"])
def test_unwritable_target_is_a_clear_error(tmp_path, rig, clip, target):
    (tmp_path / "file.txt").write_text("not a folder")
    path = Path(target.format(tmp=tmp_path))
    armature = import_avatar(bpy.context, clip, rig, "Walker")
    before = scene_state()
    with pytest.raises(AvatarCaptureError, match=re.escape(str(path))):
        export_avatar(bpy.context.scene, armature, path, "FBX")
    assert scene_state() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_hidden_armature_is_a_clear_error(tmp_path, rig, clip):
    """Blender does not evaluate a hidden armature's pose, so exporting it would write a frozen motion."""
    armature = import_avatar(bpy.context, clip, rig, "Walker")
    armature.hide_viewport = True
    before = scene_state()
    with pytest.raises(AvatarCaptureError, match="'Walker' is hidden"):
        export_avatar(bpy.context.scene, armature, tmp_path / "walker.bvh", "BVH")
    assert scene_state() == before
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def export_operator():
    from avatar_capture.operators.export import CLASSES

    for cls in CLASSES:
        bpy.utils.register_class(cls)
    yield bpy.ops.avatar.export
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)


def test_operator_exports_the_avatar_of_the_active_mesh(tmp_path, rig, clip, export_operator):
    armature = import_avatar(bpy.context, clip, rig, "Walker")
    (body,) = armature.children
    bpy.context.view_layer.objects.active = body
    assert export_operator.poll()
    # The extension follows the chosen format.
    assert export_operator(filepath=str(tmp_path / "walker.fbx"), file_format="GLB") == {"FINISHED"}
    assert [p.name for p in tmp_path.iterdir()] == ["walker.glb"]
    with pytest.raises(RuntimeError, match="/proc/walker.fbx"):
        export_operator(filepath="/proc/walker.fbx", file_format="FBX")
    bpy.context.view_layer.objects.active = None
    assert not export_operator.poll()

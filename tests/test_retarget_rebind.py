"""LBS rebinding (core.retarget.rebind, blender.rebind, operators.rebind): geometry skinned to a source
rig, rebound to a target rig, follows the retargeted motion like the source geometry follows the source.

Rigs: the small humanoid of test_retarget_transfer and its renamed, 1.2x scaled, A-posed, rolled
copy; the real Anny body onto real rigs built by tests/rig_factory.py (MPFB2 Mixamo and game-engine,
UE5-named, Mixamo A-posed and rolled), in numpy and through the Blender operator."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.kinematics import forward_kinematics, skin_points, skinning_matrices
from avatar_capture.core.retarget.humanoid import BoneMapping
from avatar_capture.core.retarget.presets import PRESETS
from avatar_capture.core.retarget.rebind import rebind_gaussians, rebind_points
from avatar_capture.core.retarget.transfer import retarget
from avatar_capture.core.rotations import quat_to_matrix
from avatar_capture.core.splats.gaussians import SplatSkin, make_gaussians
from avatar_capture.core.splats.skinning import skin_gaussians
from avatar_capture.core.splats.transforms import transform_gaussians

from test_retarget_transfer import CMU_FILES, NAMES, _clip, _mapping, _source_skeleton, _variant

SCALE = 1.2  # _variant's size: the leg-length ratio, hips at x = y = 0, so S(p) = 1.2 p
ARM_PARTS = ("upper_arm", "lower_arm", "hand")  # the bones _variant turns 45 degrees (one alignment A)


def _skinned_points(skeleton, count_per_bone: int = 12, seed: int = 1):
    """Points around every bone (up to 4 cm off its axis), weighted to the bone and, near its head,
    its parent: (points (N, 3), indices (N, 2), weights (N, 2), own bone (N,), parent (N,))."""
    rng = np.random.default_rng(seed)
    heads, tails = skeleton.rest_heads_world, skeleton.rest_tails_world
    points, indices, weights = [], [], []
    for j in range(skeleton.joint_count):
        along = rng.uniform(0, 1, count_per_bone)
        base = heads[j] + along[:, None] * (tails[j] - heads[j])
        points.append(base + rng.uniform(-0.04, 0.04, (count_per_bone, 3)))
        parent = max(int(skeleton.parents[j]), 0)
        own = np.clip(0.5 + along, 0.0, 1.0) if skeleton.parents[j] >= 0 else np.ones(count_per_bone)
        indices.append(np.stack([np.full(count_per_bone, j), np.full(count_per_bone, parent)], axis=1))
        weights.append(np.stack([own, 1.0 - own], axis=1))
    return np.concatenate(points), np.concatenate(indices), np.concatenate(weights)


def _posed(skeleton, rotations, root, points, indices, weights):
    frames = forward_kinematics(skeleton.rest_frames_world, skeleton.parents, rotations, root)
    return skin_points(points, indices, weights, skinning_matrices(frames, skeleton.rest_frames_world))


def _one_alignment(indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Points whose weighted bones all get the same alignment A in _variant (all arm, or all not)."""
    arm = np.isin(indices, [NAMES.index(f"{s}_{p}") for s in ("left", "right") for p in ARM_PARTS])
    weighted = weights > 0
    return np.all(arm | ~weighted, axis=1) | np.all(~arm | ~weighted, axis=1)


def test_rebound_points_follow_the_retargeted_motion_on_an_a_posed_rolled_scaled_rig():
    source = _source_skeleton()
    target, target_map = _variant()
    clip = _clip(source)
    points, indices, weights = _skinned_points(source)
    rebound, new_indices, new_weights = rebind_points(points, indices, weights, source, _mapping(), target,
                                                      target_map)
    assert rebound.shape == points.shape and new_indices.shape == indices.shape
    np.testing.assert_allclose(new_weights.sum(axis=1), 1.0, atol=1e-12)
    # weights went to the renamed bones: X_<NAME> has the index of <name> in both rigs
    np.testing.assert_array_equal(np.sort(new_indices * (new_weights > 0), axis=1),
                                  np.sort(indices * (weights > 0), axis=1))

    out = retarget(clip, _mapping(), target, target_map, foot_lock=False)
    want = SCALE * _posed(source, clip.rotations, clip.root_translation, points, indices, weights)
    got = _posed(target, out.rotations, out.root_translation, rebound, new_indices, new_weights)
    error = np.linalg.norm(got - want, axis=-1)  # (T, N)
    same = _one_alignment(indices, weights)
    print(f"rebound vs scaled source: one-alignment points max {error[:, same].max():.2e} m; "
          f"shoulder/arm blends (45 degree A-pose turn between their bones) max {error[:, ~same].max():.4f} m")
    assert same.sum() > 0.8 * len(same) and (~same).sum() > 0
    assert error[:, same].max() < 1e-5
    assert error[:, ~same].max() < 0.03  # LBS cannot be exact there, but stays close
    # with the source standing at rest the target reproduces the scaled rest mesh, blends included
    rest_clip = replace(clip, rotations=np.tile([1.0, 0, 0, 0], (1, source.joint_count, 1)),
                        root_translation=source.rest_heads_world[None, 0], joints_world=source.rest_heads_world[None],
                        contacts=np.zeros((1, 4)))
    still = retarget(rest_clip, _mapping(), target, target_map, foot_lock=False)
    at_rest = _posed(target, still.rotations, still.root_translation, rebound, new_indices, new_weights)[0]
    assert np.abs(at_rest - SCALE * points).max() < 1e-9
    # and the rebound mesh really is in the target's (A-posed) rest: arm points turned by 45 degrees
    arm = np.isin(indices[:, 0], [NAMES.index(f"left_{p}") for p in ARM_PARTS]) & same
    assert np.abs(rebound[arm] - SCALE * points[arm]).max() > 0.1


def test_weights_of_unmapped_bones_and_longer_chains_go_to_the_right_target_bones():
    """Source toes the target lacks follow the foot; a 3-bone source spine onto a 1-bone target chain."""
    source = _source_skeleton()
    target, target_map = _variant()
    drop = ("left_toes", "chest", "upper_chest")
    reduced = BoneMapping(bones={j: b for j, b in target_map.bones.items() if j not in drop},
                          spine_chain=(target_map.bones["spine"],), neck_chain=target_map.neck_chain)
    points, indices, weights = _skinned_points(source, count_per_bone=4)
    _, new_indices, new_weights = rebind_points(points, indices, weights, source, _mapping(), target, reduced)
    heaviest = new_indices[:, 0]
    for name, expected in (("left_toes", "X_LEFT_FOOT"), ("chest", "X_SPINE"), ("upper_chest", "X_SPINE"),
                           ("right_toes", "X_RIGHT_TOES")):
        rows = indices[:, 0] == NAMES.index(name)
        assert {target.joint_names[j] for j in heaviest[rows]} == {expected}, name
    # a toes point weighted to toes and foot is all foot now: one bone, weight 1
    rows = (indices[:, 0] == NAMES.index("left_toes")) & (weights[:, 1] > 0)
    np.testing.assert_allclose(new_weights[rows, 0], 1.0)


def test_points_between_bones_turned_half_a_turn_apart_stay_near_the_joint():
    """A target whose left forearm folds back onto the upper arm: at the elbow the blended bind map
    (A_upper + A_lower) / 2 is singular, so those points take the blend of the inverse maps instead."""
    from test_retarget_transfer import BONES, _skeleton

    heads = np.array([b[2] for b in BONES], float)
    tails = np.array([b[3] for b in BONES], float)
    elbow = heads[NAMES.index("left_lower_arm")].copy()
    for part in ("lower_arm", "hand"):
        j = NAMES.index(f"left_{part}")
        heads[j], tails[j] = 2 * elbow - heads[j], 2 * elbow - tails[j]
    folded = _skeleton(NAMES, heads, tails)
    source = _source_skeleton()
    points, indices, weights = _skinned_points(source, count_per_bone=60)
    rebound, _, _ = rebind_points(points, indices, weights, source, _mapping(), folded, _mapping())
    at_elbow = (indices[:, 0] == NAMES.index("left_lower_arm")) & (weights[:, 1] > 0.3)
    assert at_elbow.sum() >= 3 and np.all(np.isfinite(rebound))
    distance = np.linalg.norm(rebound[at_elbow] - elbow, axis=1)
    print(f"elbow points of the folded arm: at most {distance.max():.3f} m from the elbow")
    assert distance.max() < 0.1  # inverting the blended map puts some 0.47 m away
    # several versions of the same skinned points (shape keys) move point by point as each alone would
    shifted = points + np.random.default_rng(2).normal(0, 0.01, points.shape)
    both, _, _ = rebind_points(np.stack([points, shifted]), indices, weights, source, _mapping(), folded, _mapping())
    alone, _, _ = rebind_points(shifted, indices, weights, source, _mapping(), folded, _mapping())
    np.testing.assert_allclose(both, np.stack([rebound, alone]), atol=1e-12)


def _skinned_cloud(skeleton):
    points, indices, weights = _skinned_points(skeleton, count_per_bone=6, seed=4)
    n = len(points)
    rng = np.random.default_rng(5)
    pad = np.zeros((n, 2))
    skin = SplatSkin(skeleton.joint_names, skeleton.parents, skeleton.rest_frames_world,
                     np.concatenate([indices, pad], axis=1).astype(np.int32),
                     np.concatenate([weights, pad], axis=1))
    return make_gaussians(points, rng.normal(size=(n, 4)), np.log(rng.uniform(0.005, 0.03, (n, 3))),
                          rng.normal(size=n), rng.normal(0, 0.3, (n, 4, 3)), skin=skin), indices, weights


def _covariances(g) -> np.ndarray:
    r = quat_to_matrix(g.rotations / np.linalg.norm(g.rotations, axis=1, keepdims=True))
    return r @ (np.exp(2 * g.log_scales.astype(np.float64))[:, :, None] * r.transpose(0, 2, 1))


def test_rebound_splats_follow_the_retargeted_motion():
    source = _source_skeleton()
    target, target_map = _variant()
    clip = _clip(source, frames=6)
    cloud, indices, weights = _skinned_cloud(source)
    rebound = rebind_gaussians(cloud, source, _mapping(), target, target_map)
    assert rebound.skin.bone_names == target.joint_names  # every bone takes weight here
    out = retarget(clip, _mapping(), target, target_map, foot_lock=False)
    src_frames = forward_kinematics(source.rest_frames_world, source.parents, clip.rotations, clip.root_translation)
    tgt_frames = forward_kinematics(target.rest_frames_world, target.parents, out.rotations, out.root_translation)
    same = _one_alignment(indices, weights)
    scale = np.diag([SCALE, SCALE, SCALE, 1.0])
    worst_mean = worst_cov = 0.0
    for t in range(clip.frame_count):
        want = transform_gaussians(skin_gaussians(cloud, src_frames[t]), scale)
        got = skin_gaussians(rebound, tgt_frames[t])
        worst_mean = max(worst_mean, np.abs(got.means - want.means)[same].max())
        worst_cov = max(worst_cov, (np.abs(_covariances(got) - _covariances(want)).max(axis=(1, 2))
                                    / np.exp(2 * want.log_scales.max(axis=1)))[same].max())
        np.testing.assert_allclose(got.sh[same], want.sh[same], atol=1e-4)
    print(f"splats: means max {worst_mean:.2e} m, covariances max {worst_cov:.2e} (relative)")
    assert worst_mean < 1e-5 and worst_cov < 1e-4


def test_splats_bound_to_another_frame_are_refused():
    source = _source_skeleton()
    target, target_map = _variant()
    cloud, _, _ = _skinned_cloud(source)
    moved = transform_gaussians(cloud, np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    with pytest.raises(AvatarCaptureError, match="rest frames differ"):
        rebind_gaussians(moved, source, _mapping(), target, target_map)
    with pytest.raises(AvatarCaptureError, match="no skin"):
        rebind_gaussians(replace(cloud, skin=None), source, _mapping(), target, target_map)


@pytest.fixture(scope="module")
def real_rigs():
    """Real target rigs built as Blender armatures by tests/rig_factory.py, read back with their
    automatic mappings: name -> (Skeleton, BoneMapping)."""
    import bpy
    import rig_factory

    from avatar_capture.blender.readback import read_skeleton
    from avatar_capture.blender.retarget_mapping import mapping_for_armature

    bpy.ops.wm.read_factory_settings(use_empty=True)
    builders = {"mixamo": lambda: rig_factory.mpfb_rig("mixamo", with_mesh=False),
                "mixamo_a_rolled": rig_factory.a_pose_rolled_rig,
                "game_engine": lambda: rig_factory.mpfb_rig("game_engine", with_mesh=False),
                "ue5": rig_factory.ue5_rig}
    rigs = {}
    for name, build in builders.items():
        armature = build()
        rigs[name] = read_skeleton(armature), mapping_for_armature(armature)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return rigs


def _anny_on_rig(anny_rig, target, mapping, clip) -> tuple[np.ndarray, np.ndarray]:
    """(distances (T, V) in metres between the Anny mesh rebound to the target rig and driven by
    retarget(clip), and the Anny mesh driven by clip, scaled by S; the driven rebound mesh (T, V, 3))."""
    from avatar_capture.core.retarget.rebind import rebind_plan

    source, source_map = anny_rig.skeleton, PRESETS["anny"]
    rebound, indices, weights = rebind_points(anny_rig.vertices_rest, anny_rig.skin_indices, anny_rig.skin_weights,
                                              source, source_map, target, mapping)
    assert set(np.unique(indices[weights > 0])) <= set(range(target.joint_count))
    assert np.isin([target.index(mapping.bones[j]) for j in ("left_hand", "head", "left_foot")],
                   indices[weights > 0]).all()
    similarity = rebind_plan(source, source_map, target, mapping).similarity
    out = retarget(clip, source_map, target, mapping, foot_lock=False)
    want = anny_rig.skin(anny_rig.pose(clip.rotations, clip.root_translation)) @ similarity[:3, :3].T \
        + similarity[:3, 3]
    got = _posed(target, out.rotations, out.root_translation, rebound, indices, weights)
    return np.linalg.norm(got - want, axis=-1), got


def _report(what: str, distance: np.ndarray) -> str:
    return (f"{what}: {len(distance)} frames, vertex distance mean {1000 * distance.mean():.1f} mm, 95th percentile "
            f"{1000 * np.percentile(distance, 95):.1f} mm, max {1000 * distance.max():.1f} mm")


def _mapped_motion(anny_rig):
    """Anny at rest (frame 0), then 8 frames of smooth random motion of the bones the mapping carries:
    Anny's twist, pelvis, metacarpal and toe bones have no twin on the target rigs and stay at rest."""
    from motion_factory import random_clip

    from avatar_capture.core.clip import clip_from_pose

    source, source_map = anny_rig.skeleton, PRESETS["anny"]
    moving = random_clip(anny_rig, frames=8, seed=2, amplitude_rad=0.2)
    # only bones the mapping carries move: Anny's twist, pelvis, metacarpal and toe bones have no Mixamo twin
    carried = set(source_map.bones.values()) | set(source_map.spine_chain) | set(source_map.neck_chain)
    rotations = moving.rotations.copy()
    rotations[:, [j for j, n in enumerate(source.joint_names) if n not in carried]] = [1.0, 0.0, 0.0, 0.0]
    rest = np.tile([1.0, 0.0, 0.0, 0.0], (1, source.joint_count, 1))
    return clip_from_pose(anny_rig, np.concatenate([rest, rotations]),
                          np.concatenate([source.rest_heads_world[None, 0], moving.root_translation]), moving.fps)


def test_anny_avatar_rebound_to_real_rigs_moves_like_the_source(anny_rig, real_rigs):
    """The real Anny body onto the MPFB2 Mixamo and game-engine rigs, the UE5-named rig (5 spine, 2 neck
    bones) and the Mixamo rig A-posed and rolled. Their joints sit elsewhere in the body (Mixamo: hips 4 cm,
    spine 14.5 cm, shoulders 5 cm higher than Anny's), so the meshes part while moving, by centimetres;
    they agree exactly in the bind pose P0, and the target's rest pose and rolls hardly matter."""
    clip = _mapped_motion(anny_rig)
    driven = {}
    for name in ("mixamo", "mixamo_a_rolled", "game_engine", "ue5"):
        skeleton, mapping = real_rigs[name]
        distance, driven[name] = _anny_on_rig(anny_rig, skeleton, mapping, clip)
        print(f"{name} ({skeleton.joint_count} bones, chains {len(mapping.spine_chain)}/{len(mapping.neck_chain)}): "
              f"bind pose max {1000 * distance[0].max():.4f} mm; " + _report("random motion", distance[1:]))
        assert distance[0].max() < 1e-4
        assert distance[1:].mean() < 0.045 and distance[1:].max() < 0.12
    rest_pose_effect = np.linalg.norm(driven["mixamo_a_rolled"] - driven["mixamo"], axis=-1)
    worst = anny_rig.skeleton.joint_names[anny_rig.skin_indices[rest_pose_effect.max(axis=0).argmax(), 0]]
    print(f"A-posed rolled Mixamo vs Mixamo: driven meshes differ by mean {1000 * rest_pose_effect.mean():.4f} mm, "
          f"max {1000 * rest_pose_effect.max():.2f} mm (at {worst})")
    # vertices of one bone move alike; blends of bones the A-pose turns apart (arm with trunk) cannot be exact
    assert rest_pose_effect.mean() < 1e-3 and rest_pose_effect.max() < 0.02


@pytest.mark.skipif(not CMU_FILES, reason="no CMU BVH files in ../shared/media/bvh")
def test_anny_avatar_on_the_mixamo_rig_under_real_cmu_motion(anny_rig, real_rigs):
    """A real CMU clip retargeted onto Anny (every 10th frame), then Anny's mesh rebound to Mixamo."""
    from avatar_capture.core.clip import clip_from_pose
    from avatar_capture.core.retarget.bvh_clip import clip_from_bvh

    cmu = PRESETS["cmu"]
    files = [f for f in CMU_FILES if not cmu.missing_in_rig(clip_from_bvh(f).skeleton.joint_names)][:1]
    if not files:
        pytest.skip("no CMU-named BVH file among the shared clips")
    on_anny = retarget(clip_from_bvh(files[0]), cmu, anny_rig.skeleton, PRESETS["anny"], foot_lock=False)
    every = slice(None, None, 10)
    clip = clip_from_pose(anny_rig, on_anny.rotations[every], on_anny.root_translation[every], on_anny.fps / 10)
    distance, _ = _anny_on_rig(anny_rig, *real_rigs["mixamo"], clip)
    print(_report(f"{files[0].name} on Anny -> MPFB2 mixamo", distance))
    assert distance.mean() < 0.06 and np.percentile(distance, 95) < 0.15


# --- Blender: the operator on an imported Anny avatar and a real MPFB2 rig ---------------------------------

@pytest.fixture
def rebind_scene(fresh_addon, anny_rig):
    """An imported Anny avatar (mesh "AvatarBody" on armature "Avatar", 3 frames) and the MPFB2 Mixamo rig."""
    import bpy
    from motion_factory import random_clip
    from rig_factory import mpfb_rig

    from avatar_capture.blender.import_scene import import_avatar

    avatar = import_avatar(bpy.context, random_clip(anny_rig, frames=3, seed=1), rig=anny_rig)
    target = mpfb_rig("mixamo", with_mesh=False)
    return avatar, bpy.data.objects["AvatarBody"], target


def _select(objects, active):
    import bpy

    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in objects or obj == active)
    bpy.context.view_layer.objects.active = active


def _vertices(obj, evaluated: bool = False) -> np.ndarray:
    import bpy

    if evaluated:
        obj = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def _pose_in_p0(target, anny_rig) -> np.ndarray:
    """Key the Mixamo target in the bind pose P0 (retargeted from Anny at rest) at frame 1; returns S (4, 4)."""
    import bpy

    from avatar_capture.blender.action import write_clip_action
    from avatar_capture.blender.readback import read_skeleton
    from avatar_capture.core.clip import clip_from_pose
    from avatar_capture.core.retarget.rebind import rebind_plan

    mixamo = read_skeleton(target)
    rest = np.tile([1.0, 0.0, 0.0, 0.0], (1, anny_rig.skeleton.joint_count, 1))
    still = clip_from_pose(anny_rig, rest, anny_rig.skeleton.rest_heads_world[None, 0], 30.0)
    write_clip_action(target, retarget(still, PRESETS["anny"], mixamo, PRESETS["mixamo"], foot_lock=False), "P0")
    bpy.context.scene.frame_set(1)
    return rebind_plan(anny_rig.skeleton, PRESETS["anny"], mixamo, PRESETS["mixamo"]).similarity


def test_operator_rebinds_the_avatar_mesh_to_the_mixamo_rig_and_undo_removes_it(rebind_scene, anny_rig):
    import bpy

    from avatar_capture.blender.readback import read_skeleton

    avatar, body, target = rebind_scene
    source_vertices = _vertices(body)
    source_groups = [g.name for g in body.vertex_groups]
    _select([body], target)
    bpy.ops.ed.undo_push(message="before rebind")
    assert bpy.ops.avatar.rebind_to_rig("EXEC_DEFAULT", True) == {"FINISHED"}

    new = bpy.data.objects["AvatarBody (rebound)"]
    assert new.parent == target and new.data != body.data
    modifiers = [m for m in new.modifiers if m.type == "ARMATURE"]
    assert len(modifiers) == 1 and modifiers[0].object == target
    bones = set(target.data.bones.keys())
    groups = {g.name for g in new.vertex_groups}
    assert groups <= bones and {"mixamorig:Hips", "mixamorig:Head", "mixamorig:LeftHand"} <= groups
    assert len(new.data.polygons) == len(body.data.polygons)
    # the core's rebinding, made in Blender: vertices in the target's rest pose ...
    mixamo = read_skeleton(target)
    want, _, _ = rebind_points(anny_rig.vertices_rest, anny_rig.skin_indices, anny_rig.skin_weights,
                               anny_rig.skeleton, PRESETS["anny"], mixamo, PRESETS["mixamo"])
    assert np.abs(_vertices(new) - want).max() < 1e-5
    # ... and the Armature modifier with the target in the bind pose P0 shows the scaled avatar at rest
    similarity = _pose_in_p0(target, anny_rig)
    scaled = anny_rig.vertices_rest @ similarity[:3, :3].T + similarity[:3, 3]
    shown = _vertices(new, evaluated=True)
    print(f"Blender Armature modifier in P0 vs scaled avatar: max {1000 * np.abs(shown - scaled).max():.3f} mm")
    assert np.abs(shown - scaled).max() < 1e-4
    # the source is untouched
    assert np.array_equal(_vertices(body), source_vertices) and [g.name for g in body.vertex_groups] == source_groups
    assert body.modifiers["Armature"].object == avatar and body.parent == avatar

    bpy.ops.ed.undo()
    assert "AvatarBody (rebound)" not in bpy.data.objects and "AvatarBody (rebound)" not in bpy.data.meshes
    assert "AvatarBody" in bpy.data.objects


def test_operator_rebinds_a_bound_splat_cloud(rebind_scene):
    """A splat cloud placed off the world origin (its own object frame) and bound to the avatar."""
    import bpy

    from avatar_capture.blender.readback import read_skeleton
    from avatar_capture.blender.splat_object import bind_to_armature, create_splat_object, gaussians_from_object

    avatar, body, target = rebind_scene
    rng = np.random.default_rng(0)
    offset = np.array([0.3, -0.2, 0.1])
    points = _vertices(body)[::400] - offset  # object frame: the cloud sits on the body once placed
    n = len(points)
    cloud = create_splat_object(make_gaussians(points, rng.normal(size=(n, 4)), np.full((n, 3), -4.0),
                                               np.zeros(n), rng.normal(0, 0.2, (n, 4, 3))), "Cloud")
    cloud.location = offset
    bpy.context.view_layer.update()
    bind_to_armature(cloud, avatar)
    _select([cloud], target)
    assert bpy.ops.avatar.rebind_to_rig() == {"FINISHED"}
    new = bpy.data.objects["Cloud (rebound)"]
    g = gaussians_from_object(new)
    assert g.count == n and set(g.skin.bone_names) <= set(target.data.bones.keys())
    assert new.parent == target and new.modifiers["Armature"].object == target
    # the core's rebinding of the cloud in the world frame, weights and all
    world_cloud = transform_gaussians(gaussians_from_object(cloud), np.array(cloud.matrix_world))
    want = rebind_gaussians(world_cloud, read_skeleton(avatar), PRESETS["anny"], read_skeleton(target),
                            PRESETS["mixamo"])
    assert np.abs(g.means - want.means).max() < 1e-5 and np.abs(_covariances(g) - _covariances(want)).max() < 1e-9
    np.testing.assert_allclose(g.sh, want.sh, atol=1e-6)
    dense = np.zeros((2, n, len(target.data.bones)))
    for k, (cloud_skin, names) in enumerate(((g.skin, g.skin.bone_names), (want.skin, want.skin.bone_names))):
        columns = np.array([target.data.bones.find(name) for name in names])[cloud_skin.bone_indices]
        np.add.at(dense[k], (np.arange(n)[:, None], columns), cloud_skin.bone_weights)
    assert np.abs(dense[0] - dense[1]).max() < 1e-6
    # the source keeps its place and its skin on the avatar
    assert np.allclose(np.array(cloud.matrix_world)[:3, 3], offset)
    assert set(gaussians_from_object(cloud).skin.bone_names) <= set(avatar.data.bones.keys())


def test_operator_refuses_bad_input_and_changes_nothing(rebind_scene):
    import bpy

    avatar, body, target = rebind_scene
    objects, meshes = set(bpy.data.objects.keys()), len(bpy.data.meshes)
    _select([body], body)  # no active armature
    with pytest.raises(RuntimeError, match="target armature the active object"):
        bpy.ops.avatar.rebind_to_rig()
    _select([], target)  # nothing skinned selected
    with pytest.raises(RuntimeError, match="Select the meshes or splat clouds"):
        bpy.ops.avatar.rebind_to_rig()
    # a non-humanoid target: a two-bone armature
    data = bpy.data.armatures.new("Stick")
    stick = bpy.data.objects.new("Stick", data)
    bpy.context.scene.collection.objects.link(stick)
    bpy.context.view_layer.objects.active = stick
    bpy.ops.object.mode_set(mode="EDIT")
    for name, z in (("a", 0.0), ("b", 1.0)):
        bone = data.edit_bones.new(name)
        bone.head, bone.tail = (0, 0, z), (0, 0, z + 1)
    data.edit_bones["b"].parent = data.edit_bones["a"]
    bpy.ops.object.mode_set(mode="OBJECT")
    objects.add("Stick")
    _select([body], stick)
    with pytest.raises(RuntimeError, match="'Stick'.*(missing|required|hips)"):
        bpy.ops.avatar.rebind_to_rig()
    # a mapped target bone that does not deform would silently drop its vertices
    target.data.bones["mixamorig:LeftHand"].use_deform = False
    _select([body], target)
    with pytest.raises(RuntimeError, match="mixamorig:LeftHand would take weights but do not deform"):
        bpy.ops.avatar.rebind_to_rig()
    assert set(bpy.data.objects.keys()) == objects and len(bpy.data.meshes) == meshes


def test_shape_keys_are_rebound_with_their_vertices(rebind_scene, anny_rig):
    """A key that moves the head 2 cm: in the bind pose P0 the rebound mesh with the key on is the scaled
    avatar with the key on, and the key still moves the same vertices."""
    import bpy

    avatar, body, target = rebind_scene
    body.shape_key_add(name="Basis")
    key = body.shape_key_add(name="Nod", from_mix=False)
    head = anny_rig.skeleton.index("head")
    moved = (anny_rig.skin_indices[:, 0] == head) & (anny_rig.skin_weights[:, 0] > 0.99)
    shaped = anny_rig.vertices_rest + np.where(moved[:, None], [0.0, -0.02, 0.0], 0.0)
    key.data.foreach_set("co", shaped.astype(np.float32).ravel())
    _select([body], target)
    assert bpy.ops.avatar.rebind_to_rig() == {"FINISHED"}
    new = bpy.data.objects["AvatarBody (rebound)"]
    assert [k.name for k in new.data.shape_keys.key_blocks] == ["Basis", "Nod"]
    assert new.data.shape_keys != body.data.shape_keys
    similarity = _pose_in_p0(target, anny_rig)
    new.data.shape_keys.key_blocks["Nod"].value = 1.0
    shown = _vertices(new, evaluated=True)
    want = shaped @ similarity[:3, :3].T + similarity[:3, 3]
    print(f"shape key on, P0: max {1000 * np.abs(shown - want).max():.3f} mm from the scaled keyed avatar")
    assert np.abs(shown - want).max() < 1e-4 and moved.sum() > 100


def test_selecting_the_source_armature_rebinds_its_skinned_meshes(rebind_scene):
    import bpy

    avatar, body, target = rebind_scene
    _select([avatar], target)
    assert bpy.ops.avatar.rebind_to_rig() == {"FINISHED"}
    assert "AvatarBody (rebound)" in bpy.data.objects
    assert [o.name for o in target.children] == ["AvatarBody (rebound)"]

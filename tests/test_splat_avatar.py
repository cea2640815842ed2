"""A splat avatar on the real Anny rig (104 bones, its own skin weights) playing an imported clip.

The splats sit on the body's vertices with those vertices' weights and are bound to the armature
the clip import built. At a posed frame three independent answers must agree: Blender's Armature
modifier on the splat object, core LBS (skin_gaussians), and the viewport shaders skinning on the
GPU (compared with the reference rasterizer drawing the core-skinned cloud).
"""
from __future__ import annotations

import math

import bpy
import numpy as np
from blender_probe import evaluated_vertices
from motion_factory import random_clip

from avatar_capture.blender.import_scene import import_avatar
from avatar_capture.blender.splat_object import bind_to_armature, create_splat_object, gaussians_from_object
from avatar_capture.blender.splat_offscreen import render_offscreen
from avatar_capture.core.splats.camera import framing_camera
from avatar_capture.core.splats.gaussians import BONES_PER_SPLAT, SplatSkin, make_gaussians
from avatar_capture.core.splats.render import render
from avatar_capture.core.splats.sh import rgb_to_sh_dc
from avatar_capture.core.splats.skinning import skin_gaussians


def body_splats(rig, every: int = 7):
    """Small splats on every ``every``-th rest vertex, skinned with its 4 heaviest bone weights."""
    pick = np.arange(0, len(rig.vertices_rest), every)
    weights, indices = rig.skin_weights[pick], rig.skin_indices[pick]
    heaviest = np.argsort(-weights, axis=1)[:, :BONES_PER_SPLAT]
    weights = np.take_along_axis(weights, heaviest, axis=1)
    indices = np.take_along_axis(indices, heaviest, axis=1)
    weights = weights / weights.sum(axis=1, keepdims=True)
    s = rig.skeleton
    skin = SplatSkin(s.joint_names, s.parents, s.rest_frames_world, indices, weights)
    n = len(pick)
    colours = np.c_[np.linspace(0.1, 0.9, n), np.full(n, 0.5), np.linspace(0.9, 0.1, n)]
    return make_gaussians(rig.vertices_rest[pick], np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)), np.full((n, 3), -4.6),
                          np.full(n, 3.0), rgb_to_sh_dc(colours)[:, None, :], skin=skin)


def dense_weights(indices: np.ndarray, weights: np.ndarray, bones: int) -> np.ndarray:
    """(N, bones) weight matrix of per-splat (index, weight) slots; unused slots add 0."""
    dense = np.zeros((len(indices), bones))
    for slot in range(indices.shape[1]):
        np.add.at(dense, (np.arange(len(indices)), indices[:, slot]), weights[:, slot])
    return dense


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def test_splats_on_the_anny_body_follow_the_clip_like_the_body(fresh_addon, anny_rig) -> None:
    armature = import_avatar(bpy.context, random_clip(anny_rig, 8, seed=5, amplitude_rad=0.5), anny_rig)
    cloud = create_splat_object(body_splats(anny_rig), "Splat avatar")
    bind_to_armature(cloud, armature)
    g = gaussians_from_object(cloud)
    joints = anny_rig.skeleton.joint_names
    order = [joints.index(name) for name in g.skin.bone_names]
    source = body_splats(anny_rig).skin
    dense = dense_weights(np.asarray(order)[g.skin.bone_indices], g.skin.bone_weights, len(joints))
    expected = dense_weights(source.bone_indices, source.bone_weights, len(joints))
    np.testing.assert_allclose(dense, expected, atol=1e-5, err_msg="the body's own skin is kept, not recomputed")
    np.testing.assert_allclose(g.skin.rest_bone_to_object, anny_rig.skeleton.rest_frames_world[order], atol=1e-5)

    bpy.context.scene.frame_set(6)
    pose_bones = armature.pose.bones
    posed = np.array([np.array(armature.matrix_world @ pose_bones[name].matrix) for name in g.skin.bone_names])
    skinned = skin_gaussians(g, posed)
    moved = np.linalg.norm(skinned.means - g.means, axis=1)
    assert np.percentile(moved, 90) > 0.02, "the clip must actually move the body"
    # Blender's Armature modifier and core LBS put every splat centre in the same place.
    np.testing.assert_allclose(skinned.means, evaluated_vertices(cloud), atol=1e-4)

    # The viewport shaders skin on the GPU from the same pose: the image matches the reference
    # rasterizer drawing the core-skinned cloud.
    camera = framing_camera(skinned.means, 120, 160)
    image = render_offscreen([cloud], camera)
    reference = render(skinned, camera, backend="cpu")
    assert reference.alpha.mean() > 0.02
    assert psnr(image[..., :3], reference.colour) >= 30.0
    assert psnr(image[..., 3], reference.alpha) >= 30.0

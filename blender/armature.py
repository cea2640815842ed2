"""Armature objects built from a core Skeleton.

Bones take the skeleton's rest frames exactly (head, Y along the bone, roll from
the frame's Z), so a pose bone's ``rotation_quaternion`` means the same local
rotation as a clip's ``rotations`` and clips need no per-bone conversion.
Edit bones only exist in edit mode, so the only ``bpy.ops`` used here is the mode
switch, run under a context override that works in background mode and for a
scene that is not the window's.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import bpy
import numpy as np
from mathutils import Matrix

from ..core.skeleton import Skeleton

# Blender deletes zero-length bones when leaving edit mode; shorter bones are lengthened to this (metres).
MIN_BONE_LENGTH = 1e-3
# Roll errors (radians) below this are left alone: float32 cannot do much better.
_ROLL_TOLERANCE = 1e-6


@contextmanager
def edit_mode(scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer, obj: bpy.types.Object) -> Iterator[None]:
    """Enter edit mode on obj for the duration of the block, then return to object mode.

    obj must be linked into view_layer. The view layer's previous active object is restored.
    """
    previous = view_layer.objects.active
    view_layer.objects.active = obj
    override = dict(scene=scene, view_layer=view_layer, active_object=obj, object=obj,
                    selected_objects=[obj], selected_editable_objects=[obj])
    try:
        with bpy.context.temp_override(**override):
            bpy.ops.object.mode_set(mode="EDIT")
            try:
                yield
            finally:
                bpy.ops.object.mode_set(mode="OBJECT")
    finally:
        view_layer.objects.active = previous


def create_armature(
    name: str, skeleton: Skeleton, collection: bpy.types.Collection,
    scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer,
) -> bpy.types.Object:
    """A new armature object in collection, its world matrix the identity, bones = skeleton joints.

    Bone matrix_local equals skeleton.rest_frames_world (metres, world frame); tails at
    head + Y * bone length. Bones are unconnected (heads stay exactly at the rest
    heads) and deforming; pose bones use quaternion rotation.
    """
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    lengths = np.maximum(np.asarray(skeleton.bone_lengths, dtype=np.float64), MIN_BONE_LENGTH)
    with edit_mode(scene, view_layer, obj):
        bones = []
        for j, bone_name in enumerate(skeleton.joint_names):
            bone = data.edit_bones.new(bone_name)
            # A bone needs a non-zero length before its matrix can be set.
            bone.tail = (0.0, 1.0, 0.0)
            bone.matrix = Matrix(skeleton.rest_frames_world[j].tolist())
            bone.length = float(lengths[j])
            bone.use_connect = False
            bone.use_deform = True
            parent = int(skeleton.parents[j])
            if parent >= 0:
                bone.parent = bones[parent]
            bones.append(bone)
    _refine_rolls(obj, skeleton, scene, view_layer)
    for pose_bone in obj.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    return obj


def _refine_rolls(obj: bpy.types.Object, skeleton: Skeleton, scene: bpy.types.Scene,
                  view_layer: bpy.types.ViewLayer) -> None:
    """Correct each bone's roll by its measured error, so matrix_local matches the rest frame to ~1e-6.

    Blender stores head, tail and roll and rebuilds the bone matrix from them; for
    bones pointing almost along world -Y (Anny's eyes) that rebuild loses up to
    2e-5 rad of roll in float32. Turning the roll by the angle still missing
    fixes it, because the rebuild is smooth in the roll.
    """
    bones = obj.data.bones
    actual = np.array([np.array(bones[name].matrix_local)[:3, :3] for name in skeleton.joint_names])
    z_actual, y_actual = actual[:, :, 2], actual[:, :, 1]
    z_target = skeleton.rest_frames_world[:, :3, 2]
    missing = np.arctan2(np.einsum("ij,ij->i", np.cross(z_actual, z_target), y_actual),
                         np.einsum("ij,ij->i", z_actual, z_target))
    if np.abs(missing).max() < _ROLL_TOLERANCE:
        return
    with edit_mode(scene, view_layer, obj):
        for name, angle in zip(skeleton.joint_names, missing.tolist()):
            obj.data.edit_bones[name].roll += angle

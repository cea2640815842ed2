"""Rebind skinned meshes and splat objects from their armature to another (the user's) armature.

Why a new object: the captured avatar stays as it was (its mesh, weights and armature), so the
user can compare, retarget again or throw the result away; the rebound copy "<name> (rebound)"
holds the geometry moved into the target's rest pose, vertex groups named after the target's
bones and an Armature modifier on the target, parented to it. The geometry and weights come from
core.retarget.rebind (see its docstring for the rules); the bone mappings are each armature's
stored mapping or the automatic one (blender.retarget_mapping).

Frames: everything is read in the world (object transforms applied); the new object sits at
the world origin with an identity world matrix, parented to the target armature (parent
inverse = the armature's inverse world matrix), so its vertices are world positions.
Shape keys come along: every key's positions are rebound with the same per-vertex map as the
basis (core rebind_points on all of them at once), so a key's offsets turn into the target's
rest pose with their vertices. A key limited to a vertex group names a source bone's group,
which the rebound copy no longer has; such keys then act on the whole mesh.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.errors import AvatarCaptureError
from ..core.retarget.rebind import rebind_gaussians, rebind_points
from ..core.splats.transforms import transform_gaussians
from . import datablocks
from .readback import read_rest_vertices, read_skin_weights
from .retarget_mapping import body_skeleton, mapping_for_armature
from .splat_object import (SKIN_KEY, bind_to_armature, create_splat_object, gaussians_from_object,
                           is_splat_object, write_vertex_groups)

REBOUND_SUFFIX = " (rebound)"
ARMATURE_MODIFIER = "Armature"


def source_armature(obj: bpy.types.Object) -> bpy.types.Object | None:
    """The armature deforming obj through its first Armature modifier with an armature set, else None."""
    for modifier in obj.modifiers:
        if modifier.type == "ARMATURE" and modifier.object is not None and modifier.object.type == "ARMATURE":
            return modifier.object
    return None


def check_rebindable(obj: bpy.types.Object, target: bpy.types.Object) -> bpy.types.Object:
    """obj's source armature; AvatarCaptureError saying why obj cannot be rebound to target."""
    if target is None or target.type != "ARMATURE":
        raise AvatarCaptureError(f"'{getattr(target, 'name', None)}' is not an armature")
    if obj.type != "MESH":
        raise AvatarCaptureError(f"'{obj.name}' is not a mesh or splat object")
    source = source_armature(obj)
    if source is None:
        raise AvatarCaptureError(f"'{obj.name}' is not deformed by an armature (no Armature modifier)")
    if source == target:
        raise AvatarCaptureError(f"'{obj.name}' is already skinned to '{target.name}'")
    if obj.mode != "OBJECT":
        raise AvatarCaptureError(f"'{obj.name}' is in {obj.mode.replace('_', ' ').title()} Mode; "
                                 "switch to Object Mode to rebind it")
    if is_splat_object(obj) and SKIN_KEY not in obj:
        raise AvatarCaptureError(f"splat object '{obj.name}' has no skin; bind it to its armature first")
    return source


def rebind_object(obj: bpy.types.Object, target: bpy.types.Object) -> bpy.types.Object:
    """A new object "<obj name> (rebound)": obj (a skinned mesh or splat object) rebound to target.

    obj and its armature are not changed. Raises AvatarCaptureError (nothing left behind) when
    obj cannot be rebound, either armature is not a recognisable humanoid, or a target bone
    that takes weight is not a deform bone.
    """
    source = check_rebindable(obj, target)
    source_map, target_map = mapping_for_armature(source), mapping_for_armature(target)
    source_skeleton, target_skeleton = body_skeleton(source, source_map), body_skeleton(target, target_map)
    collection = target.users_collection[0] if target.users_collection else bpy.context.scene.collection
    name = obj.name + REBOUND_SUFFIX
    before = datablocks.snapshot()
    try:
        if is_splat_object(obj):
            world = np.array(obj.matrix_world, np.float64)
            cloud = rebind_gaussians(transform_gaussians(gaussians_from_object(obj), world), source_skeleton,
                                     source_map, target_skeleton, target_map)
            _check_deform(target, cloud.skin.bone_names)
            new = create_splat_object(cloud, name, collection)
            bind_to_armature(new, target)
        else:
            shapes = np.concatenate([read_rest_vertices(obj)[None], _shape_keys_world(obj)])
            rebound, indices, weights = rebind_points(
                shapes, *read_skin_weights(obj, source_skeleton.joint_names),
                source_skeleton, source_map, target_skeleton, target_map)
            used = np.unique(indices[weights > 0])
            names = [target_skeleton.joint_names[j] for j in used]
            _check_deform(target, names)
            new = _mesh_copy(obj, name, rebound, collection)
            position = np.zeros(target_skeleton.joint_count, np.int64)
            position[used] = np.arange(len(used))
            write_vertex_groups(new, names, position[indices], np.where(weights > 0, weights, 0.0))
            _parent_with_modifier(new, target)
    except BaseException:
        datablocks.remove_new(before)
        raise
    return new


def _check_deform(target: bpy.types.Object, names) -> None:
    """AvatarCaptureError when a target bone taking weight does not deform (the Armature modifier skips it)."""
    idle = [name for name in names if not target.data.bones[name].use_deform]
    if idle:
        raise AvatarCaptureError(f"'{target.name}' bone(s) {', '.join(idle[:5])} would take weights but do not "
                                 "deform (turn on Deform in their bone properties)")


def _shape_keys_world(obj: bpy.types.Object) -> np.ndarray:
    """Every shape key's vertex positions (S, V, 3) in the world, basis first; (0, V, 3) without keys."""
    keys = obj.data.shape_keys
    blocks = list(keys.key_blocks) if keys is not None else []
    world = np.array(obj.matrix_world, np.float64)
    out = np.empty((len(blocks), len(obj.data.vertices), 3))
    for k, block in enumerate(blocks):
        co = np.empty(out.shape[1] * 3, np.float32)
        block.data.foreach_get("co", co)
        out[k] = co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
    return out


def _mesh_copy(obj: bpy.types.Object, name: str, shapes_world: np.ndarray,
               collection: bpy.types.Collection) -> bpy.types.Object:
    """A new object with a copy of obj's mesh (faces, UVs, materials, shape keys) and no vertex groups, at
    the world origin in collection; shapes_world (1 + S, V, 3): the vertices, then each shape key's."""
    mesh = obj.data.copy()
    mesh.name = name
    mesh.vertices.foreach_set("co", np.ascontiguousarray(shapes_world[0], np.float32).ravel())
    if mesh.shape_keys is not None:
        for block, co in zip(mesh.shape_keys.key_blocks, shapes_world[1:]):
            block.data.foreach_set("co", np.ascontiguousarray(co, np.float32).ravel())
    mesh.update()
    new = bpy.data.objects.new(name, mesh)
    new.vertex_groups.clear()
    collection.objects.link(new)
    return new


def _parent_with_modifier(obj: bpy.types.Object, armature: bpy.types.Object) -> None:
    """Parent obj to armature keeping its (identity) world matrix, deformed by an Armature modifier."""
    obj.parent = armature
    obj.matrix_parent_inverse = armature.matrix_world.inverted()
    modifier = obj.modifiers.new(ARMATURE_MODIFIER, "ARMATURE")
    modifier.object = armature
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    modifier.use_deform_preserve_volume = False

"""The skinned body mesh: a RiggedBody's rest mesh, bound to an armature by its LBS weights.

Blender's Armature modifier (vertex groups, no envelopes, no preserve-volume)
computes the same linear blend skinning as core.kinematics.skin_points, so the
evaluated mesh matches the core's posed vertices; that is what makes the
imported body trustworthy for export.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.rig import RiggedBody

# Principled BSDF inputs for a neutral skin tone (linear RGB).
_SKIN_COLOR = (0.80, 0.58, 0.47, 1.0)
_SKIN_ROUGHNESS = 0.55


def create_body_mesh(
    name: str, rig: RiggedBody, armature: bpy.types.Object, collection: bpy.types.Collection,
    material: bpy.types.Material,
) -> bpy.types.Object:
    """A mesh object of rig's rest vertices (metres, world frame) deformed by armature.

    Parented to the armature with an identity parent-inverse, so with the
    armature at the world origin the rest mesh sits exactly where the rig says.
    """
    mesh = bpy.data.meshes.new(name)
    vertices = np.asarray(rig.vertices_rest, dtype=np.float32)
    faces = np.asarray(rig.faces, dtype=np.int32)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
    mesh.update()
    # Drops degenerate or duplicate faces, if a body model has any; vertices (so skinning) stay as they are.
    mesh.validate(verbose=False)
    mesh.materials.append(material)

    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.parent = armature
    add_skin_weights(obj, rig)
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    modifier.use_deform_preserve_volume = False
    return obj


def add_skin_weights(obj: bpy.types.Object, rig: RiggedBody) -> None:
    """One vertex group per joint (named as the joint), filled from skin_indices/skin_weights.

    Blender has no bulk setter for vertex weights, so entries are grouped by
    (bone, weight value) and each group is one VertexGroup.add call: the Anny body
    (13.7k vertices x 9 slots, 34k non-zero weights) takes ~0.05 s. Zero weights
    are skipped; a bone listed twice for one vertex has its weights summed.
    """
    names = rig.skeleton.joint_names
    groups = [obj.vertex_groups.new(name=n) for n in names]
    count, slots = rig.skin_indices.shape
    vertex = np.repeat(np.arange(count), slots)
    bone = np.asarray(rig.skin_indices).ravel()
    weight = np.asarray(rig.skin_weights, dtype=np.float32).ravel()
    keep = weight > 0
    vertex, bone, weight = vertex[keep], bone[keep], weight[keep]
    order = np.lexsort((weight, bone))
    vertex, bone, weight = vertex[order], bone[order], weight[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(bone) != 0) | (np.diff(weight) != 0)])
    ends = np.r_[starts[1:], len(vertex)]
    vertex_list = vertex.tolist()
    for start, end, b, w in zip(starts.tolist(), ends.tolist(), bone[starts].tolist(), weight[starts].tolist()):
        groups[b].add(vertex_list[start:end], w, "ADD")


def create_skin_material(name: str) -> bpy.types.Material:
    """A node-based Principled BSDF material in a neutral skin tone."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x; 5.0 always gives materials a node tree
        material.use_nodes = True
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = _SKIN_COLOR
    bsdf.inputs["Roughness"].default_value = _SKIN_ROUGHNESS
    material.diffuse_color = _SKIN_COLOR
    return material

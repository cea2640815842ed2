"""Splat objects: a Gaussians cloud kept in a Blender mesh, so it is saved in the .blend, undone,
selected, transformed and deformed by an Armature modifier like any other object.

Storage, format version 1 (``obj["avatar_capture_splats"] = 1``):
  mesh          N loose vertices; positions = means, metres, in the object frame (the object
                transform places the cloud in the world, nothing is baked in);
  POINT attributes
                "splat_rotation" QUATERNION (wxyz), "splat_log_scale" FLOAT_VECTOR,
                "splat_logit_opacity" FLOAT, "splat_sh_0" .. "splat_sh_{K-1}" FLOAT_VECTOR (RGB),
                K = (degree + 1)^2; with a surface binding also "splat_face_index" INT,
                "splat_barycentric" FLOAT_VECTOR and "splat_surface_offset" FLOAT_VECTOR;
  ``obj["avatar_capture_splat_sh_degree"]`` the SH degree (so a lost attribute is an error, not a
                silently lower degree);
  skin          one vertex group per bone, named after it (what the Armature modifier reads), and
                ``obj["avatar_capture_splat_skin"]`` = {"bone_names": [str], "bone_parents": [int],
                "rest_bone_to_object": [B * 16 float64, row-major 4x4 each]} for what vertex groups
                cannot hold.
All values are float32 in Blender as in Gaussians, so a cloud comes back bit for bit; the one
normalisation is the skin's slot order (see gaussians_from_object).

Everything goes through foreach_set/foreach_get on numpy arrays: a million splats
take a fraction of a second. Vertex groups have no bulk setter in the Python API, so
each bone's weights go in as a temporary FLOAT attribute turned into a vertex group by
``geometry.attribute_convert`` (one C-speed call per bone). Reading weights back has no
bulk getter at all: that is one Python pass over the vertices, and only for skinned clouds.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.errors import AvatarCaptureError
from ..core.splats.binding import bone_weights_by_distance
from ..core.splats.gaussians import (BONES_PER_SPLAT, Gaussians, InvalidGaussians, SplatSkin, SurfaceBinding,
                                     make_gaussians, sh_coefficient_count)
from . import datablocks

MARKER = "avatar_capture_splats"
FORMAT_VERSION = 1
SH_DEGREE_KEY = "avatar_capture_splat_sh_degree"
SKIN_KEY = "avatar_capture_splat_skin"

ROTATION = "splat_rotation"
LOG_SCALE = "splat_log_scale"
LOGIT_OPACITY = "splat_logit_opacity"
SH_PREFIX = "splat_sh_"
FACE_INDEX = "splat_face_index"
BARYCENTRIC = "splat_barycentric"
SURFACE_OFFSET = "splat_surface_offset"
ARMATURE_MODIFIER = "Armature"
# Name of the scratch attribute a bone's weights pass through on their way into a vertex group.
_WEIGHT_SCRATCH = "avatar_capture_weight_scratch"
# Rows whose weights sum to 1 within this keep their exact values; others are renormalised.
_WEIGHT_SUM_TOLERANCE = 1e-5

# Attribute type -> (foreach key, components per splat).
_LAYOUT = {"FLOAT": ("value", 1), "INT": ("value", 1), "FLOAT_VECTOR": ("vector", 3), "QUATERNION": ("value", 4)}


def sh_attribute(k: int) -> str:
    """The name of the attribute holding SH coefficient k (RGB) of every splat."""
    return f"{SH_PREFIX}{k}"


def is_splat_object(obj: bpy.types.Object | None) -> bool:
    """Whether obj is a mesh object made by create_splat_object (any format version)."""
    return obj is not None and obj.type == "MESH" and MARKER in obj


def create_splat_object(g: Gaussians, name: str, collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """A new splat object holding every field of g (module docstring), linked into collection.

    collection defaults to the context's active collection. The object is linked
    only once complete, and everything it made is removed again if a step fails.
    """
    collection = collection if collection is not None else bpy.context.collection
    before = datablocks.snapshot()
    try:
        mesh = bpy.data.meshes.new(name)
        mesh.vertices.add(g.count)
        mesh.vertices.foreach_set("co", np.ascontiguousarray(g.means, np.float32).ravel())
        _write(mesh, ROTATION, "QUATERNION", g.rotations)
        _write(mesh, LOG_SCALE, "FLOAT_VECTOR", g.log_scales)
        _write(mesh, LOGIT_OPACITY, "FLOAT", g.logit_opacities)
        for k in range(g.sh.shape[1]):
            _write(mesh, sh_attribute(k), "FLOAT_VECTOR", g.sh[:, k])
        if g.surface is not None:
            _write(mesh, FACE_INDEX, "INT", g.surface.face_indices)
            _write(mesh, BARYCENTRIC, "FLOAT_VECTOR", g.surface.barycentrics)
            _write(mesh, SURFACE_OFFSET, "FLOAT_VECTOR", g.surface.offsets)
        mesh.update()
        obj = bpy.data.objects.new(name, mesh)
        obj[MARKER] = FORMAT_VERSION
        obj[SH_DEGREE_KEY] = g.sh_degree
        obj.display_type = "BOUNDS"
        if g.skin is not None:
            _store_skin(obj, g.skin)
        collection.objects.link(obj)
    except BaseException:
        datablocks.remove_new(before)
        raise
    return obj


def gaussians_from_object(obj: bpy.types.Object) -> Gaussians:
    """The cloud stored in a splat object, read from its original (not evaluated) mesh.

    Means are in the object frame. The skin's slots come back ordered by weight
    (heaviest first, unused slots index 0 weight 0): the vertex groups keep which
    bones and how much, not the order of a file's columns. A splat in more than
    4 of the skin's groups keeps its 4 heaviest; rows not summing to 1 (weight
    painting) are renormalised, as the Armature modifier does.
    Raises AvatarCaptureError when obj is not a splat object, its data was damaged, or its
    mesh is in Edit Mode (the attributes then live in the edit mesh, out of the Python API's
    reach even after update_from_editmode).
    """
    obj = obj.original
    if not is_splat_object(obj):
        raise AvatarCaptureError(f"'{obj.name}' is not a splat object")
    if obj.data.is_editmode:
        raise AvatarCaptureError(f"splat object '{obj.name}' is in Edit Mode: its splats are read once it "
                                 "is back in Object Mode")
    if int(obj[MARKER]) > FORMAT_VERSION:
        raise AvatarCaptureError(f"'{obj.name}' was made by a newer Avatar Capture (splat format {obj[MARKER]})")
    mesh = obj.data
    n = len(mesh.vertices)
    if n == 0:
        raise AvatarCaptureError(f"splat object '{obj.name}' has no splats left")
    means = np.empty(n * 3, np.float32)
    mesh.vertices.foreach_get("co", means)
    degree = int(obj.get(SH_DEGREE_KEY, -1))
    if degree not in range(4):
        raise AvatarCaptureError(f"splat object '{obj.name}' has lost its SH degree ('{SH_DEGREE_KEY}')")
    sh = np.stack([_read(obj, sh_attribute(k), "FLOAT_VECTOR") for k in range(sh_coefficient_count(degree))], axis=1)
    surface = None
    if FACE_INDEX in mesh.attributes:
        surface = SurfaceBinding(_read(obj, FACE_INDEX, "INT"), _read(obj, BARYCENTRIC, "FLOAT_VECTOR"),
                                 _read(obj, SURFACE_OFFSET, "FLOAT_VECTOR"))
    try:
        return make_gaussians(means.reshape(n, 3), _read(obj, ROTATION, "QUATERNION"),
                              _read(obj, LOG_SCALE, "FLOAT_VECTOR"), _read(obj, LOGIT_OPACITY, "FLOAT"), sh,
                              skin=_read_skin(obj), surface=surface)
    except InvalidGaussians as exc:
        raise AvatarCaptureError(f"splat object '{obj.name}': {exc}") from None


def check_bindable(obj: bpy.types.Object, armature_obj: bpy.types.Object) -> list[bpy.types.Bone]:
    """The armature's deform bones; raises AvatarCaptureError saying why bind_to_armature cannot run.

    Operators binding several objects check them all first, so a refusal changes nothing.
    """
    if not is_splat_object(obj):
        raise AvatarCaptureError(f"'{obj.name}' is not a splat object; import splats first")
    if armature_obj is None or armature_obj.type != "ARMATURE":
        raise AvatarCaptureError(f"'{getattr(armature_obj, 'name', None)}' is not an armature")
    bones = [bone for bone in armature_obj.data.bones if bone.use_deform]
    if not bones:
        raise AvatarCaptureError(f"the armature '{armature_obj.name}' has no deform bones")
    if obj.mode != "OBJECT":
        raise AvatarCaptureError(f"'{obj.name}' is in {obj.mode.replace('_', ' ').title()} Mode; "
                                 "switch to Object Mode to bind it")
    return bones


def bind_to_armature(obj: bpy.types.Object, armature_obj: bpy.types.Object) -> None:
    """Make the splat object follow armature_obj's bones, keeping its world placement.

    Parents obj to the armature and adds (or reuses) an Armature modifier. When
    every bone of the cloud's skin is a deform bone of the armature, its weights
    are kept; otherwise weights are computed from the distance of each splat to
    the deform bones (core.splats.binding), replacing any old skin groups. Either
    way the stored skin's parents and rest frames become the armature's (rest frames
    in obj's frame as the two objects are placed now). obj must be in Object Mode.
    """
    bones = check_bindable(obj, armature_obj)
    world = obj.matrix_world.copy()
    armature_to_object = np.array(world.inverted() @ armature_obj.matrix_world, dtype=np.float64)
    by_name = {bone.name: bone for bone in bones}
    try:
        kept = [str(name) for name in obj[SKIN_KEY]["bone_names"]] if SKIN_KEY in obj else []
    except (KeyError, TypeError):
        kept = []  # a damaged skin property: the weights are computed afresh
    compute = not kept or not all(name in by_name for name in kept)
    chosen = _parents_first(bones if compute else [by_name[name] for name in kept])
    names = [bone.name for bone in chosen]
    if compute:
        for name in set(kept) | set(names):  # the old skin's groups, and any that would clash with the new
            group = obj.vertex_groups.get(name)
            if group is not None:
                obj.vertex_groups.remove(group)
        means = np.empty(len(obj.data.vertices) * 3, np.float32)
        obj.data.vertices.foreach_get("co", means)
        heads = np.array([np.array(bone.head_local) for bone in chosen]) @ armature_to_object[:3, :3].T + \
            armature_to_object[:3, 3]
        tails = np.array([np.array(bone.tail_local) for bone in chosen]) @ armature_to_object[:3, :3].T + \
            armature_to_object[:3, 3]
        indices, weights = bone_weights_by_distance(means.reshape(-1, 3), heads, tails, k=BONES_PER_SPLAT)
        write_vertex_groups(obj, names, indices, weights)
    rest = np.array([armature_to_object @ np.array(bone.matrix_local, np.float64) for bone in chosen])
    _store_skin_frames(obj, names, [_nearest_chosen_ancestor(bone, names) for bone in chosen], rest)

    obj.parent = armature_obj
    obj.matrix_parent_inverse = armature_obj.matrix_world.inverted()
    obj.matrix_world = world
    modifier = next((m for m in obj.modifiers if m.type == "ARMATURE"), None) or \
        obj.modifiers.new(ARMATURE_MODIFIER, "ARMATURE")
    modifier.object = armature_obj
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    modifier.use_deform_preserve_volume = False


def _write(mesh: bpy.types.Mesh, name: str, kind: str, values: np.ndarray) -> None:
    key, _ = _LAYOUT[kind]
    dtype = np.int32 if kind == "INT" else np.float32
    mesh.attributes.new(name, kind, "POINT").data.foreach_set(key, np.ascontiguousarray(values, dtype).ravel())


def _read(obj: bpy.types.Object, name: str, kind: str) -> np.ndarray:
    attribute = obj.data.attributes.get(name)
    if attribute is None or attribute.data_type != kind or attribute.domain != "POINT":
        raise AvatarCaptureError(f"splat object '{obj.name}' has lost its '{name}' attribute")
    key, width = _LAYOUT[kind]
    n = len(obj.data.vertices)
    values = np.empty(n * width, np.int32 if kind == "INT" else np.float32)
    attribute.data.foreach_get(key, values)
    return values.reshape(n, width) if width > 1 else values


def _store_skin(obj: bpy.types.Object, skin: SplatSkin) -> None:
    write_vertex_groups(obj, list(skin.bone_names), skin.bone_indices, skin.bone_weights)
    _store_skin_frames(obj, list(skin.bone_names), [int(p) for p in skin.bone_parents], skin.rest_bone_to_object)


def _store_skin_frames(obj: bpy.types.Object, names: list[str], parents: list[int], rest: np.ndarray) -> None:
    obj[SKIN_KEY] = {"bone_names": names, "bone_parents": parents,
                     "rest_bone_to_object": np.asarray(rest, np.float64).ravel().tolist()}


def write_vertex_groups(obj: bpy.types.Object, names: list[str], indices: np.ndarray, weights: np.ndarray) -> None:
    """Add one vertex group per name (in order) to obj's mesh, holding each splat's non-zero weights for that bone.

    A bone listed twice for one splat gets the sum, as the Armature modifier would.
    The groups are written through a scratch object that no scene shows, with obj's
    mesh swapped out meanwhile: otherwise every conversion re-evaluates obj and, as
    the evaluated mesh shares the weights, copies all of them again (10x slower at 1M).
    """
    mesh = obj.data
    n = len(mesh.vertices)
    slots = indices.shape[1]
    bone = np.asarray(indices).ravel()
    weight = np.asarray(weights, np.float32).ravel()
    vertex = np.repeat(np.arange(n), slots)
    keep = weight > 0
    order = np.argsort(bone[keep], kind="stable")
    bone, weight, vertex = bone[keep][order], weight[keep][order], vertex[keep][order]
    bounds = np.searchsorted(bone, np.arange(len(names) + 1))
    scratch = bpy.data.objects.new(_WEIGHT_SCRATCH, mesh)
    placeholder = bpy.data.meshes.new(_WEIGHT_SCRATCH)
    obj.data = placeholder
    try:
        for b, name in enumerate(names):
            start, end = bounds[b], bounds[b + 1]
            if start == end:
                scratch.vertex_groups.new(name=name)
                continue
            column = np.bincount(vertex[start:end], weights=weight[start:end], minlength=n).astype(np.float32)
            attribute = mesh.attributes.new(_WEIGHT_SCRATCH, "FLOAT", "POINT")
            attribute.data.foreach_set("value", column)
            mesh.attributes.active = attribute
            with bpy.context.temp_override(object=scratch, active_object=scratch):
                bpy.ops.geometry.attribute_convert(mode="VERTEX_GROUP")
            group = scratch.vertex_groups[_WEIGHT_SCRATCH]
            group.name = name
            if group.name != name:
                raise AvatarCaptureError(f"Blender cannot name a vertex group '{name}' (at most 63 bytes, unique)")
    finally:
        obj.data = mesh
        bpy.data.objects.remove(scratch)
        bpy.data.meshes.remove(placeholder)


def _read_skin(obj: bpy.types.Object) -> SplatSkin | None:
    stored = obj.get(SKIN_KEY)
    if stored is None:
        return None
    try:  # a custom property users can edit: anything malformed is damaged data, not a crash
        names = [str(name) for name in stored["bone_names"]]
        rest = np.array(stored["rest_bone_to_object"].to_list(), np.float64).reshape(len(names), 4, 4)
        parents = np.array(stored["bone_parents"].to_list() if names else [], np.int32)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise AvatarCaptureError(f"splat object '{obj.name}' has a damaged '{SKIN_KEY}' property; "
                                 "bind it again") from None
    lookup = np.full(len(obj.vertex_groups), -1, np.int64)
    for b, name in enumerate(names):
        group = obj.vertex_groups.get(name)
        if group is not None:
            lookup[group.index] = b
    memberships = _vertex_group_memberships(obj.data)
    vertex, bone, weight = memberships["vertex"], lookup[memberships["group"]], memberships["weight"].astype(np.float32)
    keep = (bone >= 0) & (weight > 0)
    vertex, bone, weight = vertex[keep], bone[keep], weight[keep]
    n = len(obj.data.vertices)
    per_vertex = np.bincount(vertex, minlength=n)
    if np.any(per_vertex == 0):
        raise AvatarCaptureError(f"splat object '{obj.name}': {int((per_vertex == 0).sum())} splat(s) have no "
                                 "weight in any bone's vertex group; paint them or bind again")
    # A padded (n, widest) table per splat (memberships come in vertex order), sorted heaviest first per row.
    starts = np.cumsum(per_vertex) - per_vertex
    column = np.arange(len(vertex)) - np.repeat(starts, per_vertex)
    widest = max(int(per_vertex.max()), BONES_PER_SPLAT)
    table_weights = np.zeros((n, widest), np.float32)
    table_bones = np.zeros((n, widest), np.int32)
    table_weights[vertex, column] = weight
    table_bones[vertex, column] = bone
    order = np.argsort(-table_weights, axis=1, kind="stable")[:, :BONES_PER_SPLAT]
    weights = np.take_along_axis(table_weights, order, axis=1)
    indices = np.take_along_axis(table_bones, order, axis=1)
    total = weights.sum(axis=1, dtype=np.float64)
    fix = (per_vertex > BONES_PER_SPLAT) | (np.abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE)
    weights[fix] = (weights[fix] / total[fix, None]).astype(np.float32)
    return SplatSkin(tuple(names), parents, rest, indices, weights)


def _vertex_group_memberships(mesh: bpy.types.Mesh) -> np.ndarray:
    """Every (vertex, group index, weight) of the mesh's vertex groups, in vertex order; one pass, ~1 s per 1.2M."""
    pairs = ((i, entry.group, entry.weight) for i, v in enumerate(mesh.vertices) for entry in v.groups)
    return np.fromiter(pairs, dtype=[("vertex", np.int64), ("group", np.int64), ("weight", np.float64)])


def _parents_first(bones: list[bpy.types.Bone]) -> list[bpy.types.Bone]:
    """bones sorted so every bone comes after its ancestors (stable within a depth)."""
    return sorted(bones, key=lambda bone: len(bone.parent_recursive))


def _nearest_chosen_ancestor(bone: bpy.types.Bone, names: list[str]) -> int:
    """Index in names of the bone's closest ancestor that is in names, -1 when none is."""
    for ancestor in bone.parent_recursive:
        if ancestor.name in names:
            return names.index(ancestor.name)
    return -1

"""Bone mappings stored on armature objects (``object.avatar_retarget_map``) and read back.

Why on the object: the mapping the user corrected in the sidebar belongs to that
character; stored on its armature object it is saved with the .blend file, undone
with the rest of the scene, and used again the next time this rig is a target or a
source. A rig with no stored mapping gets core auto_map's guess from its bone names
and hierarchy, so storing is only needed to keep corrections.

Stored form (props.AvatarRetargetMap): one item per canonical joint (``name`` the
canonical joint, ``bone`` the rig bone or "" when unmapped), so the sidebar can list
every joint for editing, plus the spine and neck chains as bone-name collections.
"""
from __future__ import annotations

import bpy

from ..core.errors import AvatarCaptureError
from ..core.retarget.auto_map import AutoMapReport, auto_map
from ..core.retarget.humanoid import CANONICAL_JOINTS, BoneMapping
from ..core.skeleton import Skeleton
from .readback import bone_order, read_skeleton


def _store(obj: bpy.types.Object):
    """The object's mapping property group; AvatarCaptureError when the add-on's properties are not registered."""
    group = getattr(obj, "avatar_retarget_map", None)
    if group is None:
        raise AvatarCaptureError("bone mappings need the Avatar Capture add-on registered")
    return group


def stored_mapping(obj: bpy.types.Object) -> BoneMapping | None:
    """The mapping stored on obj, or None when none is (or the add-on's properties are not registered).

    Chains that no longer hold the mapped spine/neck bones in order (the user
    re-mapped a spine joint after storing) are dropped: the retargeter then uses the
    mapped bones as the chain. Raises AvatarCaptureError when the stored joints are
    inconsistent (one bone mapped to two joints).
    """
    group = getattr(obj, "avatar_retarget_map", None)
    if group is None or not any(item.bone for item in group.joints):
        return None
    bones = {item.name: item.bone for item in group.joints if item.bone and item.name in CANONICAL_JOINTS}
    spine = tuple(item.name for item in group.spine_chain)
    neck = tuple(item.name for item in group.neck_chain)
    try:
        base = BoneMapping(bones=bones, name=group.mapping_name)
    except ValueError as exc:
        raise AvatarCaptureError(f"the bone mapping of '{obj.name}' is inconsistent: {exc}") from None
    for chains in ({"spine_chain": spine, "neck_chain": neck}, {"spine_chain": spine}, {"neck_chain": neck}):
        try:
            return BoneMapping(bones=bones, name=group.mapping_name, **chains)
        except ValueError:
            continue
    return base


def store_mapping(obj: bpy.types.Object, mapping: BoneMapping) -> None:
    """Write mapping onto obj (replacing what was stored): every canonical joint, chains and name."""
    group = _store(obj)
    group.joints.clear()
    for joint in CANONICAL_JOINTS:
        item = group.joints.add()
        item.name = joint
        item.bone = mapping.bones.get(joint, "")
    for collection, chain in ((group.spine_chain, mapping.spine_chain), (group.neck_chain, mapping.neck_chain)):
        collection.clear()
        for bone in chain:
            collection.add().name = bone
    group.mapping_name = mapping.name
    group.active_index = min(group.active_index, len(group.joints) - 1)


def armature_bones(obj: bpy.types.Object) -> tuple[tuple[str, ...], list[str | None]]:
    """The armature's bone names, parents first, and each one's parent name (None for roots)."""
    bones = obj.data.bones
    names = tuple(bone_order(obj))
    return names, [bones[n].parent.name if bones[n].parent else None for n in names]


def auto_map_armature(obj: bpy.types.Object) -> tuple[BoneMapping, AutoMapReport]:
    """core auto_map on the armature's bone names and parents (AvatarCaptureError for a non-humanoid)."""
    try:
        return auto_map(*armature_bones(obj))
    except AvatarCaptureError as exc:
        raise AvatarCaptureError(f"'{obj.name}': {exc}") from None


def mapping_for_armature(obj: bpy.types.Object) -> BoneMapping:
    """The armature's stored mapping, else the automatic one; checked against its bones.

    Raises AvatarCaptureError naming the problem: a non-humanoid (auto_map lists the
    joints it could not find), a stored mapping missing required joints (named), or
    naming bones the armature does not have (named).
    """
    if obj is None or obj.type != "ARMATURE":
        raise AvatarCaptureError(f"'{getattr(obj, 'name', None)}' is not an armature")
    mapping = stored_mapping(obj)
    if mapping is None:
        return auto_map_armature(obj)[0]
    mapping.check_fits([b.name for b in obj.data.bones], f"'{obj.name}'")
    return mapping


def body_skeleton(armature: bpy.types.Object, mapping: BoneMapping) -> Skeleton:
    """The world rest skeleton of the hierarchy holding the bone mapped as the hips: bones beside
    it (a loose IK or prop bone at the top level) are not part of the body and are left alone."""
    hips = armature.data.bones.get(mapping.bones.get("hips", ""))
    if hips is None:
        raise AvatarCaptureError(f"'{armature.name}' has no bone mapped as the hips")
    root = hips.parent_recursive[-1] if hips.parent_recursive else hips
    return read_skeleton(armature, root.name)

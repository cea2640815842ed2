"""Snapshots of bpy.data so a failed import or a temporary export scene leaves no trace.

Blender has no transaction for data created from Python; recording which
datablocks existed before and removing the rest afterwards is the rollback.
"""
from __future__ import annotations

import bpy

# Order matters for removal: scenes and objects first, so nothing still uses the data removed after.
KINDS = ("scenes", "objects", "armatures", "meshes", "materials", "actions", "cameras", "movieclips", "collections")


def snapshot() -> dict[str, set[int]]:
    """The session ids of every datablock of KINDS that exists now."""
    return {kind: {block.session_uid for block in getattr(bpy.data, kind)} for kind in KINDS}


def remove_new(before: dict[str, set[int]]) -> None:
    """Remove every datablock of KINDS that is not in the before snapshot."""
    for kind in KINDS:
        blocks = getattr(bpy.data, kind)
        for block in [b for b in blocks if b.session_uid not in before[kind]]:
            blocks.remove(block)

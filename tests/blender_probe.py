"""Reading results back out of a Blender scene for assertions (bpy tests only)."""
from __future__ import annotations

import bpy
import numpy as np


def evaluated_vertices(obj) -> np.ndarray:
    """World-space vertices (V, 3) of obj after modifiers (armature deform) at the current frame."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    evaluated.to_mesh_clear()
    world = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]

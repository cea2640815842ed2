"""Read an avatar back from a Blender scene into core data: skeleton, motion and skin.

Why: exports that change the avatar itself (a T-pose or A-pose rest, a Y-up
BVH) are computed in core on plain arrays and rebuilt in a temporary scene.
Reading what Blender evaluates, rather than the clip file the avatar came from,
means edits the animator made to the action, the bones or the mesh are exported
too. World frame = Blender's (metres, Z up); quaternions wxyz.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.clip import MotionClip
from ..core.kinematics import local_rotations
from ..core.skeleton import Skeleton

BODY_MODEL_PROPERTY = "avatar_capture_body_model"
BODY_SHAPE_PROPERTY = "avatar_capture_body_shape"


def skinned_meshes(armature: bpy.types.Object) -> list[bpy.types.Object]:
    """Child mesh objects deformed by armature through an Armature modifier."""
    return [
        child for child in armature.children
        if child.type == "MESH"
        and any(m.type == "ARMATURE" and m.object == armature for m in child.modifiers)
    ]


def action_frame_range(armature: bpy.types.Object, scene: bpy.types.Scene) -> tuple[int, int]:
    """First and last whole frame of the armature's action; the current frame when it has none."""
    anim = armature.animation_data
    if anim is None or anim.action is None:
        return scene.frame_current, scene.frame_current
    start, end = anim.action.frame_range
    return int(np.floor(start + 1e-6)), int(np.ceil(end - 1e-6))


def bone_order(armature: bpy.types.Object, root: str | None = None) -> list[str]:
    """Bone names with every parent before its children, keeping Blender's order where it already is;
    with root, only that bone and the bones below it."""
    bones = armature.data.bones
    placed: set[str] = set()
    order: list[str] = []
    pending = [bone.name for bone in bones] if root is None else \
        [root] + [bone.name for bone in bones[root].children_recursive]
    while pending:
        waiting = []
        for name in pending:
            parent = bones[name].parent
            if parent is None or parent.name in placed:
                order.append(name)
                placed.add(name)
            else:
                waiting.append(name)
        pending = waiting
    return order


def _orthonormal(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames with unit rotation columns, the scale of each frame's Y column) for (..., 4, 4)."""
    scale = np.linalg.norm(frames[..., :3, :3], axis=-2)  # (..., 3) per column
    out = frames.copy()
    out[..., :3, :3] /= scale[..., None, :]
    return out, scale[..., 1]


def _world(obj: bpy.types.Object) -> np.ndarray:
    return np.array(obj.matrix_world, dtype=np.float64)


def read_skeleton(armature: bpy.types.Object, root: str | None = None) -> Skeleton:
    """The armature's rest skeleton in the world (its object transform applied, scale removed); with
    root, the skeleton of that bone's hierarchy alone (a skeleton has one root bone)."""
    names = bone_order(armature, root)
    bones = armature.data.bones
    local = np.array([bones[n].matrix_local for n in names], dtype=np.float64)
    frames, scale = _orthonormal(_world(armature) @ local)
    parents = np.array([names.index(bones[n].parent.name) if bones[n].parent else -1 for n in names])
    lengths = np.array([bones[n].length for n in names]) * scale
    return Skeleton(tuple(names), parents, frames, lengths)


def read_pose_frames(scene: bpy.types.Scene, armature: bpy.types.Object, names: list[str] | tuple[str, ...],
                     frames: range) -> np.ndarray:
    """Posed bone frames in the world (T, J, 4, 4) at each scene frame, as Blender evaluates them.

    Sets the scene's current frame (the caller restores it); constraints and
    drivers are honoured because the depsgraph is evaluated, like Blender's exporters do.
    The armature must be visible in the scene's view layer: Blender does not
    evaluate the pose of hidden or excluded objects, and would return a frozen one.
    """
    index = [armature.pose.bones.find(n) for n in names]
    count = len(armature.pose.bones)
    buffer = np.empty(count * 16, dtype=np.float32)
    out = np.empty((len(frames), len(names), 4, 4))
    for t, frame in enumerate(frames):
        scene.frame_set(frame)
        armature.pose.bones.foreach_get("matrix", buffer)
        # foreach_get flattens matrices column by column.
        pose = buffer.reshape(count, 4, 4).transpose(0, 2, 1)[index]
        out[t] = _world(armature) @ pose
    return _orthonormal(out)[0]


def read_clip(scene: bpy.types.Scene, armature: bpy.types.Object) -> MotionClip:
    """The armature's motion over its action's frame range as a clip (frame rate from the scene).

    Landmarks are not stored in a scene, so the clip has none; contacts are
    unknown (zeros). Body model and shape come from the properties the importer
    sets on the armature ("none" when absent).
    """
    skeleton = read_skeleton(armature)
    start, end = action_frame_range(armature, scene)
    frames = read_pose_frames(scene, armature, skeleton.joint_names, range(start, end + 1))
    rotations, root_translation = local_rotations(frames, skeleton.rest_frames_world, skeleton.parents)
    shape = dict(armature.get(BODY_SHAPE_PROPERTY, {}))
    return MotionClip(
        fps=scene.render.fps / scene.render.fps_base,
        skeleton=skeleton,
        rotations=rotations,
        root_translation=root_translation,
        joints_world=frames[:, :, :3, 3],
        landmark_names=(),
        landmarks_world=np.zeros((len(frames), 0, 3)),
        contacts=np.zeros((len(frames), 4)),
        body_model=str(armature.get(BODY_MODEL_PROPERTY, "none")),
        body_shape_names=tuple(shape),
        body_shape=np.array(list(shape.values()), dtype=np.float64),
    )


def read_rest_vertices(mesh_object: bpy.types.Object) -> np.ndarray:
    """The mesh's own (undeformed) vertices in the world (V, 3), metres."""
    vertices = mesh_object.data.vertices
    co = np.empty(len(vertices) * 3, dtype=np.float32)
    vertices.foreach_get("co", co)
    world = _world(mesh_object)
    return co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]


def read_skin_weights(mesh_object: bpy.types.Object, joint_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """LBS weights (skin_indices (V, K), skin_weights (V, K)) from the vertex groups named as joints.

    Rows are normalised to sum to 1, as the Armature modifier does; groups that
    name no joint are ignored, and a vertex no joint group covers is given to the
    root with weight 1 (LBS cannot express "not deformed"). Blender offers no bulk
    read of vertex weights, so this walks the vertices once (~0.1 s for 14k).
    """
    joint_of_group = {g.index: joint_names.index(g.name) for g in mesh_object.vertex_groups if g.name in joint_names}
    rows = []
    for vertex in mesh_object.data.vertices:
        rows.append([(joint_of_group[g.group], g.weight) for g in vertex.groups
                     if g.group in joint_of_group and g.weight > 0.0])
    slots = max(1, max(len(row) for row in rows) if rows else 1)
    indices = np.zeros((len(rows), slots), dtype=np.int64)
    weights = np.zeros((len(rows), slots))
    for v, row in enumerate(rows):
        if row:
            indices[v, :len(row)], weights[v, :len(row)] = zip(*row)
        else:
            weights[v, 0] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    return indices, weights

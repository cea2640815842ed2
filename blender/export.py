"""Export an imported avatar through Blender's own exporters, with settings that round-trip.

Why these settings: FBX keys are baked on every frame with no simplification
(re-imports within micrometres), bones keep Blender's Y-along-the-bone axes so
re-imported bone frames equal ours, and the file is in centimetres with unit
scale 1, the FBX convention other tools expect; glTF keeps every skin
influence (the 4-influence default moves vertices by 3-6 mm) and samples every
frame; BVH is written Y-up, as BVH readers (Blender's importer included)
assume.

Two paths:
- "as is" FBX/glTF export the avatar in the user's scene directly;
- a changed rest pose (T-pose, A-pose) and every BVH (which needs a Y-up
  armature) read the avatar back into core data (blender/readback.py), change
  it there (core/rest_pose.py), rebuild it with the importer in a temporary
  scene and export that. The temporary scene and every datablock made for it
  are removed afterwards, and the exported objects carry the user's names.
  The rebuilt motion is sampled on every frame of the action and starts at
  frame 1, as the importer lays clips out (the "as is" path keeps the
  action's own frame numbers).

Re-importing into Blender: FBX with Animation Offset 0 (the importer's
default of 1 shifts every key one frame later), glTF with the scene at the
clip's frame rate (glTF stores seconds), BVH with the importer's defaults.

Every file is written into a staging folder next to the target and moved into
place when complete, so a failed export leaves no partial file, and the user's
selection, active object and current frame are restored.
"""
from __future__ import annotations

import dataclasses
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import bpy
import numpy as np
from bpy_extras.io_utils import axis_conversion

from ..core.atomic_files import atomic_output
from ..core.clip import MotionClip
from ..core.errors import AvatarCaptureError
from ..core.rest_pose import rebase_clip, rebase_rig, rest_frames_for
from ..core.rig import RiggedBody
from ..core.skeleton import Skeleton
from . import datablocks
from .import_scene import import_avatar
from .readback import (action_frame_range, read_clip, read_rest_vertices, read_skin_weights,
                       skinned_meshes)

FORMAT_EXTENSIONS = {"FBX": ".fbx", "GLB": ".glb", "GLTF": ".gltf", "BVH": ".bvh"}
REST_POSES = ("AS_IS", "T_POSE", "A_POSE")
_CORE_REST_POSES = {"T_POSE": "T", "A_POSE": "A"}

FBX_SETTINGS = dict(
    use_selection=True, object_types={"ARMATURE", "MESH"},
    global_scale=1.0, apply_unit_scale=True, apply_scale_options="FBX_SCALE_NONE",
    axis_forward="-Z", axis_up="Y", bake_space_transform=False,
    primary_bone_axis="Y", secondary_bone_axis="X", add_leaf_bones=False,
    use_armature_deform_only=False, armature_nodetype="NULL",
    mesh_smooth_type="FACE", use_mesh_modifiers=True, use_custom_props=False,
    bake_anim=True, bake_anim_use_all_bones=True, bake_anim_use_nla_strips=False,
    bake_anim_use_all_actions=False, bake_anim_force_startend_keying=True,
    bake_anim_step=1.0, bake_anim_simplify_factor=0.0,
)
GLTF_SETTINGS = dict(
    use_selection=True, use_active_scene=True, export_yup=True, export_apply=False,
    export_cameras=False, export_lights=False, export_extras=False,
    export_skins=True, export_all_influences=True, export_def_bones=False, export_leaf_bone=False,
    export_rest_position_armature=True, export_reset_pose_bones=True,
    export_animations=True, export_animation_mode="ACTIVE_ACTIONS", export_frame_range=False,
    export_force_sampling=True, export_frame_step=1, export_optimize_animation_size=False,
    export_anim_slide_to_zero=False, export_current_frame=False,
)
# Euler order of BVH rotation channels (written "Zrotation Xrotation Yrotation", the usual Y-up order).
BVH_ROTATION_ORDER = "ZXY"
# Blender's world (forward -Y, up Z) to BVH's (forward Z, up Y): what Blender's BVH importer undoes by default.
BLENDER_TO_BVH = np.array(axis_conversion(from_forward="-Y", from_up="Z", to_forward="Z", to_up="Y"))


def export_avatar(scene: bpy.types.Scene, armature: bpy.types.Object, path: str | Path, file_format: str,
                  rest_pose: str = "AS_IS") -> Path:
    """Write armature, its visible skinned child meshes and its action to path; return the path.

    file_format: "FBX" | "GLB" | "GLTF" (separate .gltf + .bin) | "BVH" (skeleton and
    motion only); rest_pose: "AS_IS" | "T_POSE" | "A_POSE" (the exported rest pose;
    the world motion is unchanged). The motion covers the action's frame range.
    Raises AvatarCaptureError naming the path when it cannot be written, and
    when the armature is hidden: Blender does not evaluate the pose of objects
    disabled in the viewport or excluded from the view layer, so their motion
    would be exported wrong.
    """
    if file_format not in FORMAT_EXTENSIONS:
        raise ValueError(f"unknown export format '{file_format}' (choose from {', '.join(FORMAT_EXTENSIONS)})")
    if rest_pose not in REST_POSES:
        raise ValueError(f"unknown rest pose '{rest_pose}' (choose from {', '.join(REST_POSES)})")
    if armature.type != "ARMATURE":
        raise AvatarCaptureError(f"'{armature.name}' is not an armature")
    view_layer = _view_layer(scene)
    if not armature.visible_get(view_layer=view_layer):
        raise AvatarCaptureError(
            f"'{armature.name}' is hidden or not in the view layer '{view_layer.name}': show it to export it")
    meshes = [mesh for mesh in skinned_meshes(armature) if mesh.visible_get(view_layer=view_layer)]
    path = Path(path)
    with ExitStack() as stack:
        target = stack.enter_context(atomic_output(path))
        stack.enter_context(_preserved_state(scene))
        if file_format == "BVH" or rest_pose != "AS_IS":
            to_file = BLENDER_TO_BVH if file_format == "BVH" else None
            scene, armature, meshes = stack.enter_context(_temporary_avatar(
                scene, armature, meshes if file_format != "BVH" else [], rest_pose, to_file))
        else:
            stack.enter_context(_frame_range(scene, *action_frame_range(armature, scene)))
        _run_exporter(file_format, target, path, scene, armature, meshes)
    return path


def save_blend_copy(path: str | Path) -> Path:
    """Save the current Blender session as a .blend file at path, atomically.

    Saved as a copy, so the session keeps its own file path (and stays "unsaved"). External
    paths (a capture's video) are kept as they are: Blender's default would make them
    relative to the staging folder, one level below the file's final place.
    """
    path = Path(path)
    with atomic_output(path) as target:
        bpy.ops.wm.save_as_mainfile(filepath=str(target), copy=True, check_existing=False, relative_remap=False)
        if not target.is_file():
            raise AvatarCaptureError(f"{path}: Blender did not write the file")
    return path


def _run_exporter(file_format: str, target: Path, path: Path, scene: bpy.types.Scene,
                  armature: bpy.types.Object, meshes: list[bpy.types.Object]) -> None:
    """Run Blender's exporter for file_format on armature and meshes, writing target (path names errors)."""
    view_layer = _view_layer(scene)
    selected = [armature, *meshes]
    for obj in view_layer.objects:
        obj.select_set(obj in selected, view_layer=view_layer)
    view_layer.objects.active = armature
    if file_format == "FBX":
        operator, settings = bpy.ops.export_scene.fbx, FBX_SETTINGS
    elif file_format == "BVH":
        start, end = action_frame_range(armature, scene)
        operator, settings = bpy.ops.export_anim.bvh, dict(
            frame_start=start, frame_end=end, global_scale=1.0, rotate_mode=BVH_ROTATION_ORDER,
            root_transform_only=False)
    else:
        action = armature.animation_data.action if armature.animation_data else None
        operator, settings = bpy.ops.export_scene.gltf, dict(
            GLTF_SETTINGS, export_format="GLB" if file_format == "GLB" else "GLTF_SEPARATE",
            export_nla_strips_merged_animation_name=action.name if action else "Animation")
    # Options an older Blender's exporter lacks are left out (its defaults apply) instead of failing.
    known = operator.get_rna_type().properties.keys()
    settings = {key: value for key, value in settings.items() if key in known}
    override = dict(scene=scene, view_layer=view_layer, active_object=armature, object=armature,
                    selected_objects=selected, selected_editable_objects=selected)
    try:
        with bpy.context.temp_override(**override):
            result = operator(filepath=str(target), **settings)
    except RuntimeError as exc:
        raise AvatarCaptureError(f"{path}: Blender's {file_format} exporter failed: {exc}") from None
    if "FINISHED" not in result or not target.is_file():
        raise AvatarCaptureError(f"{path}: Blender's {file_format} exporter wrote nothing")


def _view_layer(scene: bpy.types.Scene) -> bpy.types.ViewLayer:
    return bpy.context.view_layer if bpy.context.scene == scene else scene.view_layers[0]


@contextmanager
def _preserved_state(scene: bpy.types.Scene) -> Iterator[None]:
    """Restore the selection, active object and current frame of scene's view layer afterwards."""
    view_layer = _view_layer(scene)
    selected = [obj for obj in view_layer.objects if obj.select_get(view_layer=view_layer)]
    active = view_layer.objects.active
    frame, subframe = scene.frame_current, scene.frame_subframe
    try:
        yield
    finally:
        for obj in view_layer.objects:
            obj.select_set(obj in selected, view_layer=view_layer)
        view_layer.objects.active = active
        scene.frame_set(frame, subframe=subframe)


@contextmanager
def _frame_range(scene: bpy.types.Scene, start: int, end: int) -> Iterator[None]:
    """Temporarily set the scene's frame range (the FBX exporter bakes the scene range)."""
    previous = scene.frame_start, scene.frame_end
    scene.frame_start, scene.frame_end = start, end
    try:
        yield
    finally:
        scene.frame_start, scene.frame_end = previous


@contextmanager
def _temporary_avatar(
    scene: bpy.types.Scene, armature: bpy.types.Object, sources: list[bpy.types.Object], rest_pose: str,
    to_file: np.ndarray | None,
) -> Iterator[tuple[bpy.types.Scene, bpy.types.Object, list[bpy.types.Object]]]:
    """A rebuilt copy of armature and its skinned meshes sources in a temporary scene, with the new
    rest pose and, with to_file (3, 3), the world rotated into the file's axes.

    Yields (scene, armature, meshes) carrying the user's names; on exit every
    datablock created here is removed and the user's names are given back.
    Mesh copies keep the user's mesh data (topology, UVs, materials, weights)
    with their vertices moved to the new rest pose.
    """
    clip = read_clip(scene, armature)
    vertices = [read_rest_vertices(mesh) for mesh in sources]
    if rest_pose != "AS_IS":
        clip, vertices = _rebased(clip, sources, vertices, rest_pose)
    if to_file is not None:
        clip, vertices = _transformed(clip, vertices, to_file)

    before = datablocks.snapshot()
    try:
        temp_scene = bpy.data.scenes.new(scene.name)
        temp_scene.unit_settings.system = scene.unit_settings.system
        temp_scene.unit_settings.scale_length = scene.unit_settings.scale_length
        with bpy.context.temp_override(scene=temp_scene, view_layer=temp_scene.view_layers[0]):
            temp_armature = import_avatar(bpy.context, clip, None, armature.name)
        copies = [_mesh_copy(source, armature, temp_armature, v) for source, v in zip(sources, vertices)]
        temp_scene.view_layers[0].update()  # so the view layer lists (and can select) the copies
        pairs = [(scene, temp_scene), (armature, temp_armature), (armature.data, temp_armature.data),
                 (armature.animation_data.action if armature.animation_data else None,
                  temp_armature.animation_data.action)]
        pairs += [pair for source, copy in zip(sources, copies)
                  for pair in ((source, copy), (source.data, copy.data))]
        with _borrowed_names(pairs):
            yield temp_scene, temp_armature, copies
    finally:
        datablocks.remove_new(before)


def _rebased(clip: MotionClip, sources: list[bpy.types.Object], vertices: list[np.ndarray],
             rest_pose: str) -> tuple[MotionClip, list[np.ndarray]]:
    """The clip and mesh vertices with the skeleton's rest pose changed to rest_pose."""
    skeleton = clip.skeleton
    new_rest = rest_frames_for(skeleton, clip.body_model, _CORE_REST_POSES[rest_pose])
    moved = []
    for source, points in zip(sources, vertices):
        indices, weights = read_skin_weights(source, skeleton.joint_names)
        moved.append(rebase_rig(_skin_only_rig(skeleton, points, indices, weights), new_rest).vertices_rest)
    return rebase_clip(clip, new_rest), moved


def _skin_only_rig(skeleton: Skeleton, vertices: np.ndarray, indices: np.ndarray,
                   weights: np.ndarray) -> RiggedBody:
    """A RiggedBody holding just what re-skinning needs (no faces, landmarks or shape)."""
    return RiggedBody(
        body_model="none", shape_names=(), shape_values=np.zeros(0), skeleton=skeleton,
        vertices_rest=vertices, faces=np.zeros((0, 3), dtype=np.int64), skin_indices=indices,
        skin_weights=weights, landmark_names=(), landmark_bone_points=np.zeros((0, skeleton.joint_count, 4)),
    )


def _transformed(clip: MotionClip, vertices: list[np.ndarray],
                 transform: np.ndarray) -> tuple[MotionClip, list[np.ndarray]]:
    """The clip and vertices with the world rotated by transform (3, 3).

    Local rotations are relative to the rest frames, so rotating the rest frames
    and the root translation rotates the whole motion.
    """
    rotation4 = np.eye(4)
    rotation4[:3, :3] = transform
    skeleton = dataclasses.replace(clip.skeleton, rest_frames_world=rotation4 @ clip.skeleton.rest_frames_world)
    clip = dataclasses.replace(
        clip, skeleton=skeleton, root_translation=clip.root_translation @ transform.T,
        joints_world=clip.joints_world @ transform.T, landmarks_world=clip.landmarks_world @ transform.T,
    )
    return clip, [v @ transform.T for v in vertices]


def _mesh_copy(source: bpy.types.Object, source_armature: bpy.types.Object, armature: bpy.types.Object,
               vertices_world: np.ndarray) -> bpy.types.Object:
    """A copy of source (object and mesh data) skinned to armature instead of source_armature,
    its vertices at vertices_world (V, 3).

    The copy sits at the world origin under armature (at the origin too), so
    object-space and world coordinates coincide.
    """
    copy = source.copy()
    copy.data = source.data.copy()
    copy.animation_data_clear()
    armature.users_collection[0].objects.link(copy)
    copy.parent = armature
    copy.matrix_parent_inverse.identity()
    copy.matrix_basis.identity()
    copy.data.vertices.foreach_set("co", np.asarray(vertices_world, dtype=np.float32).ravel())
    copy.data.update()
    for modifier in copy.modifiers:
        if modifier.type == "ARMATURE" and modifier.object == source_armature:
            modifier.object = armature
    return copy


@contextmanager
def _borrowed_names(pairs: list[tuple[bpy.types.ID | None, bpy.types.ID]]) -> Iterator[None]:
    """Give each temporary ID its original's name for the block (the original is renamed meanwhile).

    Blender names must be unique per kind, and exporters write object, mesh,
    action and scene names into the file, so without this a T-pose FBX would
    hold "Avatar.001" instead of "Avatar".
    """
    pairs = [(original, temporary) for original, temporary in pairs if original is not None]
    names = [original.name for original, _ in pairs]
    try:
        for number, (original, temporary) in enumerate(pairs):
            original.name = f"avatarcap-export-{os.getpid()}-{number}"
            temporary.name = names[number]
        yield
    finally:
        for number, (original, temporary) in enumerate(pairs):
            temporary.name = f"avatarcap-temporary-{os.getpid()}-{number}"
        for (original, _), name in zip(pairs, names):
            original.name = name

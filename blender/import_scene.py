"""Build a clip (and optionally its rigged body) into a Blender scene, all or nothing.

Used by the import operator and the headless CLI. Everything lands in one new
collection: armature with the clip's action, skinned body mesh when a
RiggedBody is given, and the capture camera when the clip has one. If any step
fails, every datablock created so far is removed and the scene settings are
put back before the error is re-raised, so a failed import leaves no debris.
"""
from __future__ import annotations

import bpy
import numpy as np

from ..core.clip import MotionClip
from ..core.errors import AvatarCaptureError
from ..core.rig import RiggedBody
from . import datablocks
from .action import set_scene_timing, write_clip_action
from .armature import create_armature
from .camera import create_camera
from .mesh import create_body_mesh, create_skin_material

# Rest frames of a rig and a clip built for the same body agree to float32 precision (metres).
_REST_TOLERANCE = 1e-4
# Datablock collections an import may add to; a failed import removes its additions from each.
# Scene settings an import may change; a failed import restores them.
_SCENE_SETTINGS = ("frame_start", "frame_end", "camera")
_RENDER_SETTINGS = ("fps", "fps_base", "resolution_x", "resolution_y", "resolution_percentage",
                    "pixel_aspect_x", "pixel_aspect_y")


def import_avatar(
    target: bpy.types.Context | bpy.types.Scene, clip: MotionClip,
    rig: RiggedBody | None = None, name: str | None = None,
) -> bpy.types.Object:
    """Import clip into target's scene and return the armature object.

    target is a context (its scene and view layer are used) or a scene (its
    current view layer when it is the context's scene, else its first). rig,
    when given, must be the body the clip was made for (same joints and rest
    frames); its mesh is skinned to the armature. name defaults to "Avatar"
    (Blender appends .001 ... when taken). Sets the scene fps and frame range
    (clip frame t -> Blender frame t + 1) and, with a camera, the resolution.
    Raises AvatarCaptureError when rig and clip do not match.
    """
    if isinstance(target, bpy.types.Context):
        scene, view_layer = target.scene, target.view_layer
    else:
        scene = target
        view_layer = bpy.context.view_layer if bpy.context.scene == scene else scene.view_layers[0]
    if rig is not None:
        check_rig_matches_clip(rig, clip)
    name = name or "Avatar"

    before = datablocks.snapshot()
    settings = scene_settings(scene)
    try:
        armature = _build(scene, view_layer, clip, rig, name)
    except BaseException:
        datablocks.remove_new(before)
        restore_scene_settings(scene, settings)
        raise
    for obj in view_layer.objects:
        obj.select_set(False, view_layer=view_layer)
    armature.select_set(True, view_layer=view_layer)
    view_layer.objects.active = armature
    return armature


def scene_settings(scene: bpy.types.Scene) -> dict[str, dict]:
    """The scene and render settings an import changes (frame range, camera, fps, resolution)."""
    return {"scene": {key: getattr(scene, key) for key in _SCENE_SETTINGS},
            "render": {key: getattr(scene.render, key) for key in _RENDER_SETTINGS}}


def restore_scene_settings(scene: bpy.types.Scene, settings: dict[str, dict]) -> None:
    """Put back what scene_settings read, after a failed import."""
    for key, value in settings["scene"].items():
        setattr(scene, key, value)
    for key, value in settings["render"].items():
        setattr(scene.render, key, value)


def check_rig_matches_clip(rig: RiggedBody, clip: MotionClip) -> None:
    """Raise AvatarCaptureError unless rig has the clip's joints, parents and rest frames."""
    ours, theirs = rig.skeleton, clip.skeleton
    if ours.joint_names != theirs.joint_names or not np.array_equal(ours.parents, theirs.parents):
        raise AvatarCaptureError(
            f"the {rig.body_model} body's skeleton ({ours.joint_count} joints) is not the clip's "
            f"({theirs.joint_count} joints)"
        )
    error = np.abs(ours.rest_frames_world - theirs.rest_frames_world).max()
    if error > _REST_TOLERANCE:
        raise AvatarCaptureError(
            f"the {rig.body_model} body's rest pose differs from the clip's by {error * 1000:.1f} mm "
            "(the clip was made for another body shape)"
        )


def _build(scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer, clip: MotionClip,
           rig: RiggedBody | None, name: str) -> bpy.types.Object:
    collection = bpy.data.collections.new(name)
    scene.collection.children.link(collection)
    armature = create_armature(name, clip.skeleton, collection, scene, view_layer)
    missing = [joint for joint in clip.skeleton.joint_names if joint not in armature.data.bones]
    if missing:
        raise AvatarCaptureError(f"Blender cannot name a bone '{missing[0]}' (bone names are at most 63 bytes)")
    armature["avatar_capture_body_model"] = clip.body_model
    armature["avatar_capture_body_shape"] = dict(zip(clip.body_shape_names, clip.body_shape.tolist()))
    write_clip_action(armature, clip, f"{name}Motion")
    set_scene_timing(scene, clip.fps, clip.frame_count)
    if rig is not None:
        create_body_mesh(f"{name}Body", rig, armature, collection, create_skin_material(f"{name}Skin"))
    if clip.camera is not None:
        create_camera(f"{name}Camera", clip.camera, collection, scene)
    return armature

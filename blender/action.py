"""Actions written from clip arrays in bulk, for Blender 5.0 layered actions and the 4.2-4.4 API.

Keys are written with ``keyframe_points.add`` + ``foreach_set`` (no Python loop
per key) and LINEAR interpolation, so Blender evaluates exactly the clip's
values at every integer frame. Frame mapping everywhere in the importer: clip
frame index t (0-based) -> Blender frame t + FIRST_FRAME.
"""
from __future__ import annotations

from typing import Callable

import bpy
import numpy as np

from ..core.clip import MotionClip
from ..core.landmarks import CONTACT_NAMES
from ..core.rotations import quat_continuous

FIRST_FRAME = 1
CONTACT_PROPERTY_PREFIX = "contact_"

NewFCurve = Callable[[str, int, str], bpy.types.FCurve]
_LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


def blender_frames(frame_count: int) -> np.ndarray:
    """Blender frame numbers (T,) of clip frames 0..T-1."""
    return np.arange(frame_count, dtype=np.float64) + FIRST_FRAME


def assign_new_action(id_block: bpy.types.ID, name: str) -> tuple[bpy.types.Action, NewFCurve]:
    """A new action assigned to id_block, and a function creating F-curves in it.

    Blender 4.4+ (and only this path in 5.0, which removed Action.fcurves): one
    slot for id_block, one layer, one keyframe strip, its channelbag. Blender
    4.2-4.3: the legacy Action.fcurves. Chosen by feature detection.
    """
    action = bpy.data.actions.new(name)
    anim = id_block.animation_data_create()
    if hasattr(action, "slots"):
        slot = action.slots.new(id_block.id_type, id_block.name)
        strip = action.layers.new("Layer").strips.new(type="KEYFRAME")
        channelbag = strip.channelbag(slot, ensure=True)
        anim.action = action
        anim.action_slot = slot
        groups: dict[str, bpy.types.ActionGroup] = {}

        def new_fcurve(path: str, index: int, group: str) -> bpy.types.FCurve:
            # fcurves.new only takes a group name from Blender 5.0 on; assigning works from 4.4.
            fcurve = channelbag.fcurves.new(path, index=index)
            if group not in groups:
                groups[group] = channelbag.groups.new(group)
            fcurve.group = groups[group]
            return fcurve

        return action, new_fcurve
    anim.action = action
    return action, lambda path, index, group: action.fcurves.new(path, index=index, action_group=group)


def key_channels(new_fcurve: NewFCurve, data_path: str, values: np.ndarray, group: str) -> None:
    """One LINEAR F-curve per column of values (T, C), keyed at blender_frames(T)."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    frames = blender_frames(len(values))
    co = np.empty((len(values), 2), dtype=np.float32)
    co[:, 0] = frames
    interpolation = np.full(len(values), _LINEAR, dtype=np.int32)
    for index in range(values.shape[1]):
        fcurve = new_fcurve(data_path, index, group)
        co[:, 1] = values[:, index]
        points = fcurve.keyframe_points
        points.add(len(values))
        points.foreach_set("co", co.ravel())
        points.foreach_set("interpolation", interpolation)
        fcurve.update()


def root_pose_location(clip: MotionClip) -> np.ndarray:
    """Root pose-bone locations (T, 3): the world root translation in the root's rest frame.

    Blender poses the root as rest @ Translation(location) @ Rotation(q), so the
    location is the inverse rest rotation applied to (root_translation - rest head).
    """
    rest = clip.skeleton.rest_frames_world[0]
    return (np.asarray(clip.root_translation) - rest[:3, 3]) @ rest[:3, :3]


def write_clip_action(armature: bpy.types.Object, clip: MotionClip, name: str) -> bpy.types.Action:
    """Key every bone's rotation_quaternion, the root's location and the contacts on every frame.

    Contacts become custom properties ``contact_left_heel`` ... (0..1) on the
    armature object, keyed so they show in the timeline and graph editor.
    Assumes the armature object sits at the world origin (matrix_world identity).
    """
    action, new_fcurve = assign_new_action(armature, name)
    rotations = quat_continuous(clip.rotations)
    for j, joint in enumerate(clip.skeleton.joint_names):
        path = f'pose.bones["{bpy.utils.escape_identifier(joint)}"]'
        key_channels(new_fcurve, f"{path}.rotation_quaternion", rotations[:, j], joint)
        if j == 0:
            key_channels(new_fcurve, f"{path}.location", root_pose_location(clip), joint)
    for column, contact in enumerate(CONTACT_NAMES):
        prop = CONTACT_PROPERTY_PREFIX + contact
        armature[prop] = float(clip.contacts[0, column])
        armature.id_properties_ui(prop).update(min=0.0, max=1.0, soft_min=0.0, soft_max=1.0,
                                               description=f"Ground contact of the {contact.replace('_', ' ')}, 0..1")
        key_channels(new_fcurve, f'["{prop}"]', clip.contacts[:, column], "Contacts")
    return action


def set_scene_timing(scene: bpy.types.Scene, fps: float, frame_count: int) -> None:
    """Scene frame rate (fps / fps_base, so 29.97 is exact) and frame range FIRST_FRAME..T."""
    whole = max(1, round(fps))
    scene.render.fps = whole
    scene.render.fps_base = whole / fps
    scene.frame_start = FIRST_FRAME
    scene.frame_end = FIRST_FRAME + frame_count - 1

"""Retarget a motion file onto a rig file and write the rig carrying the new motion (``avatarcap retarget``).

Why a file-to-file path: animators keep their characters as FBX, glTF or .blend
files and want them back the same way, with the captured motion on them. The
output is the target rig itself (its bone names, rest pose, proportions and
skinned meshes, as the importer gave them) with the retargeted action, at the
source's frame rate; or, for .npz, the retargeted clip on the target's skeleton.

Steps: the source (.npz clip or .bvh) is read in core; the target file is
loaded into the current scene, which the caller empties first (FBX/glTF through
Blender's importers with their defaults, a .blend by appending its objects); the
humanoid armature is found; both mappings are resolved (a preset name, a JSON
mapping file, or automatic mapping); blender.retarget_bake retargets and bakes
(the target's existing action, if any, is kept with a fake user and the new one
made active); the scene's frame rate and range become the source's; the output
is written atomically by blender.export (FBX: baked on every frame, no leaf
bones, Blender's bone axes kept so re-importing gives back the same bones).
Every problem with the user's input raises AvatarCaptureError with one line
naming the file, before anything is written.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import bpy

from ..core.clip import MotionClip, load_clip, save_clip
from ..core.errors import AvatarCaptureError
from ..core.retarget.auto_map import auto_map
from ..core.retarget.humanoid import BoneMapping, load_mapping
from ..core.retarget.presets import PRESETS
from .action import set_scene_timing
from .export import export_avatar, save_blend_copy
from .retarget_bake import retarget_onto_armature
from .retarget_mapping import armature_bones

SOURCE_EXTENSIONS = (".npz", ".bvh")
TARGET_EXTENSIONS = (".fbx", ".glb", ".gltf", ".blend")
OUTPUT_EXTENSIONS = (".fbx", ".glb", ".blend", ".npz")


@dataclass(frozen=True)
class RetargetResult:
    """What retarget_file did: the target clip (the retargeted motion on the target skeleton),
    the armature's name, the mappings' names ("auto" when found automatically) and the
    seconds spent retargeting and baking."""

    clip: MotionClip
    armature: str
    source_mapping: str
    target_mapping: str
    bake_seconds: float


def check_extension(path: str | Path, allowed: tuple[str, ...], what: str) -> Path:
    """path, or AvatarCaptureError when its extension is not one of allowed."""
    path = Path(path)
    if path.suffix.lower() not in allowed:
        raise AvatarCaptureError(f"{path}: the {what} must be a {', '.join(allowed[:-1])} or {allowed[-1]} file")
    return path


def load_source(path: str | Path) -> MotionClip:
    """The motion to retarget: a clip (.npz) or a BVH file as a skeleton-only clip."""
    path = check_extension(path, SOURCE_EXTENSIONS, "source motion")
    if not path.is_file():
        raise AvatarCaptureError(f"{path}: no such file")
    if path.suffix.lower() == ".bvh":
        from ..core.retarget.bvh_clip import clip_from_bvh

        return clip_from_bvh(path)
    return load_clip(path)


def resolve_mapping(spec: str | None, names: Sequence[str], parents: Sequence,
                    rig: str) -> tuple[BoneMapping, str]:
    """(mapping, its name) for a rig with these bones (parents as names or indices, as core auto_map
    takes them): spec is a preset name, a mapping .json file, or None for automatic mapping.
    AvatarCaptureError names rig when the mapping does not fit it or the rig is not a humanoid."""
    if spec is None:
        try:
            mapping, report = auto_map(names, parents)
        except AvatarCaptureError as exc:
            raise AvatarCaptureError(f"{rig}: not a humanoid rig ({exc})") from None
        return mapping, report.preset or "auto"
    if spec in PRESETS:
        mapping = PRESETS[spec]
    elif spec.lower().endswith(".json"):
        mapping = load_mapping(spec)
    else:
        raise AvatarCaptureError(f"unknown bone mapping '{spec}': give a .json mapping file or one of "
                                 f"{', '.join(PRESETS)}")
    mapping.check_fits(names, rig)
    return mapping, mapping.name or Path(spec).stem


def load_target(scene: bpy.types.Scene, path: str | Path) -> list[bpy.types.Object]:
    """Load a rig file's objects into scene (linked to its collection); returns them.

    FBX and glTF go through Blender's importers with their default settings (bones
    come back as they were exported); a .blend's objects are appended.
    """
    path = check_extension(path, TARGET_EXTENSIONS, "target rig")
    if not path.is_file():
        raise AvatarCaptureError(f"{path}: no such file")
    before = set(bpy.data.objects)
    kind = path.suffix.lower()
    try:
        if kind == ".blend":
            with bpy.data.libraries.load(str(path), link=False) as (source, loaded):
                loaded.objects = list(source.objects)
            for obj in loaded.objects:
                if obj is not None:
                    scene.collection.objects.link(obj)
        else:
            operator = bpy.ops.import_scene.fbx if kind == ".fbx" else bpy.ops.import_scene.gltf
            view_layer = scene.view_layers[0]
            with bpy.context.temp_override(scene=scene, view_layer=view_layer):
                result = operator(filepath=str(path))
            if "FINISHED" not in result:
                raise RuntimeError("the importer did not finish")
    except (RuntimeError, OSError) as exc:
        problem = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise AvatarCaptureError(f"{path}: Blender cannot read this {kind[1:].upper()} file ({problem})") from None
    return [obj for obj in bpy.data.objects if obj not in before]


def find_armature(objects: list[bpy.types.Object], path: str | Path, name: str | None,
                  mapping: str | None) -> tuple[bpy.types.Object, BoneMapping, str]:
    """The humanoid armature among objects, its mapping and the mapping's name.

    With name: that armature (AvatarCaptureError listing the armatures when absent).
    Without: the only armature the mapping fits; several fitting armatures is an error
    asking for --armature.
    """
    armatures = sorted((o for o in objects if o.type == "ARMATURE"), key=lambda o: o.name)
    listed = ", ".join(f"'{a.name}'" for a in armatures)
    if not armatures:
        raise AvatarCaptureError(f"{path}: the file holds no armature")
    if name is not None:
        chosen = [a for a in armatures if a.name == name]
        if not chosen:
            raise AvatarCaptureError(f"{path}: no armature named '{name}' (the file has {listed})")
        armatures = chosen
    fitting, problems = [], []
    for armature in armatures:
        try:
            fitting.append((armature, *resolve_mapping(mapping, *armature_bones(armature),
                                                       f"{path}: armature '{armature.name}'")))
        except AvatarCaptureError as exc:
            problems.append(exc)
    if len(fitting) > 1:
        raise AvatarCaptureError(f"{path}: several humanoid armatures ({listed}): choose one with --armature")
    if not fitting:
        raise problems[0]
    return fitting[0]


def retarget_file(source_path: str | Path, target_path: str | Path, output_path: str | Path, *,
                  mapping: str | None = None, source_mapping: str | None = None,
                  armature_name: str | None = None, in_place: bool = False, foot_lock: bool = True,
                  hand_ik: bool = False) -> RetargetResult:
    """Retarget the source motion onto the target rig file and write output_path (see the module
    docstring). Uses the current scene, which should be empty (the CLI reads factory settings)."""
    source_path = Path(source_path)
    target_path = check_extension(target_path, TARGET_EXTENSIONS, "target rig")
    output_path = check_extension(output_path, OUTPUT_EXTENSIONS, "output")
    source = load_source(source_path)
    source_map, source_map_name = resolve_mapping(source_mapping, source.skeleton.joint_names, source.skeleton.parents,
                                                  f"{source_path}")
    scene = bpy.context.scene
    objects = load_target(scene, target_path)
    armature, target_map, target_map_name = find_armature(objects, target_path, armature_name, mapping)

    started = time.perf_counter()
    set_scene_timing(scene, source.fps, source.frame_count)
    _, clip = retarget_onto_armature(scene, armature, source, source_map, target_map, in_place=in_place,
                                     foot_lock=foot_lock, hand_ik=hand_ik,
                                     action_name=f"{armature.name} {source_path.stem}")
    seconds = time.perf_counter() - started
    kind = output_path.suffix.lower()
    if kind == ".npz":
        save_clip(clip, output_path)
    elif kind == ".blend":
        save_blend_copy(output_path)
    else:
        export_avatar(scene, armature, output_path, kind[1:].upper())
    return RetargetResult(clip, armature.name, source_map_name, target_map_name, seconds)

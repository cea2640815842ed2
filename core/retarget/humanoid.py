"""The canonical humanoid skeleton and a rig's mapping onto it.

Why: every retarget goes source rig -> canonical joints -> target rig, so each
rig needs one description (a BoneMapping) instead of one per pair of rigs. The
canonical set is small (the joints that every humanoid shares); rigs with more
spine or neck bones list them as ordered chains so that a retargeter can spread
one canonical rotation over chains of different lengths.

Names: sided joints are "left_<part>" / "right_<part>" (the character's own left).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ..atomic_files import atomic_output
from ..errors import AvatarCaptureError, FileFormatError

SIDES = ("left", "right")
_FINGERS = ("thumb", "index", "middle", "ring", "little")


def _sided(part: str) -> tuple[str, str]:
    return (f"left_{part}", f"right_{part}")


def _canonical_parents() -> dict[str, str | None]:
    """Canonical joint -> canonical parent (None for hips), parents listed before children."""
    parents: dict[str, str | None] = {
        "hips": None,
        "spine": "hips",
        "chest": "spine",
        "upper_chest": "chest",
        "neck": "upper_chest",
        "head": "neck",
        "jaw": "head",
        "left_eye": "head",
        "right_eye": "head",
    }
    for side in SIDES:
        parents[f"{side}_shoulder"] = "upper_chest"
        parents[f"{side}_upper_arm"] = f"{side}_shoulder"
        parents[f"{side}_lower_arm"] = f"{side}_upper_arm"
        parents[f"{side}_hand"] = f"{side}_lower_arm"
        for finger in _FINGERS:
            previous = f"{side}_hand"
            for phalanx in (1, 2, 3):
                name = f"{side}_{finger}_{phalanx}"
                parents[name] = previous
                previous = name
        parents[f"{side}_upper_leg"] = "hips"
        parents[f"{side}_lower_leg"] = f"{side}_upper_leg"
        parents[f"{side}_foot"] = f"{side}_lower_leg"
        parents[f"{side}_toes"] = f"{side}_foot"
    return parents


CANONICAL_PARENTS: dict[str, str | None] = _canonical_parents()
CANONICAL_JOINTS: tuple[str, ...] = tuple(CANONICAL_PARENTS)
# What a retarget cannot do without: the trunk, the head and both limbs down to hand and foot.
REQUIRED_JOINTS: tuple[str, ...] = ("hips", "spine", "head") + tuple(
    name
    for part in ("upper_arm", "lower_arm", "hand", "upper_leg", "lower_leg", "foot")
    for name in _sided(part)
)
OPTIONAL_JOINTS: tuple[str, ...] = tuple(j for j in CANONICAL_JOINTS if j not in REQUIRED_JOINTS)
# Canonical joints whose rig bones an ordered chain may extend (rig bones from the first
# to the last of the segment, root side first).
SPINE_SEGMENT: tuple[str, ...] = ("spine", "chest", "upper_chest")
NECK_SEGMENT: tuple[str, ...] = ("neck",)


@dataclass(frozen=True)
class BoneMapping:
    """Which bone of one rig plays each canonical joint.

    bones: canonical joint -> rig bone name (only the joints the rig has);
    spine_chain / neck_chain: every rig bone from the first spine (neck) bone to the
    last one before the neck (head), root side first; empty when not known (the
    mapped canonical bones are then the chain). A retargeter distributes the
    canonical spine/neck rotation along these chains.
    Raises ValueError on unknown canonical names, a rig bone used twice, or chains
    that do not contain the mapped segment bones in order.
    """

    bones: Mapping[str, str]
    spine_chain: tuple[str, ...] = ()
    neck_chain: tuple[str, ...] = ()
    name: str = ""
    __hash__ = None  # bones is a mapping: compared by value, not hashable

    def __post_init__(self) -> None:
        bones = dict(self.bones)
        unknown = sorted(set(bones) - set(CANONICAL_PARENTS))
        if unknown:
            raise ValueError(f"unknown canonical joint(s): {', '.join(unknown)}")
        for joint, bone in bones.items():
            if not isinstance(bone, str) or not bone:
                raise ValueError(f"canonical joint '{joint}' needs a non-empty bone name")
        seen: dict[str, str] = {}
        for joint in CANONICAL_JOINTS:
            bone = bones.get(joint)
            if bone is None:
                continue
            if bone in seen:
                raise ValueError(f"bone '{bone}' is mapped to both '{seen[bone]}' and '{joint}'")
            seen[bone] = joint
        ordered = {j: bones[j] for j in CANONICAL_JOINTS if j in bones}
        object.__setattr__(self, "bones", MappingProxyType(ordered))
        object.__setattr__(self, "spine_chain", tuple(self.spine_chain))
        object.__setattr__(self, "neck_chain", tuple(self.neck_chain))
        for chain_name, chain, segment in (
            ("spine_chain", self.spine_chain, SPINE_SEGMENT),
            ("neck_chain", self.neck_chain, NECK_SEGMENT),
        ):
            self._check_chain(chain_name, chain, segment, seen)
        shared = sorted(set(self.spine_chain) & set(self.neck_chain))
        if shared:
            raise ValueError(f"neck_chain repeats spine_chain bone(s): {', '.join(shared)}")

    def _check_chain(self, chain_name: str, chain: tuple[str, ...], segment: tuple[str, ...],
                     owner: dict[str, str]) -> None:
        if not chain:
            return
        if len(set(chain)) != len(chain):
            raise ValueError(f"{chain_name} lists a bone twice")
        for bone in chain:
            if bone in owner and owner[bone] not in segment:
                raise ValueError(f"{chain_name} bone '{bone}' is already mapped to '{owner[bone]}'")
        positions = [chain.index(self.bones[j]) if self.bones[j] in chain else None
                     for j in segment if j in self.bones]
        if any(p is None for p in positions):
            raise ValueError(f"{chain_name} must contain the bones mapped to {', '.join(segment)}")
        if positions != sorted(positions):
            raise ValueError(f"{chain_name} must list the bones of {', '.join(segment)} root side first")

    def missing_required(self) -> tuple[str, ...]:
        """Required canonical joints this mapping leaves out, in canonical order."""
        return tuple(j for j in REQUIRED_JOINTS if j not in self.bones)

    def missing_in_rig(self, bone_names: set[str] | list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Mapped or chained rig bones that a rig with these bone names lacks."""
        present = set(bone_names)
        used = list(self.bones.values()) + list(self.spine_chain) + list(self.neck_chain)
        return tuple(dict.fromkeys(b for b in used if b not in present))

    def check_fits(self, bone_names: set[str] | list[str] | tuple[str, ...], rig: str) -> None:
        """AvatarCaptureError, naming rig and the bones or joints, unless this mapping only names
        bones the rig has and maps every required joint."""
        label = f"the bone mapping '{self.name}'" if self.name else "the bone mapping"
        absent = self.missing_in_rig(bone_names)
        if absent:
            raise AvatarCaptureError(f"{rig}: {label} names bone(s) this rig lacks: {', '.join(absent[:6])}"
                                     + (" ..." if len(absent) > 6 else ""))
        if self.missing_required():
            raise AvatarCaptureError(f"{rig}: {label} leaves required joint(s) unmapped: "
                                     + ", ".join(self.missing_required()))

    def to_dict(self) -> dict:
        return {
            "format": MAPPING_FORMAT,
            "name": self.name,
            "bones": dict(self.bones),
            "spine_chain": list(self.spine_chain),
            "neck_chain": list(self.neck_chain),
        }


MAPPING_FORMAT = "avatar_capture.bone_mapping/1"


def save_mapping(mapping: BoneMapping, path: str | Path) -> Path:
    """Write mapping as JSON at path, atomically (the old file stays on any failure)."""
    path = Path(path)
    with atomic_output(path) as staged:
        staged.write_text(json.dumps(mapping.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def load_mapping(path: str | Path) -> BoneMapping:
    """Read a mapping written by save_mapping (or by hand); FileFormatError naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError(path, "no such bone mapping file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(path, f"cannot read the bone mapping ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise FileFormatError(path, "a bone mapping must be a JSON object")
    if data.get("format", MAPPING_FORMAT) != MAPPING_FORMAT:
        raise FileFormatError(path, f"unsupported format {data.get('format')!r}, expected {MAPPING_FORMAT}",
                              "format")
    bones = data.get("bones")
    if not isinstance(bones, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in bones.items()):
        raise FileFormatError(path, "needs an object of canonical joint -> bone name strings", "bones")
    unknown = sorted(set(bones) - set(CANONICAL_PARENTS))
    if unknown:
        raise FileFormatError(path, f"unknown canonical joint(s): {', '.join(unknown)}", "bones")
    chains = {}
    for key in ("spine_chain", "neck_chain"):
        chain = data.get(key, [])
        if not isinstance(chain, list) or not all(isinstance(b, str) for b in chain):
            raise FileFormatError(path, "needs a list of bone names", key)
        chains[key] = tuple(chain)
    name = data.get("name", "")
    if not isinstance(name, str):
        raise FileFormatError(path, "needs a string", "name")
    try:
        BoneMapping(bones=bones)
    except ValueError as exc:
        raise FileFormatError(path, str(exc), "bones") from None
    for key, chain in chains.items():
        try:
            BoneMapping(bones=bones, **{key: chain})
        except ValueError as exc:
            raise FileFormatError(path, str(exc), key) from None
    try:
        return BoneMapping(bones=bones, name=name, **chains)
    except ValueError as exc:
        raise FileFormatError(path, str(exc), "neck_chain") from None


# Landmark (core.landmarks names, sides expanded to left_/right_) -> the canonical joint whose head it is.
LANDMARK_JOINTS = {"pelvis": "hips", "neck": "neck", "shoulder": "upper_arm", "elbow": "lower_arm",
                   "wrist": "hand", "hip": "upper_leg", "knee": "lower_leg", "ankle": "foot", "toe": "toes"}


def landmark_bones(mapping: BoneMapping) -> dict[str, str]:
    """Landmark name -> rig bone whose head gives it, for the landmarks this mapping's joints cover."""
    found = {}
    for landmark, joint in LANDMARK_JOINTS.items():
        pairs = [(landmark, joint)] if landmark in ("pelvis", "neck") else \
            [(f"{side}_{landmark}", f"{side}_{joint}") for side in SIDES]
        for name, canonical in pairs:
            if canonical in mapping.bones:
                found[name] = mapping.bones[canonical]
    return found

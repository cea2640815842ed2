"""Guess a BoneMapping for a rig from its bone names and hierarchy.

Why: users bring rigs we have no preset for, and renamed or re-prefixed copies of
rigs we know. A preset that matches (names compared without case, namespaces and
the usual DEF-/ORG-/MCH- prefixes) is taken first; joints it cannot place, or the
whole rig when no preset fits, are found from the hierarchy: the hips are where
legs and spine branch, the spine runs from the hips to the head, arms and legs are
the mirrored long branches. Along each limb chain, names (thigh, knee, wrist ...)
pick the bones and the chain order fills in what the names leave open, so one
bone renamed to nonsense is still placed by its neighbours. The result is shown
to the user for correction, so the report says how each joint was found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import AvatarCaptureError
from .humanoid import OPTIONAL_JOINTS, REQUIRED_JOINTS, BoneMapping
from .presets import PRESETS

# A preset is taken when at least this share of its bones is found in the rig.
PRESET_MIN_SCORE = 0.8
_PREFIX = re.compile(r"^(def|org|mch)[-_.]", re.IGNORECASE)
# Preferred rig bone when several normalise to the same name: deform bones first.
_PREFIX_RANK = {"def": 0, "": 1, "org": 2, "mch": 3}

# Keyword -> (role, strength), tried in order on the side-free, lower-case, alphanumeric name;
# the first keyword found decides. Finger words come before "hand" ("LeftHandIndex1").
_KEYWORDS: tuple[tuple[str, str, float], ...] = (
    ("thumb", "finger", 2.0), ("index", "finger", 2.0), ("middle", "finger", 2.0),
    ("ring", "finger", 2.0), ("pinky", "finger", 2.0), ("little", "finger", 2.0),
    ("finger", "finger", 2.0), ("metacarpal", "finger", 2.0), ("palm", "finger", 2.0),
    ("tail", "tail", 2.0),
    ("toe", "toes", 2.0), ("ball", "toes", 2.0),
    ("foot", "foot", 2.0), ("ankle", "foot", 2.0),
    ("thigh", "upper_leg", 2.0), ("upleg", "upper_leg", 2.0), ("upperleg", "upper_leg", 2.0),
    ("calf", "lower_leg", 2.0), ("shin", "lower_leg", 2.0), ("knee", "lower_leg", 2.0),
    ("lowerleg", "lower_leg", 2.0), ("leg", "lower_leg", 1.0),
    ("forearm", "lower_arm", 2.0), ("lowerarm", "lower_arm", 2.0), ("elbow", "lower_arm", 2.0),
    ("upperarm", "upper_arm", 2.0), ("hand", "hand", 2.0), ("wrist", "hand", 2.0),
    ("clavicle", "shoulder", 2.0), ("collar", "shoulder", 2.0), ("shoulder", "shoulder", 1.0),
    ("arm", "upper_arm", 1.0),
    ("pelvis", "hips", 1.0), ("hip", "hip", 1.0),
    ("head", "head", 2.0), ("neck", "neck", 2.0),
    ("spine", "spine", 1.0), ("chest", "spine", 1.0), ("torso", "spine", 1.0), ("back", "spine", 1.0),
    ("abdomen", "spine", 1.0),
)
_ARM_ROLES = ("shoulder", "upper_arm", "lower_arm", "hand")
_LEG_ROLES = ("upper_leg", "lower_leg", "foot", "toes")
_OPTIONAL_LIMB_ROLES = {"shoulder", "toes"}
# "hip" alone names the hips; a sided one the thigh in many rigs ("LeftHip") and a pelvis bone in
# others ("LHipJoint"), so only weakly.
_HIP_AS = {False: ("hips", 1.0), True: ("upper_leg", 1.0)}
_END_WORDS = ("end", "nub", "top", "site", "tip")
_CONTRADICTION = -5.0


@dataclass(frozen=True)
class AutoMapReport:
    """How auto_map found each canonical joint, for the user to review.

    preset: the preset taken (None when none matched well enough); preset_score:
    its share of bones found in the rig; by_preset / by_name / by_topology: the
    canonical joints placed each way; missing_optional: optional joints not found
    (a missing required joint is an error instead).
    """

    preset: str | None
    preset_score: float
    by_preset: tuple[str, ...]
    by_name: tuple[str, ...]
    by_topology: tuple[str, ...]
    missing_optional: tuple[str, ...]


def normalise(name: str) -> str:
    """Name compared across rigs: no namespace ("mixamorig:", "rig:"), no DEF-/ORG-/MCH-, lower case."""
    return _PREFIX.sub("", name.rsplit(":", 1)[-1]).lower()


def auto_map(bone_names: Sequence[str], parents: Sequence) -> tuple[BoneMapping, AutoMapReport]:
    """Map a rig's bones onto the canonical humanoid.

    bone_names (B,) the rig's bone names; parents (B,) each bone's parent as a name
    (None or "" for roots) or as an index into bone_names (-1 for roots); any order.
    Raises AvatarCaptureError naming the missing required joints when the rig is
    not a recognisable humanoid.
    """
    tree = _Tree(list(bone_names), parents)
    preset_name, score, found = _best_preset(tree)
    how: dict[str, str] = {joint: "preset" for joint in found}
    bones = dict(found)
    guessed = _Heuristics(tree).guess()
    used = set(bones.values())
    # With a preset, guesses only fill the joints it names but whose bones were renamed.
    wanted = set(PRESETS[preset_name].bones) | set(REQUIRED_JOINTS) if found else set(guessed)
    for joint, (bone, way) in guessed.items():
        if joint in wanted and joint not in bones and bone not in used:
            bones[joint] = bone
            used.add(bone)
            how[joint] = way
    missing = tuple(j for j in REQUIRED_JOINTS if j not in bones)
    if missing:
        raise AvatarCaptureError(
            "no humanoid skeleton recognised in this rig: could not find "
            + ", ".join(missing)
            + (f" (closest preset '{preset_name}' matched {score:.0%} of its bones)" if preset_name else "")
        )
    spine_chain, neck_chain = _chains(tree, bones)
    mapping = BoneMapping(bones=bones, spine_chain=spine_chain, neck_chain=neck_chain,
                          name=preset_name or "auto")
    report = AutoMapReport(
        preset=preset_name if found else None,
        preset_score=score,
        by_preset=tuple(j for j in mapping.bones if how[j] == "preset"),
        by_name=tuple(j for j in mapping.bones if how[j] == "name"),
        by_topology=tuple(j for j in mapping.bones if how[j] == "topology"),
        missing_optional=tuple(j for j in OPTIONAL_JOINTS if j not in mapping.bones),
    )
    return mapping, report


class _Tree:
    """A rig's hierarchy: children lists, depths and subtree heights by bone index."""

    def __init__(self, names: list[str], parents: Sequence) -> None:
        if len(names) != len(parents):
            raise AvatarCaptureError(f"{len(names)} bone names but {len(parents)} parents")
        if len(set(names)) != len(names):
            raise AvatarCaptureError("the rig has two bones with the same name")
        self.names = names
        index = {n: i for i, n in enumerate(names)}
        self.parent: list[int] = []
        for name, parent in zip(names, parents):
            if parent is None or (isinstance(parent, str) and parent == ""):
                self.parent.append(-1)
            elif isinstance(parent, str):
                if parent not in index:
                    raise AvatarCaptureError(f"bone '{name}' has parent '{parent}', which is not in the rig")
                self.parent.append(index[parent])
            elif -1 <= int(parent) < len(names) and int(parent) != len(self.parent):
                self.parent.append(int(parent))
            else:
                raise AvatarCaptureError(f"bone '{name}' has parent index {parent}, outside the rig")
        self.children: list[list[int]] = [[] for _ in names]
        for i, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(i)
        self.depth = [self._depth(i) for i in range(len(names))]
        self.height = [0] * len(names)
        for i in sorted(range(len(names)), key=lambda k: -self.depth[k]):
            self.height[i] = 1 + max((self.height[c] for c in self.children[i]), default=0)
        self.norm = [normalise(n) for n in names]
        self.side = [_side(n) for n in names]
        self.roles = [_roles(n, s) for n, s in zip(names, self.side)]

    def _depth(self, i: int) -> int:
        depth, seen = 0, set()
        while self.parent[i] >= 0:
            if i in seen:
                raise AvatarCaptureError(f"the rig's hierarchy loops at bone '{self.names[i]}'")
            seen.add(i)
            i = self.parent[i]
            depth += 1
        return depth

    def subtree(self, i: int) -> list[int]:
        out, stack = [], [i]
        while stack:
            k = stack.pop()
            out.append(k)
            stack.extend(self.children[k])
        return out

    def path_up(self, i: int, stop: int) -> list[int]:
        """Bones from stop's child down to i (root side first); empty if i is not below stop."""
        path = []
        while i >= 0 and i != stop:
            path.append(i)
            i = self.parent[i]
        return path[::-1] if i == stop else []


def _side(name: str) -> str | None:
    """'left', 'right' or None from .L/_l/-L suffixes, L_/l. prefixes, Left/Right words, LThumb."""
    base = name.rsplit(":", 1)[-1]
    base = _PREFIX.sub("", base)
    low = base.lower()
    if "left" in low:
        return "left"
    if "right" in low:
        return "right"
    match = re.search(r"[._\- ]([lr])(\.\d+)?$", low) or re.match(r"^([lr])[._\- ]", low)
    if match:
        return "left" if match.group(1) == "l" else "right"
    match = re.match(r"^([LR])(?=[A-Z])", base)
    if match:
        return "left" if match.group(1) == "L" else "right"
    compact = re.sub(r"[^a-z]", "", low)
    if compact[:1] in ("l", "r") and any(compact[1:].startswith(k) for k, _, _ in _KEYWORDS):
        if not any(compact.startswith(k) for k, _, _ in _KEYWORDS):
            return "left" if compact[0] == "l" else "right"
    return None


def _side_free(name: str) -> str:
    low = _PREFIX.sub("", name.rsplit(":", 1)[-1]).lower()
    low = re.sub(r"left|right", "", low)
    low = re.sub(r"[._\- ][lr](\.\d+)?$", "", low)
    low = re.sub(r"^[lr][._\- ]", "", low)
    return re.sub(r"[^a-z]", "", low)


def _roles(name: str, side: str | None) -> dict[str, float]:
    """Role -> strength suggested by the name (at most one role)."""
    words = _side_free(name)
    if side and re.match(r"^[lr](?=[a-z])", words) and not any(words.startswith(k) for k, _, _ in _KEYWORDS):
        words = words[1:]
    for keyword, role, strength in _KEYWORDS:
        if keyword in words:
            if role == "hip":
                role, strength = _HIP_AS[side is not None]
            return {role: strength}
    return {}


def _stem(name: str) -> str:
    return re.sub(r"\d+", "", _side_free(name))


def _best_preset(tree: _Tree) -> tuple[str | None, float, dict[str, str]]:
    """The preset with the largest share of its bones in the rig, and its joints resolved to rig bones."""
    by_norm: dict[str, list[str]] = {}
    for name, norm in zip(tree.names, tree.norm):
        by_norm.setdefault(norm, []).append(name)
    exact = set(tree.names)

    def resolve(bone: str) -> str | None:
        if bone in exact:
            return bone
        candidates = by_norm.get(normalise(bone), [])
        return min(candidates, key=_prefix_rank, default=None)

    best: tuple[tuple[float, int, int], str | None, dict[str, str]] = ((0.0, 0, 0), None, {})
    for name, preset in PRESETS.items():
        found = {joint: resolve(bone) for joint, bone in preset.bones.items()}
        found = {j: b for j, b in found.items() if b is not None}
        key = (len(found) / len(preset.bones), len(found), sum(preset.bones[j] == b for j, b in found.items()))
        if key > best[0]:
            best = (key, name, found)
    (score, _, _), name, found = best
    if score < PRESET_MIN_SCORE:
        return name, score, {}
    return name, score, found


def _prefix_rank(bone: str) -> int:
    match = _PREFIX.match(bone.rsplit(":", 1)[-1])
    return _PREFIX_RANK[match.group(1).lower()] if match else _PREFIX_RANK[""]


def _chains(tree: _Tree, bones: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """spine_chain and neck_chain as rig bones: from hips to the neck and from the neck to the head."""
    index = {n: i for i, n in enumerate(tree.names)}
    hips, head = index[bones["hips"]], index[bones["head"]]
    path = [tree.names[i] for i in tree.path_up(head, hips)]
    if not path or path[-1] != bones["head"]:
        return (), ()
    path = path[:-1]
    spine_bones = [bones[j] for j in ("spine", "chest", "upper_chest") if j in bones]
    neck = bones.get("neck")
    if not all(b in path for b in spine_bones) or (neck and neck not in path):
        return (), ()
    top = path.index(neck) if neck else len(path)
    spine_chain = tuple(path[path.index(spine_bones[0]):top])
    neck_chain = tuple(path[top:]) if neck else ()
    if not set(spine_bones) <= set(spine_chain):
        return (), ()
    return (spine_chain if len(spine_chain) > 1 else (), neck_chain if len(neck_chain) > 1 else ())


class _Heuristics:
    """Find the canonical joints from the hierarchy, using names along each chain."""

    def __init__(self, tree: _Tree) -> None:
        self.tree = tree
        self.found: dict[str, tuple[str, str]] = {}

    def guess(self) -> dict[str, tuple[str, str]]:
        """Canonical joint -> (rig bone, "name" or "topology"); as much as can be found."""
        tree = self.tree
        hips = self._hips()
        if hips is None:
            return {}
        self._put("hips", hips, "hips")
        branches = self._long_branches(hips)
        spine_start = self._spine_branch(branches)
        if spine_start is None:
            return self.found
        for side in ("left", "right"):
            leg = self._pick_side_branch(branches, side, _LEG_ROLES)
            if leg is not None:
                self._limb(leg, side, _LEG_ROLES)
        path = self._spine_path(spine_start)
        arms_at = None
        for position, bone in enumerate(path):
            sided = [c for c in tree.children[bone]
                     if self._branch_side(c) and tree.height[c] >= 3 and c not in path]
            if {self._branch_side(c) for c in sided} >= {"left", "right"}:
                arms_at = position
                for side in ("left", "right"):
                    arm = self._pick_side_branch(sided, side, _ARM_ROLES)
                    if arm is not None:
                        self._limb(arm, side, _ARM_ROLES)
                break
        if arms_at is None:
            return self.found
        trunk = path[: arms_at + 1]
        self._put("spine", trunk[0], "spine")
        if len(trunk) >= 2:
            self._put("upper_chest", trunk[-1], "spine")
        if len(trunk) >= 3:
            self._put("chest", trunk[len(trunk) // 2], "spine")
        above = path[arms_at + 1:]
        head_named = [b for b in above if "head" in tree.roles[b]]
        if head_named:
            head = head_named[0]
        elif len(above) >= 2:
            head = above[1]
        elif above:
            head = above[0]
        else:
            return self.found
        self._put("head", head, "head")
        neck = above[: above.index(head)]
        if neck:
            self._put("neck", neck[0], "neck")
        return self.found

    def _put(self, joint: str, bone: int, role: str) -> None:
        way = "name" if role in self.tree.roles[bone] else "topology"
        self.found[joint] = (self.tree.names[bone], way)

    def _hips(self) -> int | None:
        """The shallowest bone where three long branches (legs and spine) start; else two."""
        tree = self.tree
        order = sorted(range(len(tree.names)), key=lambda i: tree.depth[i])
        for wanted in (3, 2):
            for i in order:
                if len(self._long_branches(i)) >= wanted and self._has_mirrored(i):
                    return i
        return None

    def _long_branches(self, bone: int) -> list[int]:
        """Children of bone that start chains of at least three bones."""
        return [c for c in self.tree.children[bone] if self.tree.height[c] >= 3]

    def _has_mirrored(self, bone: int) -> bool:
        """Whether bone's subtree holds left and right long branches (legs) besides one more branch."""
        tree = self.tree
        sides = {tree.side[c] for c in tree.subtree(bone) if tree.side[c] and tree.height[c] >= 3}
        return sides >= {"left", "right"}

    def _branch_side(self, bone: int) -> str | None:
        """The bone's side, or for an unsided bone the one side all its sided descendants share."""
        tree = self.tree
        if tree.side[bone]:
            return tree.side[bone]
        sides = {tree.side[k] for k in tree.subtree(bone)} - {None}
        return sides.pop() if len(sides) == 1 else None

    def _spine_branch(self, branches: list[int]) -> int | None:
        """The unsided long branch holding mirrored sub-branches (the arms), preferring one with a head."""
        tree = self.tree
        candidates = [b for b in branches if self._branch_side(b) is None and self._has_mirrored(b)]
        if not candidates:
            return None
        return max(candidates, key=lambda b: (any("head" in tree.roles[k] for k in tree.subtree(b)),
                                              tree.height[b]))

    def _spine_path(self, start: int) -> list[int]:
        """From start up the unsided chain: to the head-named bone when there is one, else the tallest."""
        tree = self.tree
        heads = [k for k in tree.subtree(start) if "head" in tree.roles[k] and tree.side[k] is None
                 and not any(w in tree.norm[k] for w in _END_WORDS)]
        if heads:
            head = min(heads, key=lambda k: tree.depth[k])
            return [start] + tree.path_up(head, start)
        path, bone = [start], start
        while True:
            unsided = [c for c in tree.children[bone] if tree.side[c] is None]
            if not unsided:
                return path
            bone = max(unsided, key=lambda c: tree.height[c])
            path.append(bone)

    def _pick_side_branch(self, branches: list[int], side: str, roles: tuple[str, ...]) -> int | None:
        """Among long branches, or unsided ones leading to them, the one on this side with most evidence."""
        tree = self.tree
        candidates = [b for b in branches if self._branch_side(b) == side]
        for b in branches:
            if self._branch_side(b) is None:
                candidates += [c for c in self._long_branches(b) if self._branch_side(c) == side]
        if not candidates:
            return None

        def evidence(b: int) -> tuple[float, int]:
            score = sum(max((tree.roles[k].get(r, 0.0) for r in roles), default=0.0) for k in tree.subtree(b))
            return score, tree.height[b]

        return max(candidates, key=evidence)

    def _limb(self, start: int, side: str, roles: tuple[str, ...]) -> None:
        """Place roles (root side first) along the main chain from start, by names and chain order."""
        tree = self.tree
        chain, bone = [start], start
        while tree.children[bone]:
            bone = max(tree.children[bone], key=lambda c: (tree.height[c], self._score(c, roles)))
            chain.append(bone)
        other = _LEG_ROLES if roles is _ARM_ROLES else _ARM_ROLES
        anchor = self._anchor(chain, roles)
        anchor_role = roles.index("hand" if roles is _ARM_ROLES else "foot")
        scores = np.zeros((len(roles), len(chain)))
        for p, b in enumerate(chain):
            named = tree.roles[b]
            contradiction = any(r in named for r in other + ("tail",))
            for k, role in enumerate(roles):
                s = named.get(role, 0.0)
                if s and p > 0 and _stem(tree.names[chain[p - 1]]) == _stem(tree.names[b]) \
                        and role in tree.roles[chain[p - 1]]:
                    s -= 0.5  # a twist segment after the bone that carries the name
                if contradiction:
                    s = _CONTRADICTION
                if anchor is not None:
                    s += 0.2 if p == anchor - (anchor_role - k) else 0.0
                scores[k, p] = s
        best = _assign(scores, [r in _OPTIONAL_LIMB_ROLES for r in roles])
        for k, p in best.items():
            if scores[k, p] > _CONTRADICTION / 2:
                joint = f"{side}_{roles[k]}"
                self._put(joint, chain[p], roles[k])

    def _score(self, bone: int, roles: tuple[str, ...]) -> float:
        return max((self.tree.roles[bone].get(r, 0.0) for r in roles), default=0.0)

    def _anchor(self, chain: list[int], roles: tuple[str, ...]) -> int | None:
        """Chain position of the hand (where the fingers start) or of the foot (before the toes)."""
        tree = self.tree
        if roles is _ARM_ROLES:
            # Fingers are branches of two or more bones; twist bones are single leaves.
            for wanted in (2, 1):
                for p, b in enumerate(chain[2:], start=2):
                    if len(tree.children[b]) >= 2 and \
                            sum(tree.height[c] >= 2 for c in tree.children[b]) >= wanted:
                        return p
            return None
        for p, b in enumerate(chain[2:], start=2):
            if sum(tree.height[c] >= 2 for c in tree.children[b]) >= 2:
                return p  # a foot with several toe chains
        ends = [p for p, b in enumerate(chain) if any(w in tree.norm[b] for w in _END_WORDS) and p > 0]
        last = ends[0] - 1 if ends else len(chain) - 1
        return last - 1 if last >= 3 else last


def _assign(scores: np.ndarray, optional: list[bool]) -> dict[int, int]:
    """Roles (rows) to strictly increasing chain positions (columns) maximising the total score.

    Optional roles may be left out; returns role row -> chain position.
    """
    roles, length = scores.shape
    memo: dict[tuple[int, int], tuple[float, tuple[tuple[int, int], ...]]] = {}

    def solve(k: int, start: int) -> tuple[float, tuple[tuple[int, int], ...]]:
        """Best total and placements for roles k.. on positions start.."""
        if k == roles:
            return 0.0, ()
        if (k, start) not in memo:
            best: tuple[float, tuple[tuple[int, int], ...]] = solve(k + 1, start) if optional[k] else (-np.inf, ())
            for p in range(start, length):
                rest, placed = solve(k + 1, p + 1)
                if scores[k, p] + rest > best[0]:
                    best = (scores[k, p] + rest, ((k, p),) + placed)
            memo[(k, start)] = best
        return memo[(k, start)]

    return dict(solve(0, 0)[1])

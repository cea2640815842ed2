"""Read BVH motion capture files and pose their skeletons in Blender's world frame.

Why here: the benchmark drives the body with real mocap (the CMU clips), and
retargeting reads users' BVH files; both need the file's skeleton, its motion
and per-frame world joint positions and rotations, without Blender.

Conventions of the format, as read here:
  * a joint's local rotation is the product of its rotation channels in the
    order they are listed ("Zrotation Yrotation Xrotation" -> Rz @ Ry @ Rx),
    degrees, acting on column vectors in the parent's frame;
  * a joint with position channels takes its local translation from them (they
    replace its OFFSET, as Blender's importer does); other joints sit at OFFSET;
  * world rotation = parent world rotation @ local rotation; world position =
    parent world position + parent world rotation @ local translation.
BVH files are Y up with the character facing +Z (its left is +X). Blender's
world is Z up, -Y forward, metres: file (x, y, z) maps to (x, -z, y) times the
size of a file unit in metres. The unit is not stored in the file, so by default
it is guessed from the skeleton's rest height (see unit_scale), or given; files
with other axes (Z-up exporters) pass their own axes to world_pose.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FileFormatError

# File axes -> Blender axes: (x, y, z) -> (x, -z, y); a proper rotation, so rotations map as C R C^T.
BVH_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
CHANNEL_NAMES = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
# Candidate sizes of one file unit in metres, for unit_scale. CMU's converted files use the ASF
# unit, 1/0.45 inch (a 1.7 m actor is ~30 units tall).
UNIT_METRES = {"metre": 1.0, "centimetre": 0.01, "millimetre": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
TYPICAL_HEIGHT_METRES = 1.7


@dataclass(frozen=True)
class BvhMotion:
    """A BVH file's skeleton and motion, in the file's own axes and units.

    joint_names (J,) in file order (parents before children; End Sites are not joints);
    parents (J,) index of each joint's parent, -1 for the root; offsets (J, 3) from the
    parent in the parent's frame; channels (J,) tuple of channel names per joint, in
    file order; end_sites (J, 3) the End Site offset of a joint that has one, NaN
    otherwise; motion (F, C) every frame's channel values (degrees for rotations),
    columns in the file's channel order; frame_time seconds per frame.
    """

    path: str
    joint_names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    end_sites: np.ndarray
    motion: np.ndarray
    frame_time: float

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def frame_count(self) -> int:
        return len(self.motion)

    def channel_columns(self, joint: int) -> tuple[int, ...]:
        """Columns of motion holding `joint`'s channels."""
        start = sum(len(c) for c in self.channels[:joint])
        return tuple(range(start, start + len(self.channels[joint])))


@dataclass(frozen=True)
class BvhPose:
    """Posed skeleton per frame in Blender's world frame (metres, Z up, -Y forward).

    positions (F, J, 3) joint positions; rotations (F, J, 3, 3) joint world
    rotations (the joint's frame relative to the world; at rest, identity for every
    joint, as BVH rest frames are aligned with the file axes); end_sites (F, J, 3)
    world positions of the End Sites (NaN for joints without one).
    """

    positions: np.ndarray
    rotations: np.ndarray
    end_sites: np.ndarray


def read_bvh(path: str | Path) -> BvhMotion:
    """Parse a BVH file; FileFormatError names the file and the problem (field = the section or keyword)."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FileFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return _Parser(path, text).parse()


def unit_scale(bvh: BvhMotion, axes: np.ndarray = BVH_TO_BLENDER) -> float:
    """Metres per file unit: the UNIT_METRES candidate giving the rest skeleton the most human height.

    The rest height is the vertical extent (along the file direction that axes
    maps to Blender's Z) of the joints and End Sites with every rotation at zero;
    the candidate whose height in metres is nearest to TYPICAL_HEIGHT_METRES (by
    ratio) wins. Pass an explicit scale to world_pose for skeletons that are not
    adult humans.
    """
    positions, ends = _rest_positions(bvh)
    points = np.concatenate([positions, ends[~np.isnan(ends[:, 0])]])
    heights = points @ np.asarray(axes, dtype=np.float64)[2]
    extent = float(heights.max() - heights.min())
    if not extent > 0:
        raise FileFormatError(bvh.path, "the rest skeleton has no height, so its unit cannot be guessed", "OFFSET")
    return min(UNIT_METRES.values(), key=lambda unit: abs(np.log(extent * unit / TYPICAL_HEIGHT_METRES)))


def local_rotations(bvh: BvhMotion) -> np.ndarray:
    """Local rotation matrices (F, J, 3, 3) of every joint, in the file's axes."""
    frames = bvh.frame_count
    rotations = np.broadcast_to(np.eye(3), (frames, len(bvh.joint_names), 3, 3)).copy()
    for joint, names in enumerate(bvh.channels):
        for column, name in zip(bvh.channel_columns(joint), names):
            if name.endswith("rotation"):
                rotations[:, joint] = rotations[:, joint] @ _axis_rotation(name[0], bvh.motion[:, column])
    return rotations


def world_pose(bvh: BvhMotion, scale: float | None = None, axes: np.ndarray = BVH_TO_BLENDER) -> BvhPose:
    """Every frame's joint positions and rotations in Blender's world frame.

    scale: metres per file unit; None guesses it with unit_scale. axes: the
    rotation (3, 3) taking file axes to Blender's; the default is for the usual
    Y-up, +Z-facing files (give another for Z-up exporters).
    """
    axes = np.asarray(axes, dtype=np.float64)
    scale = unit_scale(bvh, axes) if scale is None else float(scale)
    local = local_rotations(bvh)
    translations = np.broadcast_to(bvh.offsets, (bvh.frame_count, *bvh.offsets.shape)).copy()
    for joint, names in enumerate(bvh.channels):
        for column, name in zip(bvh.channel_columns(joint), names):
            if name.endswith("position"):
                translations[:, joint, "XYZ".index(name[0])] = bvh.motion[:, column]
    rotations = np.empty_like(local)
    positions = np.empty_like(translations)
    for joint, parent in enumerate(bvh.parents):
        if parent < 0:
            rotations[:, joint], positions[:, joint] = local[:, joint], translations[:, joint]
        else:
            rotations[:, joint] = rotations[:, parent] @ local[:, joint]
            positions[:, joint] = positions[:, parent] + np.einsum("fij,fj->fi", rotations[:, parent],
                                                                   translations[:, joint])
    ends = positions + np.einsum("fjik,jk->fji", rotations, np.nan_to_num(bvh.end_sites))
    ends[:, np.isnan(bvh.end_sites[:, 0])] = np.nan
    return BvhPose(
        positions=scale * positions @ axes.T,
        rotations=axes @ rotations @ axes.T,
        end_sites=scale * ends @ axes.T,
    )


def _rest_positions(bvh: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
    """Joint and End Site positions (J, 3) in file units with all rotations zero and joints at their OFFSETs."""
    positions = np.zeros_like(bvh.offsets)
    for joint, parent in enumerate(bvh.parents):
        positions[joint] = bvh.offsets[joint] + (positions[parent] if parent >= 0 else 0.0)
    return positions, positions + bvh.end_sites


def _axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """Rotation matrices (F, 3, 3) about the file's X, Y or Z axis."""
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((len(angle), 3, 3))
    i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
    k = 3 - i - j
    out[:, k, k] = 1.0
    out[:, i, i], out[:, i, j], out[:, j, i], out[:, j, j] = c, -s, s, c
    return out


class _Parser:
    """Token-wise reader of the HIERARCHY section, line-wise reader of MOTION (to name a bad frame)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        parts = re.split(r"^[ \t]*MOTION[ \t]*$", text, maxsplit=1, flags=re.MULTILINE)
        if len(parts) != 2:
            self.fail("no MOTION section", "MOTION")
        head, motion = parts
        self.tokens = head.split()
        self.position = 0
        self.motion_text = motion
        self.names: list[str] = []
        self.parents: list[int] = []
        self.offsets: list[list[float]] = []
        self.channels: list[tuple[str, ...]] = []
        self.end_sites: list[list[float]] = []

    def fail(self, problem: str, field: str | None = None):
        raise FileFormatError(self.path, problem, field)

    def next(self, what: str) -> str:
        if self.position >= len(self.tokens):
            self.fail(f"the hierarchy ends early, expected {what}", "HIERARCHY")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, keyword: str) -> None:
        token = self.next(f"'{keyword}'")
        if token.upper() != keyword.upper():
            self.fail(f"expected '{keyword}', found '{token}'", "HIERARCHY")

    def numbers(self, count: int, field: str) -> list[float]:
        values = []
        for _ in range(count):
            token = self.next(f"a number after {field}")
            try:
                value = float(token)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                self.fail(f"'{token}' is not a number", field)
            values.append(value)
        return values

    def parse(self) -> BvhMotion:
        self.expect("HIERARCHY")
        self.expect("ROOT")
        self.joint(parent=-1)
        if self.position < len(self.tokens):
            token = self.tokens[self.position]
            problem = "several ROOT hierarchies are not supported" if token.upper() == "ROOT" else \
                f"unexpected '{token}' after the hierarchy"
            self.fail(problem, "HIERARCHY")
        motion, frame_time = self.motion(sum(len(c) for c in self.channels))
        return BvhMotion(
            path=str(self.path), joint_names=tuple(self.names), parents=np.array(self.parents, dtype=np.int64),
            offsets=np.array(self.offsets, dtype=np.float64).reshape(-1, 3), channels=tuple(self.channels),
            end_sites=np.array(self.end_sites, dtype=np.float64).reshape(-1, 3), motion=motion,
            frame_time=frame_time,
        )

    def joint(self, parent: int) -> None:
        name = self.next("a joint name")
        if name == "{":
            self.fail("a joint has no name", "JOINT")
        if name in self.names:
            self.fail(f"joint '{name}' appears twice", "JOINT")
        index = len(self.names)
        self.names.append(name)
        self.parents.append(parent)
        self.end_sites.append([np.nan] * 3)
        self.expect("{")
        self.expect("OFFSET")
        self.offsets.append(self.numbers(3, "OFFSET"))
        self.expect("CHANNELS")
        count_token = self.next("the channel count")
        if not count_token.isdigit():
            self.fail(f"channel count '{count_token}' of joint '{name}' is not a whole number", "CHANNELS")
        names = tuple(self.next("a channel name") for _ in range(int(count_token)))
        unknown = [c for c in names if c not in CHANNEL_NAMES]
        if unknown:
            self.fail(f"joint '{name}' has unknown channel '{unknown[0]}' (expected {', '.join(CHANNEL_NAMES)}; "
                      "is the channel count right?)", "CHANNELS")
        if len(set(names)) != len(names):
            self.fail(f"joint '{name}' lists a channel twice", "CHANNELS")
        self.channels.append(names)
        while True:
            token = self.next("'}'")
            keyword = token.upper()
            if token == "}":
                return
            if keyword == "JOINT":
                self.joint(parent=index)
            elif keyword == "END":
                self.expect("Site")
                self.expect("{")
                self.expect("OFFSET")
                if not np.isnan(self.end_sites[index][0]):
                    self.fail(f"joint '{name}' has two End Sites", "End Site")
                self.end_sites[index] = self.numbers(3, "OFFSET")
                self.expect("}")
            elif token in CHANNEL_NAMES:
                self.fail(f"joint '{name}' lists more channels than its count {len(names)}", "CHANNELS")
            else:
                self.fail(f"unexpected '{token}' inside joint '{name}'", "HIERARCHY")

    def motion(self, channel_count: int) -> tuple[np.ndarray, float]:
        lines = iter(self.motion_text.splitlines())
        header: dict[str, str] = {}
        for label in ("Frames", "Frame Time"):
            line = next((line for line in lines if line.strip()), "")
            key, colon, value = line.partition(":")
            if not colon or key.strip().lower() != label.lower():
                self.fail(f"expected '{label}:', found '{line.strip()[:40]}'", label)
            header[label] = value.strip()
        if not header["Frames"].isdigit():
            self.fail(f"frame count '{header['Frames']}' is not a whole number", "Frames")
        frames = int(header["Frames"])
        if frames < 1:
            self.fail("the motion has no frames", "Frames")
        try:
            frame_time = float(header["Frame Time"])
        except ValueError:
            frame_time = float("nan")
        if not (np.isfinite(frame_time) and frame_time > 0):
            self.fail(f"frame time '{header['Frame Time']}' is not a positive number", "Frame Time")
        rows = [line.split() for line in lines if line.strip()]
        if len(rows) < frames:
            self.fail(f"truncated motion: {len(rows)} of {frames} frames", "MOTION")
        if len(rows) > frames:
            self.fail(f"{len(rows)} frames of motion, but the header says {frames}", "Frames")
        for number, row in enumerate(rows):
            if len(row) != channel_count:
                self.fail(f"frame {number} has {len(row)} values, the hierarchy declares {channel_count} channels",
                          "MOTION")
        try:
            motion = np.array(rows, dtype=np.float64).reshape(frames, channel_count)
        except ValueError:
            motion = None
        if motion is None or not np.all(np.isfinite(motion)):
            number, token = next((n, t) for n, row in enumerate(rows) for t in row if not _finite(t))
            self.fail(f"frame {number} has a value that is not a number: '{token}'", "MOTION")
        return motion, frame_time


def _finite(token: str) -> bool:
    try:
        return bool(np.isfinite(float(token)))
    except ValueError:
        return False

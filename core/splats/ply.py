"""The standard 3D Gaussian Splatting PLY file: read any variant people hand us, write the one everyone reads.

Layout (one ``vertex`` element, one row per splat), as the 3DGS reference code writes it:
  x y z                 mean, metres, object frame
  nx ny nz              optional, unused (written as 0 like 3DGS does)
  f_dc_0..2             SH band 0 per RGB channel (Gaussians.sh[:, 0])
  f_rest_0..3(K-1)-1    SH bands 1..degree, channel-major: all R coefficients 1..K-1, then G, then B
  opacity               logit of the opacity
  scale_0..2            natural log of the standard deviations
  rot_0..3              quaternion w, x, y, z (stored as trained: not necessarily unit length)

The reader takes binary little or big endian and ASCII files, any property
types and order, ignores unknown vertex properties and other elements (faces of
a mesh), and rejects what is not a splat cloud with one line naming the file and
the problem. The binary little-endian path maps the vertex block straight into
a numpy array (no per-splat Python), so a 1M-splat degree-3 file reads in a
fraction of a second.

Skinned clouds (project extension, ignored by other tools): extra vertex
properties ``bone_index_0..3`` (int) and ``bone_weight_0..3`` (float) and one
header line ``comment avatar_capture_skin {json}`` holding the bone names,
parents and rest bone-to-object matrices, so a skinned avatar round-trips
exactly. A surface binding is not stored in PLY; use the .npz container.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_output
from ..errors import FileFormatError
from .gaussians import BONES_PER_SPLAT, Gaussians, InvalidGaussians, SplatSkin, check_exportable, make_gaussians, \
    sh_coefficient_count

SKIN_COMMENT = "avatar_capture_skin"
MAX_HEADER_BYTES = 64 * 1024 * 1024  # a skin comment of a large rig is big, but never this big

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}
_BONE_INDEX = tuple(f"bone_index_{i}" for i in range(BONES_PER_SPLAT))
_BONE_WEIGHT = tuple(f"bone_weight_{i}" for i in range(BONES_PER_SPLAT))
_GAUSSIAN_PROPERTIES = ("opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str, str | None]]  # (name, value type, list count type or None)


@dataclass
class _Table:
    """The vertex rows: a plain (N, P) array (one value type) or a structured (N,) record array."""

    names: list[str]
    rows: np.ndarray
    _finite: bool | None = None

    def all_finite(self) -> bool:
        """Quick test that a plain table holds no NaN/inf at all (a float64 sum of floats cannot overflow)."""
        if self._finite is None:
            plain_float = self.rows.dtype.names is None and self.rows.dtype.kind == "f"
            self._finite = plain_float and bool(np.isfinite(self.rows.sum(dtype=np.float64)))
        return self._finite

    def take(self, keys: list[str], dtype: type = np.float32) -> np.ndarray:
        """Columns ``keys`` as one (N, len(keys)) array of dtype (a view where they are adjacent)."""
        if self.rows.dtype.names is None:
            columns = [self.names.index(key) for key in keys]
            if columns and columns == list(range(columns[0], columns[0] + len(columns))):  # a view, no gather
                return self.rows[:, columns[0]:columns[0] + len(columns)].astype(dtype, copy=False)
            return self.rows[:, columns].astype(dtype, copy=False)
        out = np.empty((len(self.rows), len(keys)), dtype=dtype)
        for i, key in enumerate(keys):
            out[:, i] = self.rows[key]
        return out


@dataclass
class _Header:
    byte_order: str | None  # '<', '>' or None for ASCII
    elements: list[_Element]
    comments: list[str]
    data_offset: int  # bytes from the start of the file to the first element's data


def read_splats(path: str | Path) -> Gaussians:
    """Read a splat cloud from a 3DGS .ply or the project's .npz container, by file suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return read_ply(path)
    if suffix == ".npz":
        from .container import load_splats

        return load_splats(path)
    raise FileFormatError(path, f"cannot read splats from a '{path.suffix or 'suffix-less'}' file; "
                                "give a 3DGS .ply or an avatar-capture .npz")


def read_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY into Gaussians (float32); FileFormatError names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "file not found")
    try:
        header = _read_header(path)
        vertex = _vertex_element(path, header)
        names = [p[0] for p in vertex.properties]
        _check_splat_properties(path, header, names)
        if vertex.count == 0:
            raise FileFormatError(path, "the file holds 0 splats")
        if any(p[2] is not None for p in vertex.properties):
            raise FileFormatError(path, "the vertex element has list properties; not a 3DGS splat file")
        table = _read_ascii(path, header, vertex) if header.byte_order is None else \
            _read_binary(path, header, vertex)
    except OSError as exc:  # unreadable (permissions, I/O error): still one line naming the file
        raise FileFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return _gaussians_from_table(path, header, table)


def write_ply(g: Gaussians, path: str | Path, *, standard_only: bool = False) -> Path:
    """Write the standard 3DGS layout (binary little endian, atomically).

    With a skin and standard_only=False the bone indices, weights and the skeleton
    go along (see the module docstring); other 3DGS tools ignore them.
    """
    check_exportable(g, path)
    k = g.sh.shape[1]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += list(_GAUSSIAN_PROPERTIES)
    types = ["float"] * len(names)
    comments = []
    skin = None if standard_only else g.skin
    if skin is not None:
        names += list(_BONE_INDEX) + list(_BONE_WEIGHT)
        types += ["int"] * BONES_PER_SPLAT + ["float"] * BONES_PER_SPLAT
        comments.append(f"{SKIN_COMMENT} " + json.dumps({
            "bone_names": list(skin.bone_names), "bone_parents": [int(p) for p in skin.bone_parents],
            "rest_bone_to_object": np.asarray(skin.rest_bone_to_object, np.float64).tolist()},
            separators=(",", ":")))
    rows = np.zeros((g.count, len(names)), dtype="<f4")
    rows[:, 0:3] = g.means
    rows[:, 6:9] = g.sh[:, 0]
    rest_end = 9 + 3 * (k - 1)
    rows[:, 9:rest_end] = g.sh[:, 1:].transpose(0, 2, 1).reshape(g.count, -1)  # channel-major
    rows[:, rest_end] = g.logit_opacities
    rows[:, rest_end + 1:rest_end + 4] = g.log_scales
    rows[:, rest_end + 4:rest_end + 8] = g.rotations
    if skin is not None:
        start = rest_end + 8
        rows.view("<i4")[:, start:start + BONES_PER_SPLAT] = skin.bone_indices
        rows[:, start + BONES_PER_SPLAT:] = skin.bone_weights
    lines = ["ply", "format binary_little_endian 1.0"] + [f"comment {c}" for c in comments]
    lines.append(f"element vertex {g.count}")
    lines += [f"property {t} {n}" for t, n in zip(types, names)]
    lines.append("end_header")
    with atomic_output(path) as target:
        with open(target, "wb") as stream:
            stream.write(("\n".join(lines) + "\n").encode("ascii"))
            rows.tofile(stream)
    return Path(path)


def _read_header(path: Path) -> _Header:
    """Parse the text header up to and including 'end_header'."""
    lines: list[str] = []
    with open(path, "rb") as stream:
        magic = stream.readline(16)
        if magic.rstrip(b"\r\n") != b"ply":
            raise FileFormatError(path, "not a PLY file (it does not start with 'ply')")
        offset = len(magic)
        while True:
            raw = stream.readline()
            if not raw:
                raise FileFormatError(path, "the PLY header has no 'end_header' line (file truncated?)")
            offset += len(raw)
            if offset > MAX_HEADER_BYTES:
                raise FileFormatError(path, "the PLY header is implausibly long (no 'end_header' found)")
            try:
                line = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise FileFormatError(path, "the PLY header holds non-text bytes") from None
            if line == "end_header":
                break
            lines.append(line)
    byte_order: str | None = None
    seen_format = False
    elements: list[_Element] = []
    comments: list[str] = []
    for line in lines:
        words = line.split()
        if not words or words[0] == "obj_info":
            continue
        if words[0] == "comment":
            comments.append(line[len("comment"):].strip())
        elif words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise FileFormatError(path, f"unknown PLY format line '{line}'")
            byte_order, seen_format = _FORMATS[words[1]], True
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise FileFormatError(path, f"malformed PLY element line '{line}'")
            elements.append(_Element(words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise FileFormatError(path, f"PLY property before any element: '{line}'")
            elements[-1].properties.append(_parse_property(path, line, words))
        else:
            raise FileFormatError(path, f"unknown PLY header line '{line}'")
    if not seen_format:
        raise FileFormatError(path, "the PLY header has no 'format' line")
    return _Header(byte_order, elements, comments, offset)


def _parse_property(path: Path, line: str, words: list[str]) -> tuple[str, str, str | None]:
    if len(words) == 3 and words[1] in _PLY_TYPES:
        return words[2], _PLY_TYPES[words[1]], None
    if len(words) == 5 and words[1] == "list" and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES:
        return words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]]
    raise FileFormatError(path, f"malformed or unknown PLY property type: '{line}'")


def _vertex_element(path: Path, header: _Header) -> _Element:
    for element in header.elements:
        if element.name == "vertex":
            return element
    raise FileFormatError(path, "the PLY has no 'vertex' element, so no splats")


def _check_splat_properties(path: Path, header: _Header, names: list[str]) -> None:
    """Say plainly when the PLY is a point cloud or mesh, or its SH bands are not a whole degree."""
    present = set(names)
    if len(present) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise FileFormatError(path, f"the vertex element lists {', '.join(twice)} more than once")
    missing = [n for n in ("x", "y", "z") if n not in present]
    if missing:
        raise FileFormatError(path, f"the vertex element has no {', '.join(missing)} positions")
    missing = [n for n in ("f_dc_0", "f_dc_1", "f_dc_2") + _GAUSSIAN_PROPERTIES if n not in present]
    if missing:
        kind = "mesh" if any(e.name == "face" and e.count for e in header.elements) else "point cloud"
        raise FileFormatError(path, f"a plain {kind}, not 3D Gaussian splats: missing {_name_ranges(missing)}")
    rest = sorted(int(n[7:]) for n in names if n.startswith("f_rest_") and n[7:].isdigit())
    if rest != list(range(len(rest))):
        raise FileFormatError(path, "the f_rest_* properties are not numbered 0, 1, 2, ... without gaps")
    if len(rest) not in {3 * (sh_coefficient_count(d) - 1) for d in range(4)}:
        raise FileFormatError(path, f"{len(rest)} f_rest properties; 3DGS stores 0, 9, 24 or 45 "
                                    "(SH degree 0, 1, 2 or 3)", "f_rest")


def _name_ranges(names: list[str]) -> str:
    """'f_dc_0, f_dc_1, f_dc_2, opacity' -> 'f_dc_0..2, opacity': short messages for long lists."""
    groups: dict[str, list[str]] = {}
    for name in names:
        stem = name.rstrip("0123456789")
        groups.setdefault(stem if stem.endswith("_") else name, []).append(name)
    parts = []
    for stem, members in groups.items():
        parts.append(members[0] if len(members) == 1 else f"{members[0]}..{members[-1][len(stem):]}")
    return ", ".join(parts)


def _read_binary(path: Path, header: _Header, vertex: _Element) -> _Table:
    """The vertex columns of a binary file, mapped without per-splat Python where the layout allows."""
    order = header.byte_order
    offset = header.data_offset
    for element in header.elements:
        if element is vertex:
            break
        offset = _skip_binary_element(path, element, order, offset)
    types = [np.dtype(order + t) for _, t, _ in vertex.properties]
    row_bytes = sum(t.itemsize for t in types)
    available = max(os.path.getsize(path) - offset, 0) // row_bytes
    if available < vertex.count:
        raise FileFormatError(path, f"file truncated: header says {vertex.count} splats, file holds {available}")
    names = [p[0] for p in vertex.properties]
    if len(set(types)) == 1:  # the usual case: one plain (N, P) array, columns picked by position
        table = np.fromfile(path, dtype=types[0], count=vertex.count * len(names), offset=offset)
        return _Table(names, table.reshape(vertex.count, len(names)))
    record = np.dtype([(name, t) for name, t in zip(names, types)])
    return _Table(names, np.fromfile(path, dtype=record, count=vertex.count, offset=offset))


def _skip_binary_element(path: Path, element: _Element, order: str, offset: int) -> int:
    """Byte offset just after an element that precedes the vertices (fixed rows, or walked when it has lists)."""
    if all(p[2] is None for p in element.properties):
        return offset + element.count * sum(np.dtype(t).itemsize for _, t, _ in element.properties)
    with open(path, "rb") as stream:
        stream.seek(offset)
        for _ in range(element.count):
            for _, value_type, count_type in element.properties:
                size = np.dtype(value_type).itemsize
                if count_type is not None:
                    raw = stream.read(np.dtype(count_type).itemsize)
                    if len(raw) < np.dtype(count_type).itemsize:
                        raise FileFormatError(path, f"file truncated inside the '{element.name}' element")
                    length = int(np.frombuffer(raw, dtype=order + count_type)[0])
                    if length < 0:
                        raise FileFormatError(path, f"a negative list length in the '{element.name}' element")
                    size *= length
                stream.seek(size, os.SEEK_CUR)
        return stream.tell()


def _read_ascii(path: Path, header: _Header, vertex: _Element) -> _Table:
    """The vertex columns of an ASCII file (one splat per line)."""
    with open(path, "rb") as stream:
        stream.seek(header.data_offset)
        try:
            lines = [line for line in stream.read().decode("ascii").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise FileFormatError(path, "an ASCII PLY holds non-text bytes after the header") from None
    start = 0
    for element in header.elements:
        if element is vertex:
            break
        start += element.count
    rows = lines[start:start + vertex.count]
    if len(rows) < vertex.count:
        raise FileFormatError(path, f"file truncated: header says {vertex.count} splats, file holds {len(rows)}")
    width = len(vertex.properties)
    tokens = " ".join(rows).split()
    if len(tokens) != vertex.count * width:
        bad = next(i for i, row in enumerate(rows) if len(row.split()) != width)
        raise FileFormatError(path, f"splat {bad} has {len(rows[bad].split())} values; the header "
                                    f"declares {width} properties")
    try:
        table = np.array(tokens, dtype=np.float64).reshape(vertex.count, width)
    except ValueError as exc:
        raise FileFormatError(path, f"a vertex value is not a number ({exc})") from None
    return _Table([p[0] for p in vertex.properties], table)


def _gaussians_from_table(path: Path, header: _Header, table: _Table) -> Gaussians:
    """Assemble and validate the cloud: finite values, non-zero quaternions, the optional skin."""
    names = table.names
    n = len(table.rows)
    rest_count = sum(1 for name in names if name.startswith("f_rest_") and name[7:].isdigit())
    k = rest_count // 3 + 1
    fields = {
        "means": ["x", "y", "z"],
        "sh_dc": ["f_dc_0", "f_dc_1", "f_dc_2"],
        "sh_rest": [f"f_rest_{i}" for i in range(rest_count)],
        "logit_opacities": ["opacity"],
        "log_scales": ["scale_0", "scale_1", "scale_2"],
        "rotations": ["rot_0", "rot_1", "rot_2", "rot_3"],
    }
    arrays = {key: table.take(keys) for key, keys in fields.items()}
    for key, keys in fields.items():
        if table.all_finite() or np.isfinite(arrays[key].sum(dtype=np.float64)):
            continue
        bad = ~np.isfinite(arrays[key])
        if bad.any():
            which = sorted({keys[i] for i in np.nonzero(bad.any(axis=0))[0]}, key=keys.index)
            raise FileFormatError(path, f"{int(bad.any(axis=1).sum())} splat(s) hold NaN or infinite values "
                                        f"in {_name_ranges(which)}", which[0])
    zero = ~np.any(arrays["rotations"] != 0.0, axis=1)
    if zero.any():
        raise FileFormatError(path, f"{int(zero.sum())} splat(s) have a zero rotation quaternion", "rot_0")
    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0] = arrays["sh_dc"]
    sh[:, 1:] = arrays["sh_rest"].reshape(n, 3, k - 1).transpose(0, 2, 1)  # stored channel-major
    skin = _read_skin(path, header, table)
    try:
        return make_gaussians(arrays["means"], arrays["rotations"], arrays["log_scales"],
                              arrays["logit_opacities"][:, 0], sh, skin=skin)
    except InvalidGaussians as exc:
        raise FileFormatError(path, str(exc)) from None


def _read_skin(path: Path, header: _Header, table: _Table) -> SplatSkin | None:
    """The project's skin extension when the file carries it (the comment and all eight properties)."""
    comments = [c for c in header.comments if c.split(maxsplit=1)[0:1] == [SKIN_COMMENT]]
    if not comments:
        return None
    missing = [n for n in _BONE_INDEX + _BONE_WEIGHT if n not in table.names]
    if missing:
        raise FileFormatError(path, f"the skin comment is present but {_name_ranges(missing)} are missing")
    try:
        data = json.loads(comments[0][len(SKIN_COMMENT):])
        bone_names = tuple(str(name) for name in data["bone_names"])
        parents = np.asarray(data["bone_parents"], dtype=np.int32)
        rest = np.asarray(data["rest_bone_to_object"], dtype=np.float64)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(path, f"the '{SKIN_COMMENT}' header comment is malformed ({exc})") from None
    indices = table.take(list(_BONE_INDEX), np.float64)
    if not np.all(np.isfinite(indices)) or np.any(indices != np.round(indices)):
        raise FileFormatError(path, "bone indices must be whole numbers", "bone_index_0")
    weights = table.take(list(_BONE_WEIGHT))
    return SplatSkin(bone_names, parents, rest, indices.astype(np.int32), weights)

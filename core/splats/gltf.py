"""Gaussian splats as glTF binary (.glb) with ``KHR_gaussian_splatting``, and the Khronos validator.

Why glTF: it is the one interchange format web viewers and engines agree on, and
the extension (release-candidate text) stores a cloud as a POINTS primitive whose
attributes any glTF reader can at least show as a coloured point cloud.

What a file holds (pure Python, no bpy: json + one binary buffer):
  POSITION                                  VEC3 float, the means (metres, our object frame)
  KHR_gaussian_splatting:ROTATION           VEC4 float, unit quaternion xyzw (ours are wxyz)
  KHR_gaussian_splatting:SCALE              VEC3 float, LINEAR standard deviations = exp(log_scales)
  KHR_gaussian_splatting:OPACITY            SCALAR float in 0..1 = sigmoid(logit_opacities)
  KHR_gaussian_splatting:SH_DEGREE_l_COEF_n VEC3 float RGB for l = 0..degree, n = 0..2l (m = n - l): our
                                            coefficient k = l*l + n unchanged, because the spec's basis
                                            (Condon-Shortley signs, 0.5 bias after the sum) is the 3DGS one
                                            ``core.splats.sh`` evaluates
  COLOR_0                                   VEC4 float, the fallback for readers without the extension:
                                            clamp(0.5 + C0 * sh_dc) decoded from sRGB to linear (glTF
                                            colours are linear), alpha = opacity
The primitive's extension object names the kernel ("ellipse"), the colour space
("srgb_rec709_display": 3DGS trains on sRGB photos and renders display-referred),
the projection and the sorting method. The extension is listed in
``extensionsUsed`` only, not ``extensionsRequired``: the spec keeps the point cloud as
a valid fallback. No material: the spec says splat rendering ignores it.

Frames. Our object frame is Blender's (Z up, -Y forward); glTF's is Y up, +Z
forward; the turn between them is -90 degrees about X (``Z_UP_TO_Y_UP``, (x, y, z) ->
(x, z, -y)). A static cloud keeps its attributes as they are under a node with that
rotation (``Z_UP_TO_Y_UP_XYZW``): the spec makes renderers apply the node's global
transform to the means and covariances and (SHOULD) rotate the SH by its rotation, so
the picture is the same and the file round trips bit-exactly (rotating degree 1-3 SH
ourselves mixes coefficients and rounds them). A skinned cloud cannot do that: glTF
ignores a skinned mesh node's transform, and most splat renderers ignore the skin, so
for them only data already in Y up is upright. Its means, rotations, SH and bone rest
frames are therefore turned with ``transforms.transform_gaussians`` before writing,
and read_glb turns them back: exact up to float32 rounding (~1e-6; the means exactly,
the turn only permutes and negates them).

Skin (beyond what the extension's spec covers: it says nothing about skinning). A
cloud with a ``SplatSkin`` also gets one node per bone (local TRS from the turned
``rest_bone_to_object`` and the parents; root bones are scene roots), a glTF skin
whose joints are those nodes in bone order (so JOINTS_0 holds our bone indices,
UNSIGNED_BYTE up to 256 bones, else UNSIGNED_SHORT; unused slots 0) with
inverseBindMatrices = inverse(turned rest_bone_to_object), and WEIGHTS_0 (FLOAT, rows
renormalised, a bone listed twice in a row merged). The skinned mesh node sits at the
scene root without a transform (the validator warns when a skinned mesh has a
parent); at rest every joint_global @ inverse_bind is the identity, so skinning and
non-skinning readers draw the same upright cloud (Blender's importer puts every point
back on its mean).

Layout rules kept: every accessor has its own tightly packed buffer view starting on a
4-byte boundary (so no byteStride is needed: glTF requires it only when several vertex
accessors share a view), vertex views target ARRAY_BUFFER, POSITION carries exact
float32 min/max, the JSON chunk is padded with spaces and the BIN chunk with zeros.
"""
from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_output
from ..errors import AvatarCaptureError, FileFormatError
from ..rotations import matrix_to_quat, quat_normalize, quat_to_matrix
from .gaussians import Gaussians, InvalidGaussians, SplatSkin, check_exportable, make_gaussians
from .sh import SH_C0
from .transforms import transform_gaussians

EXTENSION = "KHR_gaussian_splatting"
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
Z_UP_TO_Y_UP_XYZW = (-math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5))  # the same turn as a glTF node rotation
GENERATOR = "Avatar Capture"
VALIDATOR_DIR = Path(__file__).resolve().parents[2] / "tools" / "gltf_validator"
VALIDATOR_TIMEOUT_S = 300.0

_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
_FLOAT, _UNSIGNED_BYTE, _UNSIGNED_SHORT = 5126, 5121, 5123
_ARRAY_BUFFER = 34962
_COMPONENTS = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {_FLOAT: np.dtype("<f4"), _UNSIGNED_BYTE: np.dtype("u1"), _UNSIGNED_SHORT: np.dtype("<u2")}
_TYPE_OF_WIDTH = {1: "SCALAR", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


def sh_semantic(degree: int, n: int) -> str:
    """Attribute name of SH band ``degree``, order m = n - degree (our coefficient degree^2 + n)."""
    return f"{EXTENSION}:SH_DEGREE_{degree}_COEF_{n}"


def write_glb(g: Gaussians, path: str | Path, name: str | None = None) -> None:
    """Write the cloud (and its skin, if any) to a .glb at path, atomically (see the module docstring)."""
    path = Path(path)
    check_exportable(g, path)
    document = _document(g, name or path.stem)
    with atomic_output(path) as staged:
        staged.write_bytes(document)


def _document(g: Gaussians, name: str) -> bytes:
    """The whole GLB file as bytes."""
    if g.skin is not None:
        g = transform_gaussians(g, Z_UP_TO_Y_UP)
    buffer = _BufferBuilder()
    with np.errstate(over="ignore"):  # exp(-logit) overflows to inf for logit << 0: opacity 0, as it should
        opacity = g.opacities.astype(np.float32)
    means = np.ascontiguousarray(g.means, np.float32)
    attributes = {
        "POSITION": buffer.accessor(means, vertex=True, bounds=True),
        "COLOR_0": buffer.accessor(_fallback_colour(g.sh[:, 0], opacity), vertex=True),
        f"{EXTENSION}:SCALE": buffer.accessor(g.scales.astype(np.float32), vertex=True),
        f"{EXTENSION}:ROTATION": buffer.accessor(quat_normalize(g.rotations)[:, [1, 2, 3, 0]].astype(np.float32),
                                                 vertex=True),
        f"{EXTENSION}:OPACITY": buffer.accessor(opacity, vertex=True),
    }
    for degree in range(g.sh_degree + 1):
        for n in range(2 * degree + 1):
            attributes[sh_semantic(degree, n)] = buffer.accessor(g.sh[:, degree * degree + n], vertex=True)
    primitive = {"attributes": attributes, "mode": 0, "extensions": {EXTENSION: {
        "kernel": "ellipse", "colorSpace": "srgb_rec709_display", "projection": "perspective",
        "sortingMethod": "cameraDistance"}}}
    gltf: dict = {"asset": {"version": "2.0", "generator": GENERATOR}, "extensionsUsed": [EXTENSION],
                  "scene": 0, "scenes": [{"name": name, "nodes": [0]}],
                  "meshes": [{"name": name, "primitives": [primitive]}]}
    if g.skin is None:
        gltf["nodes"] = [{"name": name, "mesh": 0, "rotation": list(Z_UP_TO_Y_UP_XYZW)}]
    else:
        _add_skin(gltf, buffer, g.skin, name, attributes)
    binary = buffer.finish(gltf)
    return _glb(gltf, binary)


def _fallback_colour(sh_dc: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """COLOR_0 (N, 4): band-0 colour clamped to 0..1 and decoded sRGB -> linear, alpha = opacity."""
    srgb = np.clip(0.5 + SH_C0 * sh_dc.astype(np.float64), 0.0, 1.0)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return np.concatenate([linear, opacity[:, None]], axis=1).astype(np.float32)


def _add_skin(gltf: dict, buffer: "_BufferBuilder", skin: SplatSkin, name: str, attributes: dict) -> None:
    """Bone nodes (roots in the scene), the skin, and JOINTS_0 / WEIGHTS_0 on the primitive (skin in Y up)."""
    bones = len(skin.bone_names)
    first_bone = 1  # node 0: the skinned mesh, then one node per bone
    rest = np.asarray(skin.rest_bone_to_object, np.float64)
    nodes: list[dict] = [{"name": name, "mesh": 0, "skin": 0}]
    for bone, (bone_name, parent) in enumerate(zip(skin.bone_names, skin.bone_parents)):
        local = rest[bone] if parent < 0 else _affine_inverse(rest[parent]) @ rest[bone]
        nodes.append({"name": bone_name, **_trs(local, bone_name)})
        if parent < 0:
            gltf["scenes"][0]["nodes"].append(first_bone + bone)
        else:
            nodes[first_bone + int(parent)].setdefault("children", []).append(first_bone + bone)
    gltf["nodes"] = nodes
    inverse_bind = np.stack([_affine_inverse(m) for m in rest])
    gltf["skins"] = [{"name": f"{name} armature", "joints": list(range(first_bone, first_bone + bones)),
                      "inverseBindMatrices": buffer.accessor(
                          inverse_bind.transpose(0, 2, 1).reshape(bones, 16).astype(np.float32))}]
    joints, weights = gltf_influences(skin.bone_indices, skin.bone_weights)
    attributes["JOINTS_0"] = buffer.accessor(joints.astype(np.uint8 if bones <= 256 else np.uint16), vertex=True)
    attributes["WEIGHTS_0"] = buffer.accessor(weights, vertex=True)


def gltf_influences(bone_indices: np.ndarray, bone_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JOINTS_0 (N, 4) int64 and WEIGHTS_0 (N, 4) float32 as glTF wants them from a skin's (N, 4) pairs.

    glTF forbids a joint twice with non-zero weight in one vertex, wants unused slots
    (weight 0) to name joint 0 and the float32 weights to sum to 1: duplicate bones are
    merged into their first slot and the rows renormalised. The skinning is unchanged.
    """
    joints = np.asarray(bone_indices, np.int64).copy()
    weights = np.asarray(bone_weights, np.float64).copy()
    for j in range(1, joints.shape[1]):
        for i in range(j):
            same = joints[:, i] == joints[:, j]
            weights[same, i] += weights[same, j]
            weights[same, j] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    joints[weights == 0.0] = 0
    return joints, weights.astype(np.float32)


def _affine_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 affine matrix with an exact (0, 0, 0, 1) last row."""
    inverse = np.eye(4)
    linear = np.linalg.inv(m[:3, :3])
    inverse[:3, :3] = linear
    inverse[:3, 3] = -linear @ m[:3, 3]
    return inverse


def _trs(local: np.ndarray, bone_name: str) -> dict:
    """glTF node translation / rotation (xyzw) / scale of a bone's local rest matrix (4, 4)."""
    scale = np.linalg.norm(local[:3, :3], axis=0)
    if np.any(scale < 1e-9):
        raise AvatarCaptureError(f"bone '{bone_name}': its rest matrix has a zero scale and cannot be exported")
    rotation = local[:3, :3] / scale
    if np.linalg.det(rotation) < 0.0 or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5):
        raise AvatarCaptureError(f"bone '{bone_name}': its rest matrix is mirrored or sheared; glTF needs "
                                 "translation, rotation and positive scale")
    node = {"translation": local[:3, 3].tolist(),
            "rotation": matrix_to_quat(rotation)[[1, 2, 3, 0]].tolist()}
    if not np.allclose(scale, 1.0, atol=1e-6):
        node["scale"] = scale.tolist()
    return node


class _BufferBuilder:
    """Collects arrays into one binary buffer: one 4-byte aligned buffer view and accessor each."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.length = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def accessor(self, values: np.ndarray, vertex: bool = False, bounds: bool = False) -> int:
        """Append values (N,) or (N, width) and return the new accessor's index."""
        values = np.ascontiguousarray(values)
        component = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UNSIGNED_BYTE,
                     np.dtype(np.uint16): _UNSIGNED_SHORT}[values.dtype]
        width = 1 if values.ndim == 1 else values.shape[1]
        data = values.astype(_DTYPES[component]).tobytes()
        view = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if vertex:
            view["target"] = _ARRAY_BUFFER
        self.chunks.append(data + b"\0" * (-len(data) % 4))
        self.length += len(self.chunks[-1])
        self.views.append(view)
        accessor = {"bufferView": len(self.views) - 1, "componentType": component, "count": len(values),
                    "type": _TYPE_OF_WIDTH[width]}
        if bounds:
            accessor["min"] = [float(v) for v in values.reshape(len(values), -1).min(axis=0)]
            accessor["max"] = [float(v) for v in values.reshape(len(values), -1).max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def finish(self, gltf: dict) -> bytes:
        """Put buffers, views and accessors into gltf and return the binary buffer (length a multiple of 4)."""
        gltf["buffers"] = [{"byteLength": self.length}]
        gltf["bufferViews"] = self.views
        gltf["accessors"] = self.accessors
        return b"".join(self.chunks)


def _glb(gltf: dict, binary: bytes) -> bytes:
    """GLB container: 12-byte header, JSON chunk (space padded), BIN chunk (zero padded)."""
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<III", _GLB_MAGIC, 2, total), struct.pack("<II", len(text), _JSON_CHUNK), text,
                     struct.pack("<II", len(binary), _BIN_CHUNK), binary])


# -- reading back ---------------------------------------------------------------------------------

def read_glb(path: str | Path) -> Gaussians:
    """The cloud (and skin) of a .glb laid out like write_glb writes it (round trips and checks).

    Reads the first primitive carrying the extension; values come back in our
    parameterisation (log-scales, logit-opacities, wxyz) and Z-up frame: a static
    cloud's node rotation is expected and not applied (bit-exact round trip), a skinned
    cloud is turned back from Y up (exact up to float32 rounding, ~1e-6). Anything else
    raises FileFormatError.
    """
    path = Path(path)
    gltf, binary = _parse_glb(path)
    try:
        return _gaussians_from_gltf(path, gltf, binary)
    except InvalidGaussians as exc:
        raise FileFormatError(path, str(exc)) from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise FileFormatError(path, f"malformed glTF ({type(exc).__name__}: {exc})") from None


def _gaussians_from_gltf(path: Path, gltf: dict, binary: bytes) -> Gaussians:
    """read_glb's work on the parsed file; a malformed structure surfaces as KeyError, IndexError, ..."""
    located = [(i, node) for i, node in enumerate(gltf.get("nodes", [])) if "mesh" in node
               and any(EXTENSION in p.get("extensions", {}) for p in gltf["meshes"][node["mesh"]]["primitives"])]
    if not located:
        raise FileFormatError(path, f"no mesh primitive with {EXTENSION}")
    node_index, node = located[0]
    primitive = next(p for p in gltf["meshes"][node["mesh"]]["primitives"] if EXTENSION in p.get("extensions", {}))
    attributes = primitive["attributes"]

    def attribute(name: str) -> np.ndarray:
        if name not in attributes:
            raise FileFormatError(path, "attribute missing", name)
        return _read_accessor(path, gltf, binary, attributes[name])

    opacity = attribute(f"{EXTENSION}:OPACITY").astype(np.float64).clip(1e-12, 1.0 - 1e-7)
    degree = max(d for d in range(4) if sh_semantic(d, 0) in attributes) if sh_semantic(0, 0) in attributes else -1
    if degree < 0:
        raise FileFormatError(path, "attribute missing", sh_semantic(0, 0))
    sh = np.stack([attribute(sh_semantic(d, n)) for d in range(degree + 1) for n in range(2 * d + 1)], axis=1)
    skin = _read_skin(path, gltf, binary, node, attribute) if "skin" in node else None
    if skin is None and node.get("rotation") is not None and \
            not np.allclose(node["rotation"], Z_UP_TO_Y_UP_XYZW, atol=1e-6):
        raise FileFormatError(path, f"node {node_index} is not the Z-up -> Y-up rotation write_glb writes", "rotation")
    g = make_gaussians(attribute("POSITION"), attribute(f"{EXTENSION}:ROTATION")[:, [3, 0, 1, 2]],
                       np.log(attribute(f"{EXTENSION}:SCALE").astype(np.float64)),
                       np.log(opacity / (1.0 - opacity)), sh, skin=skin)
    return g if skin is None else transform_gaussians(g, Z_UP_TO_Y_UP.T)


def _read_skin(path: Path, gltf: dict, binary: bytes, node: dict, attribute) -> SplatSkin:
    """Bones (names, parents, rest frames composed from the nodes' TRS), joints and weights."""
    skin = gltf["skins"][node["skin"]]
    joints = list(skin["joints"])
    bone_of_node = {node_index: bone for bone, node_index in enumerate(joints)}
    parent_of_node = {child: i for i, n in enumerate(gltf["nodes"]) for child in n.get("children", [])}
    parents = np.array([bone_of_node.get(parent_of_node.get(j), -1) for j in joints], np.int32)
    if any(parents[bone] < 0 and j in parent_of_node for bone, j in enumerate(joints)):
        raise FileFormatError(path, "a root joint has a parent node (write_glb makes root joints scene roots)", "skins")
    rest = np.zeros((len(joints), 4, 4))
    for bone, node_index in enumerate(joints):
        local = _node_matrix(gltf["nodes"][node_index])
        rest[bone] = local if parents[bone] < 0 else rest[parents[bone]] @ local
    return SplatSkin(tuple(gltf["nodes"][j].get("name", f"bone{b}") for b, j in enumerate(joints)), parents, rest,
                     attribute("JOINTS_0").astype(np.int32), attribute("WEIGHTS_0"))


def _node_matrix(node: dict) -> np.ndarray:
    """4x4 local matrix of a node's translation / rotation (xyzw) / scale."""
    matrix = np.eye(4)
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    matrix[:3, :3] = quat_to_matrix(np.array([w, x, y, z])) * np.asarray(node.get("scale", (1.0, 1.0, 1.0)))
    matrix[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return matrix


def _parse_glb(path: Path) -> tuple[dict, bytes]:
    """(glTF JSON, BIN chunk) of a GLB file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileFormatError(path, "file not found") from None
    except OSError as exc:
        raise FileFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if len(data) < 20 or struct.unpack_from("<III", data)[:2] != (_GLB_MAGIC, 2):
        raise FileFormatError(path, "not a glTF 2.0 binary (.glb) file")
    json_length, kind = struct.unpack_from("<II", data, 12)
    if kind != _JSON_CHUNK or 20 + json_length > len(data):
        raise FileFormatError(path, "the GLB's JSON chunk is missing or truncated")
    try:
        gltf = json.loads(data[20:20 + json_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(path, f"the GLB's JSON chunk is not valid JSON ({exc})") from None
    offset = 20 + json_length
    binary = b""
    if offset + 8 <= len(data):
        bin_length, kind = struct.unpack_from("<II", data, offset)
        if kind == _BIN_CHUNK:
            binary = data[offset + 8:offset + 8 + bin_length]
    return gltf, binary


def _read_accessor(path: Path, gltf: dict, binary: bytes, index: int) -> np.ndarray:
    """An accessor's values (count,) or (count, width) from the GLB's own buffer (tightly packed only)."""
    accessor = gltf["accessors"][index]
    view = gltf["bufferViews"][accessor["bufferView"]]
    if view.get("buffer") != 0 or "byteStride" in view or "sparse" in accessor:
        raise FileFormatError(path, "only tightly packed accessors in the GLB buffer are supported",
                              f"accessors[{index}]")
    dtype = _DTYPES.get(accessor["componentType"])
    width = _COMPONENTS.get(accessor["type"])
    if dtype is None or width is None:
        raise FileFormatError(path, "unsupported component type", f"accessors[{index}]")
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    size = accessor["count"] * width * dtype.itemsize
    if start + size > len(binary):
        raise FileFormatError(path, "the accessor runs past the end of the binary chunk", f"accessors[{index}]")
    values = np.frombuffer(binary, dtype, accessor["count"] * width, start)
    return values.copy() if width == 1 else values.reshape(-1, width).copy()


# -- validation -----------------------------------------------------------------------------------

def extension_semantics() -> frozenset[str]:
    """Every attribute name KHR_gaussian_splatting defines for the ellipse kernel."""
    names = {f"{EXTENSION}:{name}" for name in ("SCALE", "ROTATION", "OPACITY")}
    return frozenset(names | {sh_semantic(d, n) for d in range(4) for n in range(2 * d + 1)})


def validate_gltf(path: str | Path, *, extension_attributes_as_application: bool = False) -> dict:
    """The Khronos glTF validator's report (a dict: "issues" has numErrors/numWarnings/... and "messages").

    Runs tools/gltf_validator/validate.mjs with node (the npm package ``gltf-validator``
    pinned by its package-lock.json, installed by ``make test`` / ``npm ci --prefix
    tools/gltf_validator``). Raises AvatarCaptureError when node or the validator is
    missing, or when the validator cannot read the file at all.

    The newest validator release (2.0.0-dev.3.10) predates extension-defined attribute
    names: it accepts only core names and names starting with "_", so it reports every
    ``KHR_gaussian_splatting:*`` attribute as MESH_PRIMITIVE_INVALID_ATTRIBUTE (Khronos
    glTF-Validator issue #252) and then skips the per-attribute checks on them. With
    ``extension_attributes_as_application`` a GLB is validated through a temporary copy
    whose extension attributes are renamed ``_KHR_gaussian_splatting:*`` (application
    specific), so their accessors get every check (counts, alignment, bounds) too.
    """
    path = Path(path)
    if extension_attributes_as_application:
        gltf, binary = _parse_glb(path)
        for mesh in gltf.get("meshes", []):
            for primitive in mesh.get("primitives", []):
                primitive["attributes"] = {(f"_{key}" if key.startswith(f"{EXTENSION}:") else key): value
                                           for key, value in primitive.get("attributes", {}).items()}
        with tempfile.TemporaryDirectory(prefix="avatar-capture-gltf-") as folder:
            copy = Path(folder) / path.name
            copy.write_bytes(_glb(gltf, binary))
            return _run_validator(copy, path)
    return _run_validator(path, path)


def validator_errors(report: dict) -> list[dict]:
    """The report's error messages less the validator's false alarms on the extension's own attributes.

    Only MESH_PRIMITIVE_INVALID_ATTRIBUTE on a name the extension defines (see
    validate_gltf) is dropped; any other error, or that code on another name, stays.
    """
    known = extension_semantics()
    return [message for message in report["issues"]["messages"] if message["severity"] == 0 and not (
        message["code"] == "MESH_PRIMITIVE_INVALID_ATTRIBUTE"
        and message.get("pointer", "").rpartition("/attributes/")[2] in known)]


def _run_validator(path: Path, shown: Path) -> dict:
    node = shutil.which("node")
    if node is None:
        raise AvatarCaptureError("the glTF validator needs Node.js: `node` is not on PATH (install nodejs and npm)")
    if not (VALIDATOR_DIR / "node_modules" / "gltf-validator" / "package.json").is_file():
        raise AvatarCaptureError(f"the Khronos glTF validator is not installed: run `npm ci --prefix {VALIDATOR_DIR}`"
                                 " (make test does)")
    try:
        result = subprocess.run([node, str(VALIDATOR_DIR / "validate.mjs"), str(path.resolve())],
                                capture_output=True, text=True, timeout=VALIDATOR_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AvatarCaptureError(f"{shown}: the glTF validator took longer than {VALIDATOR_TIMEOUT_S:.0f} s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise AvatarCaptureError(f"{shown}: the glTF validator failed: {last}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AvatarCaptureError(f"{shown}: the glTF validator printed no JSON report") from None

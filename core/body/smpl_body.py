"""SMPL and SMPL-X bodies from the user's own ``.npz`` model files, through ``smplx``.

The models' licences forbid shipping them, so the user downloads them and points
the preferences at a folder. Accepted layouts (smplx's own, plus a flat one):

    FOLDER/smpl/SMPL_NEUTRAL.npz    or  FOLDER/SMPL_NEUTRAL.npz     (also _MALE, _FEMALE)
    FOLDER/smplx/SMPLX_NEUTRAL.npz  or  FOLDER/SMPLX_NEUTRAL.npz

NEUTRAL is used when present, else MALE, else FEMALE. Only ``.npz`` is read, and
without unpickling (``allow_pickle=False``): the original ``.pkl`` files pickle
chumpy objects that cannot be loaded on Python 3.11, and a pickle could run code.
Only the official meshes (SMPL 6,890 vertices / 24 joints, SMPL-X 10,475 / 55) are
accepted, because the landmark vertices below are those meshes' vertex ids.

Geometry. The rest shape is smplx's v_template + shapedirs . betas with joints
J_regressor . vertices (smplx.lbs), for the first 10 betas (shape names beta0..
beta9, default 0). SMPL is Y up, +Z forward, +X the body's left; it is turned into
Blender's frame by (x, y, z) -> (x, -z, y) and lifted so the lowest vertex lies on
Z = 0. Skinning is plain LBS with the model's weights kept to the top 8 per
vertex (renormalised); pose corrective blend shapes (posedirs) are not used.

Rest frames: each bone points (Y) at its child (at the most aligned child when it
has several and one continues it, e.g. pelvis -> spine1, spine3 -> neck), end bones
keep their parent's direction; Z is as close to forward (-Y) as allowed, so knees
and elbows in the T-shaped rest pose bend about X.

Landmarks: shoulders, elbows, wrists, hips, knees and ankles are the model's
joints; nose, eyes, ears, heels and big toes (our *_toe) are the vertices smplx
itself uses for them (smplx.vertex_ids: "smplh" ids for SMPL, "smplx" ids for
SMPL-X); pelvis is the midpoint of the hips and neck the midpoint of the shoulders.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import AvatarCaptureError
from ..kinematics import check_parents, frames_from_heads_tails
from ..landmarks import LANDMARK_NAMES
from ..rig import RiggedBody
from ..rotations import axis_angle_to_quat, matrix_to_quat, quat_to_matrix
from ..skeleton import Skeleton
from . import rig_build

FILE_PREFIX = {"smpl": "SMPL", "smplx": "SMPLX"}
GENDERS = ("NEUTRAL", "MALE", "FEMALE")
VERTEX_COUNT = {"smpl": 6890, "smplx": 10475}
JOINT_COUNT = {"smpl": 24, "smplx": 55}
REQUIRED_KEYS = ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f")
BETA_COUNT = 10
MAX_INFLUENCES = 8
ROOT_LENGTH = 0.1  # metres; only used if the pelvis had no child on its axis

# SMPL (x, y, z) -> Blender (x, -z, y): Y up / +Z forward becomes Z up / -Y forward.
SMPL_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_FORWARD = np.array([0.0, -1.0, 0.0])

_LANDMARK_JOINTS = {
    "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder",
    "left_elbow": "left_elbow", "right_elbow": "right_elbow",
    "left_wrist": "left_wrist", "right_wrist": "right_wrist",
    "left_hip": "left_hip", "right_hip": "right_hip",
    "left_knee": "left_knee", "right_knee": "right_knee",
    "left_ankle": "left_ankle", "right_ankle": "right_ankle",
}
_LANDMARK_VERTICES = {
    "nose": "nose", "left_eye": "leye", "right_eye": "reye", "left_ear": "lear", "right_ear": "rear",
    "left_heel": "LHeel", "left_toe": "LBigToe", "right_heel": "RHeel", "right_toe": "RBigToe",
}
_MIDPOINTS = {"pelvis": ("left_hip", "right_hip"), "neck": ("left_shoulder", "right_shoulder")}
_VERTEX_ID_TABLE = {"smpl": "smplh", "smplx": "smplx"}


def joint_names(kind: str) -> tuple[str, ...]:
    """smplx's joint names: SMPL's 24 (its last two are the hands), SMPL-X's first 55."""
    rig_build.require("smplx", "SMPL and SMPL-X bodies")
    from smplx.joint_names import JOINT_NAMES

    if kind == "smpl":
        return tuple(JOINT_NAMES[:22]) + ("left_hand", "right_hand")
    return tuple(JOINT_NAMES[: JOINT_COUNT[kind]])


def shape_names(count: int = BETA_COUNT) -> tuple[str, ...]:
    return tuple(f"beta{i}" for i in range(count))


def find_model_file(kind: str, folder: str | Path) -> Path | None:
    """The model file used for `kind` in `folder` (see the module docstring), or None."""
    folder = Path(folder).expanduser()
    for gender in GENDERS:
        for base in (folder / kind, folder):
            path = base / f"{FILE_PREFIX[kind]}_{gender}.npz"
            if path.is_file():
                return path
    return None


def check_model_folder(kind: str, folder: str | Path) -> list[str]:
    """Plain-English problems with a SMPL / SMPL-X model folder; empty when it is usable."""
    if kind not in FILE_PREFIX:
        return [f"'{kind}' is not a model read from files (choose smpl or smplx)"]
    label = FILE_PREFIX[kind].replace("SMPLX", "SMPL-X")
    if not str(folder).strip():
        return [f"No {label} model folder is set: choose the folder holding {FILE_PREFIX[kind]}_NEUTRAL.npz"]
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return [f"The {label} model folder {folder} does not exist"]
    path = find_model_file(kind, folder)
    if path is None:
        names = " or ".join(f"{FILE_PREFIX[kind]}_{g}.npz" for g in GENDERS)
        pickles = sorted(p.name for base in (folder, folder / kind) if base.is_dir() for p in base.glob("*.pkl"))
        hint = (f" (found {', '.join(pickles)}: .pkl files need chumpy, which cannot be installed;"
                " convert them to .npz)") if pickles else ""
        return [f"No {label} model file in {folder} or {folder / kind}: expected {names}{hint}"]
    try:
        _read_model(kind, path)
    except AvatarCaptureError as exc:
        return [str(exc)]
    return []


def build_smpl_rig(
    kind: str, folder: str | Path, shape: dict[str, float] | None = None, report: rig_build.Report | None = None
) -> RiggedBody:
    """The rigged SMPL / SMPL-X body for betas `shape` (beta0..beta9; missing ones are 0)."""
    report = report or rig_build.no_report
    problems = check_model_folder(kind, folder)
    if problems:
        raise AvatarCaptureError(problems[0])
    rig_build.require("smplx", "SMPL and SMPL-X bodies")
    import torch
    from smplx.lbs import blend_shapes, vertices2joints
    from smplx.vertex_ids import vertex_ids
    path = find_model_file(kind, folder)
    report(f"Building the {kind} body", 0.0, str(path))
    model = _read_model(kind, path)
    names = shape_names(min(BETA_COUNT, model["shapedirs"].shape[2]))
    values = rig_build.shape_values(kind.upper(), names, np.zeros(len(names)), shape)

    betas = torch.from_numpy(values)[None]
    shapedirs = torch.from_numpy(model["shapedirs"][:, :, : len(names)].astype(np.float64))
    v_shaped = torch.from_numpy(model["v_template"].astype(np.float64))[None] + blend_shapes(betas, shapedirs)
    joints = vertices2joints(torch.from_numpy(model["J_regressor"].astype(np.float64)), v_shaped)
    vertices = v_shaped[0].numpy() @ SMPL_TO_WORLD.T
    heads = joints[0].numpy() @ SMPL_TO_WORLD.T
    offset = rig_build.ground_offset(vertices)
    vertices, heads = vertices + offset, heads + offset

    parents = model["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    try:
        check_parents(parents)
    except ValueError as exc:
        raise AvatarCaptureError(f"{path}: kintree_table is not a usable joint tree ({exc})") from None
    skin_indices, skin_weights = rig_build.top_k_weights(model["weights"], MAX_INFLUENCES)
    dense_skin = rig_build.dense_weights(skin_indices, skin_weights, len(parents))
    directions = _bone_directions(heads, parents)
    lengths = rig_build.bone_lengths(heads, directions, parents, vertices, dense_skin, ROOT_LENGTH)
    frames = frames_from_heads_tails(heads, heads + directions * lengths[:, None], np.tile(_FORWARD, (len(heads), 1)))

    names_of_joints = joint_names(kind)
    ids = vertex_ids[_VERTEX_ID_TABLE[kind]]
    vertex_regressor = np.zeros((len(LANDMARK_NAMES), len(vertices)))
    joint_regressor = np.zeros((len(LANDMARK_NAMES), len(parents)))
    for row, name in enumerate(LANDMARK_NAMES):
        for part in _MIDPOINTS.get(name, (name,)):
            share = 1.0 / len(_MIDPOINTS.get(name, (name,)))
            if part in _LANDMARK_JOINTS:
                joint_regressor[row, names_of_joints.index(_LANDMARK_JOINTS[part])] += share
            else:
                vertex_regressor[row, ids[_LANDMARK_VERTICES[part]]] += share
    bone_points = rig_build.landmark_bone_points(vertex_regressor, joint_regressor, vertices, heads, dense_skin)
    report(f"Building the {kind} body", 1.0, "done")
    return RiggedBody(
        body_model=kind,
        shape_names=names,
        shape_values=values,
        skeleton=Skeleton(names_of_joints, parents, frames, lengths),
        vertices_rest=vertices,
        faces=model["f"].astype(np.int64),
        skin_indices=skin_indices,
        skin_weights=skin_weights,
        landmark_names=LANDMARK_NAMES,
        landmark_bone_points=bone_points,
    )


def rotations_from_smpl_pose(
    rig: RiggedBody, axis_angles: np.ndarray, transl: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Our (rotations (T, J, 4) wxyz, root_translation (T, 3)) for an SMPL / SMPL-X pose.

    axis_angles (T, J, 3) are smplx's per-joint rotation vectors in the SMPL frame
    (global_orient first, then body_pose, ...); transl (T, 3) is smplx's transl.
    SMPL's rest frames are world-aligned, so each local rotation R_j becomes
    inv(Rest_j) C R_j inv(C) Rest_j in ours (C = SMPL_TO_WORLD); the root moves
    to its rest position plus C transl.
    """
    rest = rig.skeleton.rest_frames_world[:, :3, :3]
    smpl_rotations = quat_to_matrix(axis_angle_to_quat(np.asarray(axis_angles, dtype=np.float64)))
    world = SMPL_TO_WORLD @ smpl_rotations @ SMPL_TO_WORLD.T
    local = np.swapaxes(rest, -1, -2) @ world @ rest
    root = rig.skeleton.rest_heads_world[0] + np.asarray(transl, dtype=np.float64) @ SMPL_TO_WORLD.T
    return matrix_to_quat(local), root


def model_file_identity(kind: str, folder: str | Path) -> str:
    """A string that changes when the model file used for `kind` changes (path, size, time)."""
    path = find_model_file(kind, folder)
    if path is None:
        return "missing"
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _read_model(kind: str, path: Path) -> dict[str, np.ndarray]:
    """The arrays we use from a model file, checked; AvatarCaptureError names the file and problem."""
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise AvatarCaptureError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise AvatarCaptureError(f"{path}: not a readable .npz file (it holds a single array)")
    with data:
        missing = [key for key in REQUIRED_KEYS if key not in data.files]
        if missing:
            raise AvatarCaptureError(f"{path}: missing {', '.join(missing)} (not a {kind} model file?)")
        arrays = {}
        for key in REQUIRED_KEYS:
            try:
                arrays[key] = data[key]
            except ValueError:
                raise AvatarCaptureError(
                    f"{path}: {key} is stored as a pickled Python object; save it as a plain numeric array"
                ) from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise AvatarCaptureError(f"{path}: {key} cannot be read ({exc})") from None
    vertex_count, joint_count = VERTEX_COUNT[kind], JOINT_COUNT[kind]
    expected = {
        "v_template": (vertex_count, 3),
        "shapedirs": (vertex_count, 3, None),
        "J_regressor": (joint_count, vertex_count),
        "weights": (vertex_count, joint_count),
        "kintree_table": (2, joint_count),
        "f": (None, 3),
    }
    for key, shape in expected.items():
        value = arrays[key]
        if value.ndim != len(shape) or any(e is not None and s != e for s, e in zip(value.shape, shape)):
            wanted = "(" + ", ".join("N" if e is None else str(e) for e in shape) + ")"
            raise AvatarCaptureError(
                f"{path}: {key} has shape {value.shape}, expected {wanted} for the official {kind} model"
            )
        if value.dtype.kind not in "fiu":
            raise AvatarCaptureError(f"{path}: {key} is not numeric (dtype {value.dtype})")
    faces = arrays["f"]
    if faces.size and (faces.min() < 0 or faces.max() >= vertex_count):
        raise AvatarCaptureError(f"{path}: f refers to vertices outside 0..{vertex_count - 1}")
    return arrays


def _bone_directions(heads: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Unit Y direction (J, 3) of every bone: toward its continuing child, else along its parent."""
    count = len(parents)
    children: list[list[int]] = [[] for _ in range(count)]
    for j in range(1, count):
        children[parents[j]].append(j)
    directions = np.zeros((count, 3))
    for j in range(count):
        incoming = np.array([0.0, 0.0, 1.0]) if j == 0 else directions[parents[j]]
        if j > 0:
            offset = heads[j] - heads[parents[j]]
            if np.linalg.norm(offset) > 1e-6:
                incoming = offset / np.linalg.norm(offset)
        offsets = heads[children[j]] - heads[j]
        norms = np.linalg.norm(offsets, axis=1)
        usable = norms > 1e-6
        directions[j] = incoming
        if np.any(usable):
            units = offsets[usable] / norms[usable, None]
            cosines = units @ incoming
            best = int(np.argmax(cosines))
            if usable.sum() == 1 or cosines[best] > 0.7:
                directions[j] = units[best]
    return directions

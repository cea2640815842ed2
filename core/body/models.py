"""One entry point to the body models: a RiggedBody for a model and shape, cached on disk.

Building a rig needs torch and the model (Anny's data, the user's SMPL file);
reading a cached one needs only numpy. So the worker builds and caches rigs, and
Blender, the CLI and tests read them back quickly. A cache file is named by a hash
of everything that determines the rig: the model, its full shape vector, the
model's identity (anny's version; the SMPL file's path, size and time) and
RIG_BUILDER_VERSION, which changes whenever this package builds rigs differently.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np

from ..clip import MotionClip
from ..errors import AvatarCaptureError, FileFormatError
from ..rest_pose import rebase_rig
from ..rig import RiggedBody, load_rig, save_rig
from ..settings import BODY_MODELS, ComputeSettings
from . import anny_body, smpl_body
from .rig_build import Report, no_report, shape_values

RIG_BUILDER_VERSION = 1


def default_shape(body_model: str) -> dict[str, float]:
    """The model's neutral shape: Anny's phenotypes at 0.5, SMPL / SMPL-X betas at 0."""
    if body_model == "anny":
        return dict(zip(anny_body.ANNY_SHAPE_NAMES, anny_body.ANNY_SHAPE_DEFAULTS.tolist()))
    if body_model in ("smpl", "smplx"):
        return {name: 0.0 for name in smpl_body.shape_names()}
    raise AvatarCaptureError(_unknown_model(body_model))


def build_rig(
    settings: ComputeSettings, shape: dict[str, float] | None = None, report: Report | None = None,
    body_model: str | None = None,
) -> RiggedBody:
    """Build (uncached) the rig of `body_model` (default: settings.body_model) for `shape`."""
    body_model = body_model or settings.body_model
    if body_model == "anny":
        return anny_body.build_anny_rig(settings, shape, report)
    if body_model in ("smpl", "smplx"):
        return smpl_body.build_smpl_rig(body_model, settings.model_folder, shape, report)
    raise AvatarCaptureError(_unknown_model(body_model))


def rig_cache_file(settings: ComputeSettings, body_model: str, shape: dict[str, float] | None = None) -> Path:
    """Where the rig for this model and shape is cached (the file may not exist yet)."""
    if body_model == "anny":
        names, values = anny_body.ANNY_SHAPE_NAMES, anny_body.shape_values(shape)
        try:
            identity = f"anny {importlib.metadata.version('anny')}"
        except importlib.metadata.PackageNotFoundError:
            raise AvatarCaptureError("the Python package 'anny' is not installed in this Python") from None
    elif body_model in ("smpl", "smplx"):
        names = smpl_body.shape_names()
        values = shape_values(body_model.upper(), names, np.zeros(len(names)), shape)
        identity = smpl_body.model_file_identity(body_model, settings.model_folder)
    else:
        raise AvatarCaptureError(_unknown_model(body_model))
    key = json.dumps(
        {"model": body_model, "shape": dict(zip(names, np.round(values, 9).tolist())),
         "identity": identity, "builder": RIG_BUILDER_VERSION},
        sort_keys=True,
    )
    return settings.rig_cache_path / f"{body_model}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def cached_rig(
    settings: ComputeSettings, body_model: str | None = None, shape: dict[str, float] | None = None,
    report: Report | None = None,
) -> tuple[RiggedBody, Path]:
    """(rig, cache file): read from the rig cache, or built and written there atomically."""
    body_model = body_model or settings.body_model
    path = rig_cache_file(settings, body_model, shape)
    if path.is_file():
        try:
            return load_rig(path), path
        except FileFormatError:
            pass  # unreadable (e.g. written by an older build): rebuild it below
    rig = build_rig(settings, shape, report, body_model)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_rig(rig, path)
    return rig, path


def rig_for_clip(clip: MotionClip, settings: ComputeSettings, report: Report | None = None) -> RiggedBody:
    """The rig of the clip's body model and shape, with the clip's rest pose (see rig_file_for_clip)."""
    return rig_file_for_clip(clip, settings, report)[0]


def rig_file_for_clip(
    clip: MotionClip, settings: ComputeSettings, report: Report | None = None
) -> tuple[RiggedBody, Path]:
    """(rig, file) for a clip: its body model and shape, rebased to the clip's rest frames when the
    clip was re-rested (e.g. to a T-pose) so the rig's skeleton is the clip's skeleton.

    AvatarCaptureError when the clip has no body model ("none"), when the model
    folder has a problem, or when the clip's skeleton is not this body's.
    """
    report = report or no_report
    if clip.body_model not in BODY_MODELS:
        raise AvatarCaptureError(
            f"the clip's body model is '{clip.body_model}': it holds a skeleton only, so there is no body mesh to build"
        )
    shape = dict(zip(clip.body_shape_names, clip.body_shape.tolist()))
    rig, path = cached_rig(settings, clip.body_model, shape, report)
    ours, theirs = rig.skeleton, clip.skeleton
    if ours.joint_names != theirs.joint_names or not np.array_equal(ours.parents, theirs.parents):
        raise AvatarCaptureError(f"the clip's skeleton is not the {clip.body_model} skeleton (different joints)")
    if np.allclose(ours.rest_frames_world, theirs.rest_frames_world, atol=1e-6):
        return rig, path
    try:
        rebased = rebase_rig(rig, theirs.rest_frames_world)
    except AvatarCaptureError:
        raise AvatarCaptureError(
            f"the clip's skeleton does not fit the {clip.body_model} body of its shape (different bone offsets)"
        ) from None
    digest = hashlib.sha256(np.ascontiguousarray(theirs.rest_frames_world).tobytes()).hexdigest()[:12]
    rebased_path = path.with_name(f"{path.stem}-rest-{digest}.npz")
    if not rebased_path.is_file():
        save_rig(rebased, rebased_path)
    return rebased, rebased_path


def _unknown_model(body_model: str) -> str:
    return f"unknown body model '{body_model}' (choose from {', '.join(BODY_MODELS)})"

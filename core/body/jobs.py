"""Worker jobs of the body models (registered in core/jobs/registry.py).

Each has the worker signature ``job(params, settings, report) -> dict`` and
returns JSON data. Every file they leave is written atomically (Anny's cache
through its staging folder, rigs through save_npz_atomic), so a job killed half
way leaves the previous state, never a partial file.
"""
from __future__ import annotations

import time

from ..clip import load_clip
from ..errors import AvatarCaptureError
from ..settings import ComputeSettings
from .anny_body import ensure_anny_cache
from .models import cached_rig, rig_file_for_clip
from .rig_build import Report, scaled_report


def build_body(params: dict, settings: ComputeSettings, report: Report) -> dict:
    """Make the body of settings.body_model ready: Anny's cache if needed, then the rig for
    params["shape"] (default: the model's neutral shape) in the rig cache.

    Result: {"body_model", "rig_path", "seconds", "anny_cache_built" (Anny only),
    "vertices", "joints"}.
    """
    start = time.perf_counter()
    result: dict = {"body_model": settings.body_model}
    if settings.body_model == "anny":
        cache = ensure_anny_cache(settings, scaled_report(report, 0.0, 0.8))
        result["anny_cache_built"] = cache["built"]
    report("Building the body", 0.8, f"{settings.body_model} rig")
    rig, path = cached_rig(settings, settings.body_model, params.get("shape"), scaled_report(report, 0.8, 1.0))
    report("Building the body", 1.0, f"saved {path.name}")
    result.update(
        rig_path=str(path),
        seconds=round(time.perf_counter() - start, 3),
        vertices=int(len(rig.vertices_rest)),
        joints=int(rig.skeleton.joint_count),
    )
    return result


def rig_for_clip_job(params: dict, settings: ComputeSettings, report: Report) -> dict:
    """The rig file for the clip at params["clip_path"] (its body model, shape and rest pose).

    Result: {"rig_path": str}.
    """
    if not params.get("clip_path"):
        raise AvatarCaptureError("the body job needs a clip_path (the motion clip to build a body for)")
    report("Preparing the body", 0.0, "reading the clip")
    clip = load_clip(params["clip_path"])
    _, path = rig_file_for_clip(clip, settings, scaled_report(report, 0.1, 1.0))
    report("Preparing the body", 1.0, f"rig {path.name}")
    return {"rig_path": str(path)}

""""Check set-up": what the add-on finds and misses, in plain words (no bpy here).

Why a separate probe process: the question is what the *compute* Python can do (the
one worker jobs run in, maybe an external CUDA environment), not what Blender's own
process can import, and importing torch inside Blender is exactly what we avoid. The
probe runs with the same environment as a worker job (runner.worker_environment), so
it sees the same bundled wheels and the same copy of this package.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Iterable, NamedTuple

from .errors import AvatarCaptureError
from .jobs.runner import resolve_python, worker_environment
from .settings import ComputeSettings

PROBE_TIMEOUT_S = 120.0

# Runs inside the compute Python: import each module named in argv, print one JSON line.
_PROBE = r"""
import importlib, importlib.metadata, json, sys
out = {"python": sys.version.split()[0], "modules": {}, "errors": {}}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        out["errors"][name] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        continue
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(module, "__version__", "") or ""
    out["modules"][name] = version
if "torch" in out["modules"]:
    import torch
    out["cuda"] = bool(torch.cuda.is_available())
    out["cuda_device"] = torch.cuda.get_device_name(0) if out["cuda"] else ""
    out["torch_cuda_build"] = torch.version.cuda or ""
print(json.dumps(out))
"""


class CheckLine(NamedTuple):
    """ok: False means something the user should fix (shown as a warning)."""

    ok: bool
    text: str


def check_setup(settings: ComputeSettings, extra_paths: Iterable[str | os.PathLike] = ()) -> list[CheckLine]:
    """Every line the "Check set-up" button shows, in the order a user would fix them."""
    lines = _check_compute_python(settings, list(extra_paths))
    if settings.body_model == "anny":
        lines.append(_check_anny_cache(settings))
    else:
        lines += _check_model_folder(settings)
    lines.append(_check_cache_folder(settings))
    return lines


def _probe(settings: ComputeSettings, extra_paths: list) -> dict:
    """Run the probe in the compute Python; AvatarCaptureError with a plain reason if it cannot."""
    python = resolve_python(settings)
    modules = ["avatar_capture", "numpy", "torch", "anny", "smplx"]
    if settings.device != "cpu":
        modules.append("gsplat")
    try:
        done = subprocess.run([python, "-c", _PROBE, *modules], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, env=worker_environment(settings, extra_paths))
    except subprocess.TimeoutExpired:
        raise AvatarCaptureError(f"Compute Python {python} did not answer within {PROBE_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise AvatarCaptureError(f"Compute Python {python} cannot run: {exc.strerror or exc}") from None
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AvatarCaptureError(f"Compute Python {python} failed to start ({last})") from None


def _check_compute_python(settings: ComputeSettings, extra_paths: list) -> list[CheckLine]:
    python = resolve_python(settings)
    which = "external environment" if settings.python else "Blender's own, with the bundled wheels"
    if shutil.which(python) is None:
        return [CheckLine(False, f"Compute Python not found: {python}. Choose an existing Python executable "
                                 "in the preferences, or leave it empty to use Blender's own")]
    try:
        found = _probe(settings, extra_paths)
    except AvatarCaptureError as exc:
        return [CheckLine(False, str(exc))]
    modules, errors = found["modules"], found["errors"]
    lines = [CheckLine(True, f"Compute Python: {python} (Python {found['python']}, {which})")]

    def missing(name: str, why: str) -> CheckLine:
        reason = errors.get(name, "not installed")
        return CheckLine(False, f"{name} cannot be imported in the compute Python ({reason}): {why}")

    if "avatar_capture" in modules:
        lines.append(CheckLine(True, "The compute Python can run Avatar Capture's worker jobs"))
    else:
        lines.append(missing("avatar_capture", "worker jobs cannot start"))
    for name, why, needed in (
        ("numpy", "every job needs it", True),
        ("torch", "body models and capture need it; install the extension with its wheels "
                  "or choose a Python environment that has torch", True),
        ("anny", "the Anny body model needs it", settings.body_model == "anny"),
        ("smplx", "the SMPL / SMPL-X body models need it", settings.body_model != "anny"),
    ):
        if name in modules:
            lines.append(CheckLine(True, f"{name} {modules[name]}".rstrip()))
        elif needed:
            lines.append(missing(name, why))
        else:
            lines.append(CheckLine(True, f"{name} not installed (not needed for the chosen body model)"))
    if "torch" in modules:
        lines.append(_device_line(settings, found))
    if settings.device != "cpu":
        if "gsplat" in modules:
            lines.append(CheckLine(True, f"gsplat {modules['gsplat']} (Gaussian splats; needs CUDA)"))
        else:
            lines.append(CheckLine(settings.device != "cuda",
                                   "gsplat not installed (optional: Gaussian splat avatars on a CUDA GPU)"))
    return lines


def _device_line(settings: ComputeSettings, found: dict) -> CheckLine:
    if settings.device == "cpu":
        return CheckLine(True, "Device: CPU (as chosen in the preferences)")
    if found.get("cuda"):
        return CheckLine(True, f"CUDA GPU: {found['cuda_device']} (torch built for CUDA {found['torch_cuda_build']})")
    if settings.device == "cuda":
        reason = "torch is a CPU-only build" if not found.get("torch_cuda_build") else "no usable GPU or driver"
        return CheckLine(False, f"Device is set to CUDA but the compute Python cannot use a GPU ({reason})")
    return CheckLine(True, "No CUDA GPU available: jobs run on the CPU")


def _check_anny_cache(settings: ComputeSettings) -> CheckLine:
    from .body.anny_body import anny_cache_ready

    folder = settings.anny_cache_path
    if anny_cache_ready(settings):
        return CheckLine(True, f"Anny cache is ready ({folder}): bodies build in seconds")
    return CheckLine(False, f"Anny cache is not built yet ({folder}): press 'Build body model' once "
                            "(about a minute)")


def _check_model_folder(settings: ComputeSettings) -> list[CheckLine]:
    from .body.smpl_body import check_model_folder

    problems = check_model_folder(settings.body_model, settings.model_folder)
    if not problems:
        label = {"smpl": "SMPL", "smplx": "SMPL-X"}[settings.body_model]
        return [CheckLine(True, f"{label} model files found in {settings.model_folder}")]
    return [CheckLine(False, problem) for problem in problems]


def _check_cache_folder(settings: ComputeSettings) -> CheckLine:
    folder = settings.cache_path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return CheckLine(False, f"Cache folder {folder} is not writable ({exc.strerror or exc}): "
                                "choose another in the preferences")
    free_gb = shutil.disk_usage(folder).free / 1e9
    return CheckLine(free_gb > 1.0, f"Cache folder: {folder} (writable, {free_gb:.1f} GB free)")

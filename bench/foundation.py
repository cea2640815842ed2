"""Foundation timings, printed as JSON: register, Anny warm (and optionally cold) start, rig
cache read, import of a 300-frame clip, each export, and the extension zip size.

Usage: .venv/bin/python bench/foundation.py [--cold] [--frames 300]
Figures are wall-clock seconds on this machine; run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_REGISTER = """
import json, time
import bpy
t0 = time.perf_counter()
import avatar_capture
avatar_capture.register()
t1 = time.perf_counter()
avatar_capture.unregister()
t2 = time.perf_counter()
print(json.dumps({"import_register_s": t1 - t0, "unregister_s": t2 - t1}))
"""

_ANNY_START = """
import json, sys, time
from avatar_capture.core.settings import ComputeSettings
from avatar_capture.core.body.anny_body import build_anny_rig, load_anny_model
settings = ComputeSettings(cache_dir=sys.argv[1])
t0 = time.perf_counter(); import torch, anny; t1 = time.perf_counter()
load_anny_model(settings); t2 = time.perf_counter()
build_anny_rig(settings); t3 = time.perf_counter()
print(json.dumps({"import_torch_anny_s": t1 - t0, "model_s": t2 - t1, "rig_s": t3 - t2}))
"""


def _fresh_process(script: str, *args: str) -> dict:
    """Run a timing script in a new interpreter (nothing imported yet) and return its figures."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["process_s"] = time.perf_counter() - started
    return {key: round(value, 4) for key, value in figures.items()}


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a cold Anny cache build (~2 min, ~790 MB)")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # Blender's exporters print on stdout; the JSON owns it
        figures = _measure(args)
    print(json.dumps(figures, indent=2))


def _measure(args: argparse.Namespace) -> dict:
    import bpy

    import avatar_capture
    from avatar_capture.blender.export import export_avatar
    from avatar_capture.blender.import_scene import import_avatar
    from avatar_capture.core.body.models import cached_rig
    from avatar_capture.core.demo_motion import make_demo_clip
    from avatar_capture.core.settings import ComputeSettings

    settings = ComputeSettings()
    figures: dict = {"frames": args.frames}
    cached_rig(settings)  # warm the caches the timings below assume
    figures["register_fresh_process"] = _fresh_process(_REGISTER)
    figures["register_unregister_again_s"] = round(
        _timed(avatar_capture.register) + _timed(avatar_capture.unregister), 4)
    figures["anny_warm"] = _fresh_process(_ANNY_START, str(settings.cache_path))
    if args.cold:
        with tempfile.TemporaryDirectory() as cold_cache:
            figures["anny_cold"] = _fresh_process(_ANNY_START, cold_cache)

    started = time.perf_counter()
    rig, _ = cached_rig(settings)
    figures["rig_from_cache_s"] = round(time.perf_counter() - started, 3)
    clip = make_demo_clip(rig, seconds=args.frames / 30.0, fps=30.0)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    started = time.perf_counter()
    armature = import_avatar(bpy.context, clip, rig, "Bench")
    figures["import_s"] = round(time.perf_counter() - started, 3)

    exports = {}
    with tempfile.TemporaryDirectory() as folder:
        for file_format, suffix, rest in (("FBX", ".fbx", "AS_IS"), ("GLB", ".glb", "AS_IS"),
                                          ("BVH", ".bvh", "AS_IS"), ("FBX", ".fbx", "T_POSE")):
            path = Path(folder) / f"bench-{rest}{suffix}"
            exports[f"{file_format}_{rest}"] = _timed(export_avatar, bpy.context.scene, armature, path,
                                                      file_format, rest)
    figures["export_s"] = exports
    zips = sorted((REPO / "dist").glob("*.zip"))
    figures["extension_zip_mb"] = {z.name: round(z.stat().st_size / 2**20, 1) for z in zips}
    return figures


if __name__ == "__main__":
    main()

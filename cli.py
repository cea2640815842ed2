"""``avatarcap``: the command line for Avatar Capture (body cache, capture, clip import/export, retarget,
splats, demo).

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
from typing import Callable

from .core.capture.options import QUALITY_PRESETS
from .core.errors import AvatarCaptureError
from .core.settings import BODY_MODELS, DEVICES, ComputeSettings, default_cache_dir

PROG = "avatarcap"
REST_POSES = {"as-is": "AS_IS", "t-pose": "T_POSE", "a-pose": "A_POSE"}
EXIT_USER_ERROR = 2
EXIT_CRASH = 1
SPLAT_ENGINES = ("reference", "viewport")
DEFAULT_SPLAT_SIZE = 512
DEMO_VIDEO = Path(__file__).resolve().parent / "assets" / "demo_capture.mp4"


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


def _capture(args: argparse.Namespace) -> None:
    from .core.capture.options import CaptureOptions

    options = CaptureOptions(start=args.start, end=args.end, fov_degrees=args.fov, moving_camera=args.moving_camera,
                             box=args.box, quality=args.quality)
    scene_outputs = {kind: getattr(args, kind) for kind in ("blend", "fbx", "glb") if getattr(args, kind)}
    _capture_to(Path(args.video), options, settings_from(args), Path(args.output),
                Path(args.preview) if args.preview else None, scene_outputs, Path(args.video).stem)


def _capture_to(video: Path, options, settings: ComputeSettings, clip_path: Path, preview: Path | None,
                scene_outputs: dict[str, Path], name: str) -> None:
    """Capture video and write the clip, the overlay and the scene files, all or nothing."""
    from .core.capture.jobs import RateReport, check_capture_outputs, frames_to_capture
    from .core.capture.pipeline import capture_video
    from .core.clip import save_clip

    check_capture_outputs(clip_path, preview)
    _check_outputs(scene_outputs.values())
    started = time.perf_counter()
    report = RateReport(progress, frames_to_capture(video, options))
    result = capture_video(video, options, settings, report=report)
    clip = result.clip
    seconds = time.perf_counter() - started
    print(f"captured {clip.frame_count} frames in {seconds:.1f} s ({clip.frame_count / seconds:.1f} frames/s)",
          file=sys.stderr)
    files = {clip_path: lambda target: save_clip(clip, target)}
    if preview is not None:
        files[preview] = lambda target: _write_preview(video, clip, target, result.rig)
    _write_scene(clip, result.rig, name, scene_outputs, "AS_IS", files=files, video=video)
    lost = clip.extras.get("frame_lost")
    if lost is not None and lost.any():
        frames = clip.extras.get("source_frames")
        where = ", ".join(str(int(f)) for f in frames[lost.astype(bool)][:20])
        print(f"warning: the subject was lost on {int(lost.sum())} of {clip.frame_count} frames "
              f"(video frames {where}{' ...' if lost.sum() > 20 else ''})", file=sys.stderr)


def _write_preview(video: Path, clip, target: Path, rig) -> None:
    from .core.capture.overlay import write_overlay

    stats = write_overlay(video, clip, target, rig, report=progress)
    print(f"overlay: {stats.frames} frames at {stats.size[0]}x{stats.size[1]}, "
          f"{stats.ms_per_frame:.1f} ms per frame", file=sys.stderr)


def _demo(args: argparse.Namespace) -> None:
    from .core.capture.options import CaptureOptions

    started = time.perf_counter()
    if not DEMO_VIDEO.is_file():
        raise AvatarCaptureError(f"{DEMO_VIDEO}: the demo video is missing from this checkout")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AvatarCaptureError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    outputs = {kind: out / f"demo.{kind}" for kind in ("blend", "fbx", "glb")}
    _capture_to(DEMO_VIDEO, CaptureOptions(), settings_from(args), out / "demo.npz", out / "demo_overlay.mp4",
                outputs, "demo")
    print(f"demo written to {out} in {time.perf_counter() - started:.1f} s")


def _splat_render(args: argparse.Namespace) -> None:
    """Render a splat file to an RGBA PNG with the reference rasterizer or the viewport shaders."""
    from .core.atomic_files import atomic_output
    from .core.splats.ply import read_splats

    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise AvatarCaptureError(f"{output}: the image is written as PNG; give a file name ending in .png")
    _check_outputs([output])
    camera = _splat_camera(args)
    gaussians = read_splats(args.splats)
    if camera is None:
        from .core.splats.camera import framing_camera

        camera = framing_camera(gaussians.means, args.width or DEFAULT_SPLAT_SIZE,
                                args.height or DEFAULT_SPLAT_SIZE)
    started = time.perf_counter()
    rgba = _render_splats(gaussians, camera, args.engine, args.sh_degree)
    print(f"rendered {gaussians.count} splats at {camera.width}x{camera.height} with the {args.engine} engine "
          f"in {time.perf_counter() - started:.2f} s", file=sys.stderr)
    png = _png_bytes(rgba, output)
    with atomic_output(output) as target:
        target.write_bytes(png)
    print(f"wrote {output}")


def _splat_camera(args: argparse.Namespace):
    """The --camera file's camera (its K rescaled when --width/--height ask for another size), or None."""
    if not args.camera:
        return None
    from dataclasses import replace

    import numpy as np

    from .core.splats.camera import camera_from_json

    camera = camera_from_json(args.camera)
    width, height = args.width or camera.width, args.height or camera.height
    if (width, height) == (camera.width, camera.height):
        return camera
    return replace(camera, K=np.diag([width / camera.width, height / camera.height, 1.0]) @ camera.K,
                   width=width, height=height)


def _render_splats(gaussians, camera, engine: str, sh_degree: int | None):
    """Premultiplied RGBA (H, W, 4) float32, top row first."""
    import numpy as np

    if engine == "reference":
        from .core.splats.render import render

        image = render(gaussians, camera, sh_degree=sh_degree)
        return np.concatenate([image.colour, image.alpha[..., None]], axis=-1)
    with redirect_stdout(sys.stderr):  # Blender chats on stdout
        from .blender.splat_offscreen import render_offscreen

        return render_offscreen([gaussians], camera, sh_degree=sh_degree)


def _png_bytes(rgba, output: Path) -> bytes:
    """8-bit RGBA PNG bytes with straight alpha from premultiplied float RGBA (H, W, 4)."""
    import cv2
    import numpy as np

    rgba = np.asarray(rgba, np.float64)
    alpha = rgba[..., 3:].clip(0.0, 1.0)
    colour = np.divide(rgba[..., :3], alpha, out=np.zeros_like(rgba[..., :3]), where=alpha > 0.0)
    straight = np.concatenate([colour, alpha], axis=-1).clip(0.0, 1.0)
    pixels = np.round(straight * 255.0).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise AvatarCaptureError(f"{output}: could not encode the PNG image")
    return encoded.tobytes()


def _splat_export(args: argparse.Namespace) -> None:
    """Write a splat file as GLB (KHR_gaussian_splatting) and/or standard 3DGS PLY, all or nothing."""
    from .core.atomic_files import atomic_output
    from .core.splats.gltf import write_glb
    from .core.splats.ply import read_splats, write_ply

    outputs = {kind: Path(getattr(args, kind)) for kind in ("glb", "ply") if getattr(args, kind)}
    if not outputs:
        raise AvatarCaptureError("nothing to write: give at least one of --glb, --ply")
    _check_outputs(outputs.values())
    gaussians = read_splats(args.splats)
    writers = {"glb": write_glb, "ply": write_ply}
    with ExitStack() as stack:
        for kind, path in outputs.items():
            writers[kind](gaussians, stack.enter_context(atomic_output(path)))
    for path in outputs.values():
        print(f"wrote {path}")


def _retarget(args: argparse.Namespace) -> None:
    """Retarget a clip or BVH onto a rig file and write the rig with the motion (or the clip), atomically."""
    output = Path(args.output)
    with redirect_stdout(sys.stderr):  # Blender chats on stdout
        from .blender.retarget_files import (OUTPUT_EXTENSIONS, SOURCE_EXTENSIONS, TARGET_EXTENSIONS,
                                             check_extension, retarget_file)

        check_extension(args.source, SOURCE_EXTENSIONS, "source motion")
        check_extension(args.target, TARGET_EXTENSIONS, "target rig")
        check_extension(output, OUTPUT_EXTENSIONS, "output")
        _check_outputs([output])
        import bpy

        bpy.ops.wm.read_factory_settings(use_empty=True)
        result = retarget_file(args.source, args.target, output, mapping=args.mapping,
                               source_mapping=args.source_mapping, armature_name=args.armature,
                               in_place=args.in_place, foot_lock=not args.no_foot_lock, hand_ik=args.hand_ik)
    clip = result.clip
    print(f"retargeted {clip.frame_count} frames at {clip.fps:g} fps onto '{result.armature}' "
          f"({result.source_mapping} -> {result.target_mapping} mapping) in {result.bake_seconds:.2f} s",
          file=sys.stderr)
    print(f"wrote {output}")


def _bvh(args: argparse.Namespace) -> None:
    """Convert a BVH file into a motion clip (skeleton, rotations, landmarks, contacts), atomically."""
    from .core.clip import save_clip
    from .core.retarget.bvh_clip import clip_from_bvh

    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise AvatarCaptureError(f"{output}: the motion clip must be a .npz file")
    _check_outputs([output])
    clip = clip_from_bvh(args.bvh, scale=args.scale)
    save_clip(clip, output)
    print(f"{clip.frame_count} frames at {clip.fps:g} fps, {clip.skeleton.joint_count} bones, "
          f"{len(clip.landmark_names)} landmarks, contacts on {int((clip.contacts > 0.5).any(axis=1).sum())} frames",
          file=sys.stderr)
    print(f"wrote {output}")


def _check_outputs(paths) -> None:
    """Fail before any work when an output folder cannot be written (so nothing is left half done)."""
    from .core.atomic_files import check_writable

    for path in paths:
        check_writable(path)


def _write_scene(clip, rig, name: str, outputs: dict[str, Path], rest_pose: str,
                 files: dict[Path, Callable[[Path], object]] | None = None, video: Path | None = None) -> None:
    """Import clip (and rig) into an empty Blender scene, then write every output atomically,
    together with `files` (path -> function writing that file to the staged path it is given).

    With `video`, the scene is built as a capture's (blender/capture_scene.py): the video
    plays behind the clip's camera and contacts are marked on the timeline. Blender is
    not started when there are no outputs, only files.
    """
    from .core.atomic_files import atomic_output

    outputs = {kind: Path(path) for kind, path in outputs.items()}
    files = files or {}
    with redirect_stdout(sys.stderr):  # Blender's exporters chat on stdout
        with ExitStack() as stack:
            for path, write in files.items():
                progress("write", 0.0, f"{path}")
                write(stack.enter_context(atomic_output(path)))
            if outputs:
                _write_blender_outputs(clip, rig, name, outputs, rest_pose, video, stack)
    for path in list(files) + list(outputs.values()):
        print(f"wrote {path}")


def _write_blender_outputs(clip, rig, name: str, outputs: dict[str, Path], rest_pose: str, video: Path | None,
                           stack: ExitStack) -> None:
    """Build the scene in Blender and stage each output in `stack` (moved into place when it closes)."""
    import bpy

    from .blender.export import export_avatar, save_blend_copy
    from .core.atomic_files import atomic_output

    progress("blender", 0.0, "building the scene")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if video is not None:
        from .blender.capture_scene import import_capture

        armature = import_capture(bpy.context, clip, rig, name, video_path=video.resolve()).armature
    else:
        from .blender.import_scene import import_avatar

        armature = import_avatar(bpy.context, clip, rig, name)
    for number, (kind, path) in enumerate(outputs.items()):
        progress("write", number / len(outputs), f"{kind} -> {path}")
        target = stack.enter_context(atomic_output(path))
        if kind == "blend":
            save_blend_copy(target)
        else:
            export_avatar(bpy.context.scene, armature, target, kind.upper(), rest_pose)


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


def _box(text: str) -> tuple[float, float, float, float]:
    """--box value "x0,y0,x1,y1" -> four numbers."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"'{text}' is not four numbers x0,y0,x1,y1")
    return values


def _pixels(text: str) -> int:
    """--width / --height value: a whole number of pixels, 1..16384."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= 16384:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of pixels between 1 and 16384")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Avatar Capture from the command line: build the body model, capture a video, "
        "import a motion clip into Blender and export it (FBX, glTF, BVH), convert a BVH file into a clip, "
        "retarget motion onto a rig, render or export Gaussian splats, or make the demo.")
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

    capture = commands.add_parser(
        "capture", help="capture the motion of the person in a video as a motion clip",
        description="Capture the motion of one person in a video: BlazePose keypoints, the camera and a "
        "whole-sequence fit of the body model. Writes the motion clip and, on request, an overlay video "
        "(the video with the fitted body drawn over it) and a .blend (with the video behind the capture "
        "camera), FBX or GLB. Frame numbers count video frames from 0.")
    capture.add_argument("video", metavar="VIDEO", help="video file (mp4, mov, avi, mkv, ...)")
    capture.add_argument("-o", "--output", metavar="CLIP.npz", required=True, help="motion clip to write")
    capture.add_argument("--preview", metavar="OVERLAY.mp4", help="write the video with the fitted body drawn over it")
    capture.add_argument("--blend", metavar="FILE", help="save the scene (avatar, camera, video background) as .blend")
    capture.add_argument("--fbx", metavar="FILE", help="export FBX (armature, body, motion baked on every frame)")
    capture.add_argument("--glb", metavar="FILE", help="export glTF binary (all skin influences)")
    capture.add_argument("--start", metavar="N", type=int, default=0, help="first video frame (default: 0)")
    capture.add_argument("--end", metavar="N", type=int, help="video frame to stop before (default: the end)")
    capture.add_argument("--fov", metavar="DEG", type=float,
                         help="horizontal field of view of the camera in degrees (default: estimated)")
    capture.add_argument("--moving-camera", action="store_true",
                         help="the camera pans or walks (estimate its motion from the background)")
    capture.add_argument("--box", metavar="X0,Y0,X1,Y1", type=_box,
                         help="capture the person inside this box of the first frame (pixels) instead of the "
                         "most prominent one")
    capture.add_argument("--quality", choices=QUALITY_PRESETS, default="balanced",
                         help="how hard the fit works (default: balanced)")
    _add_settings_options(capture, defaults=False)
    capture.set_defaults(run=_capture)

    splat = commands.add_parser("splat", help="Gaussian splat commands (render, export)",
                                description="Gaussian splat clouds: render one to an image, export it.")
    splat_commands = splat.add_subparsers(dest="splat_command", required=True, metavar="COMMAND")
    render = splat_commands.add_parser(
        "render", help="render a splat cloud to an RGBA PNG",
        description="Render a splat cloud (3DGS .ply or .npz) to an RGBA PNG (straight alpha). Without --camera "
        "the camera looks at the whole cloud from the front (-Y), a little above, with a 40 degree field of view.")
    render.add_argument("splats", metavar="PLY", help="splat file (3DGS .ply or avatar-capture .npz)")
    render.add_argument("-o", "--output", metavar="PNG", required=True, help="image to write (.png)")
    render.add_argument("--width", metavar="W", type=_pixels,
                        help=f"image width in pixels (default: the camera file's, else {DEFAULT_SPLAT_SIZE})")
    render.add_argument("--height", metavar="H", type=_pixels,
                        help=f"image height in pixels (default: the camera file's, else {DEFAULT_SPLAT_SIZE})")
    render.add_argument("--camera", metavar="JSON",
                        help='camera file: {"width", "height", "K" or "fov_deg", "world_to_cam" (OpenCV) or "eye" '
                        'and "target" (world metres, Z up)}; --width/--height rescale it')
    render.add_argument("--engine", choices=SPLAT_ENGINES, default="reference",
                        help="reference: the CPU/CUDA rasterizer; viewport: the viewport's shaders in headless "
                        "Blender (default: reference)")
    render.add_argument("--sh-degree", metavar="N", type=int, choices=range(4),
                        help="highest SH band used for the colour, 0-3 (default: all the file has)")
    render.set_defaults(run=_splat_render)
    export = splat_commands.add_parser(
        "export", help="export a splat cloud as glTF binary (KHR_gaussian_splatting) and/or 3DGS PLY",
        description="Export a splat cloud (3DGS .ply or .npz) as GLB with the KHR_gaussian_splatting extension "
        "(a point cloud with COLOR_0 in viewers without it; a skinned cloud also gets a glTF skin) and/or as a "
        "standard 3DGS PLY.")
    export.add_argument("splats", metavar="PLY", help="splat file (3DGS .ply or avatar-capture .npz)")
    export.add_argument("--glb", metavar="FILE", help="write glTF binary with KHR_gaussian_splatting")
    export.add_argument("--ply", metavar="FILE",
                        help="write a 3DGS PLY (binary little endian, standard properties; a skinned cloud also "
                        "keeps its bone indices and weights as extra properties other tools ignore)")
    export.set_defaults(run=_splat_export)

    bvh = commands.add_parser(
        "bvh", help="convert a BVH file into a motion clip",
        description="Read a BVH file (any joint names; units guessed from the rest height unless --scale says) "
        "as a motion clip: skeleton and rotations in Blender's world frame, landmarks found through the bone "
        "mapping, foot contacts from the low-and-slow detector. The clip then imports, exports and retargets "
        "like a captured one.")
    bvh.add_argument("bvh", metavar="FILE.bvh", help="BVH file")
    bvh.add_argument("-o", "--output", metavar="CLIP.npz", required=True, help="motion clip to write")
    bvh.add_argument("--scale", type=float, help="metres per file unit (default: guessed from the rest height)")
    bvh.set_defaults(run=_bvh)

    retarget = commands.add_parser(
        "retarget", help="retarget a motion clip or BVH onto a rig file (FBX, glTF, .blend)",
        description="Retarget a motion clip (.npz) or BVH file onto the humanoid armature of a rig file (FBX, glTF "
        "or .blend) and write the rig itself (its bones, rest pose, proportions and meshes) carrying the motion as "
        "a new action at the source's frame rate: FBX, GLB or .blend; or the retargeted clip on the rig's "
        "skeleton (.npz). Bone mappings are found automatically unless given.")
    retarget.add_argument("source", metavar="CLIP_OR_BVH", help="source motion (.npz clip or .bvh)")
    retarget.add_argument("--target", metavar="RIG", required=True, help="rig file (.fbx, .glb, .gltf, .blend)")
    retarget.add_argument("-o", "--output", metavar="OUT", required=True,
                          help="file to write (.fbx, .glb, .blend, or .npz for the clip)")
    retarget.add_argument("--mapping", metavar="PRESET_OR_JSON",
                          help="the target rig's bone mapping: a preset name or a mapping .json file "
                          "(default: found automatically)")
    retarget.add_argument("--source-mapping", metavar="PRESET_OR_JSON",
                          help="the source's bone mapping (default: found automatically)")
    retarget.add_argument("--armature", metavar="NAME", help="the armature to use when the file has several")
    retarget.add_argument("--in-place", action="store_true", help="drop the horizontal root motion")
    retarget.add_argument("--no-foot-lock", action="store_true",
                          help="do not keep the feet planted on the clip's contact frames")
    retarget.add_argument("--hand-ik", action="store_true", help="reach the source's hand positions with IK")
    retarget.set_defaults(run=_retarget)

    demo = commands.add_parser(
        "demo", help="capture the demo video and write demo.npz, demo_overlay.mp4, .blend, .fbx, .glb",
        description="Capture the project's demo video (a walking body rendered by Blender) and write "
        "DIR/demo.npz, demo_overlay.mp4, demo.blend, demo.fbx and demo.glb.")
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

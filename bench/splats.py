"""Splat viewport timings, printed as JSON, for synthetic clouds of 100k and 1M splats.

Usage: .venv/bin/python bench/splats.py [--counts 100000 1000000] [--sh-degree 3]

For each count: PLY import (core.splats.ply.read_ply + blender.splat_object.create_splat_object; the PLY is
written to a temporary folder, never into the repository), GPU packing and texture upload,
the back-to-front sort that runs off the main thread (timed inside the worker; also skinned),
and the main thread's cost per redraw of the draw handler's code with a static and with a
moving view (orbiting 0.5 degrees per redraw at 60 redraws/s: each finished sort is picked
up and uploaded by the next redraw, and a new one starts).
Then a skinned 100k cloud on a 20-bone armature, static and while a bone turns (bone
matrices read every redraw, re-sorted off-thread).

Redraws are timed twice: "python" replaces the instanced draw call with a no-op, which is the
handler's own cost; "with_draw" keeps it, and on this machine's Mesa llvmpipe the draw call
itself shades the 4 vertices of every splat on the CPU, so that figure says nothing about a
real GPU. The offscreen frame time is llvmpipe too (CPU-rendered).
Wall-clock seconds/milliseconds; 2 shared cores: figures are noisy.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import bpy
import numpy as np

from avatar_capture.blender import splat_draw, splat_gpu
from avatar_capture.blender.splat_object import create_splat_object
from avatar_capture.blender.splat_offscreen import buffer_to_array, ensure_gpu, projection_matrix, view_matrix
from avatar_capture.core.splats.camera import SplatCamera, framing_camera
from avatar_capture.core.splats.gaussians import SplatSkin, make_gaussians
from avatar_capture.core.splats.ply import read_ply, write_ply

WIDTH, HEIGHT = 1280, 720


def synthetic_cloud(n: int, degree: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return make_gaussians(rng.normal(size=(n, 3)).astype(np.float32) * 0.5, rng.normal(size=(n, 4)),
                          rng.uniform(-6.0, -4.0, (n, 3)), rng.normal(size=n),
                          rng.normal(size=(n, (degree + 1) ** 2, 3)).astype(np.float32) * 0.3)


def with_random_skin(g, bones: int = 20, seed: int = 1):
    rng = np.random.default_rng(seed)
    skin = SplatSkin(tuple(f"b{i}" for i in range(bones)), np.arange(bones) - 1, np.tile(np.eye(4), (bones, 1, 1)),
                     rng.integers(0, bones, (g.count, 4)).astype(np.int32),
                     rng.dirichlet(np.ones(4), g.count).astype(np.float32))
    return make_gaussians(g.means, g.rotations, g.log_scales, g.logit_opacities, g.sh, skin=skin)


def orbit(camera: SplatCamera, degrees: float) -> SplatCamera:
    """The camera turned about the world Z axis through the origin."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    turn = np.array([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    return SplatCamera(camera.K, camera.world_to_cam @ turn, camera.width, camera.height)


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def time_in_thread(function, *args) -> float:
    """Seconds function(*args) takes on a worker thread, as the draw handler runs its sorts."""
    box = {}

    def work():
        box["seconds"] = timed(function, *args)[0]

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return box["seconds"]


class _NoDraw:
    """Stands in for the quad batch: the instanced draw call does nothing (handler cost only)."""

    def draw_instanced(self, *_args, **_kwargs) -> None:
        pass


def redraw_ms(camera_for_frame, frames: int, stub_draw: bool, fps: float | None = None) -> dict:
    """Main-thread ms per call of the draw handler's drawing code, inside a bound offscreen buffer.

    fps paces the redraws like a viewport does (so sorts finish between them and their orders
    get uploaded); orders_uploaded counts the sorted orders the redraws picked up.
    """
    import gpu

    context = SimpleNamespace(scene=bpy.context.scene, view_layer=bpy.context.view_layer, space_data=None)
    original = splat_gpu._quad_batch
    if stub_draw:
        splat_gpu._quad_batch = _NoDraw
    offscreen = gpu.types.GPUOffScreen(WIDTH, HEIGHT, format="RGBA16F")
    times, orders, uploaded = [], set(), 0
    try:
        with offscreen.bind():
            for frame in range(frames):
                camera = camera_for_frame(frame)
                started = time.perf_counter()
                splat_draw.draw_view_guarded(context, view_matrix(camera), projection_matrix(camera),
                                             WIDTH, HEIGHT, 1)
                times.append(time.perf_counter() - started)
                current = {s.order for e in splat_draw._entries.values() for s in e.views.values()
                           if s.order is not None}
                uploaded += len(current - orders)
                orders = current
                if fps is not None:
                    time.sleep(max(0.0, 1.0 / fps - times[-1]))
    finally:
        splat_gpu._quad_batch = original
        offscreen.free()
    if splat_gpu.disabled_reason is not None:
        raise RuntimeError(splat_gpu.disabled_reason)
    times_ms = np.array(times) * 1000.0
    return {"median_ms": round(float(np.median(times_ms)), 3), "mean_ms": round(float(times_ms.mean()), 3),
            "max_ms": round(float(times_ms.max()), 3), "orders_uploaded": uploaded}


def wait_for_sorts() -> None:
    for entry in splat_draw._entries.values():
        for state in entry.views.values():
            if state.pending is not None:
                state.pending.result()


def offscreen_frame_s(camera: SplatCamera) -> float:
    """Seconds for one llvmpipe frame of the splats (draw + finish), minus a plain readback."""
    import gpu

    context = SimpleNamespace(scene=bpy.context.scene, view_layer=bpy.context.view_layer, space_data=None)
    offscreen = gpu.types.GPUOffScreen(WIDTH, HEIGHT, format="RGBA16F")
    try:
        with offscreen.bind():
            read_only, _ = timed(lambda: buffer_to_array(offscreen.texture_color.read()))
            started = time.perf_counter()
            splat_draw.draw_view_guarded(context, view_matrix(camera), projection_matrix(camera), WIDTH, HEIGHT, 1)
            buffer_to_array(offscreen.texture_color.read())
            return time.perf_counter() - started - read_only
    finally:
        offscreen.free()


def bench_count(n: int, degree: int, folder: Path) -> dict:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    import avatar_capture

    avatar_capture.register()
    try:
        g = synthetic_cloud(n, degree)
        path = folder / f"bench_{n}.ply"
        write_ply(g, path, standard_only=True)
        read_s, loaded = timed(read_ply, path)
        create_s, obj = timed(create_splat_object, loaded, "Bench")
        bpy.context.view_layer.update()
        path.unlink()

        pack_s = timed(lambda: (splat_gpu.pack_geometry(g), splat_gpu.pack_sh(g)))[0]
        upload_s, cloud = timed(splat_gpu.upload, g)
        geometry, sh = splat_gpu.pack_geometry(g), splat_gpu.pack_sh(g)
        sh32_s = timed(splat_gpu._texture, sh, "RGBA32F")[0]
        sh16_s = timed(splat_gpu._texture, sh, "RGBA16F")[0]
        order_s = timed(splat_gpu.order_texture, np.arange(n))[0]
        del cloud

        camera = framing_camera(g.means, WIDTH, HEIGHT)
        model_view = view_matrix(camera)
        sort_s = [time_in_thread(splat_draw.back_to_front_order, g, model_view, None) for _ in range(3)]
        skinned = with_random_skin(g)
        skinning = np.tile(np.eye(4), (20, 1, 1))
        skinned_sort_s = [time_in_thread(splat_draw.back_to_front_order, skinned, model_view, skinning)
                          for _ in range(2)]

        first_draw_s = timed(redraw_ms, lambda f: camera, 1, True)[0]  # reads the object, uploads, starts a sort
        wait_for_sorts()
        static_python = redraw_ms(lambda f: camera, 30, True)
        static_with_draw = redraw_ms(lambda f: camera, 2, False)
        moving_python = redraw_ms(lambda f: orbit(camera, 0.5 * (f + 1)), 60, True, fps=60.0)
        wait_for_sorts()
        frame_s = offscreen_frame_s(camera)

        texels = splat_gpu.sh_texels_per_splat(g.sh.shape[1])
        return {
            "splats": n, "sh_degree": degree,
            "ply_import_s": {"read_ply": round(read_s, 3), "create_splat_object": round(create_s, 3),
                             "total": round(read_s + create_s, 3)},
            "gpu_upload_s": {"pack_numpy": round(pack_s, 3), "pack_and_upload_all": round(upload_s, 3),
                             "sh_texture_rgba16f": round(sh16_s, 3), "sh_texture_rgba32f": round(sh32_s, 3),
                             "order_texture": round(order_s, 4),
                             "first_redraw_incl_read_and_upload": round(first_draw_s, 3)},
            "gpu_memory_mb": {"geometry_rgba32f": round(geometry.nbytes / 2 ** 20, 1),
                              "sh_rgba16f": round(n * texels * 8 / 2 ** 20, 1),
                              "sh_rgba32f": round(n * texels * 16 / 2 ** 20, 1),
                              "order_r32f": round(n * 4 / 2 ** 20, 1),
                              "skin_rgba32f_if_skinned": round(n * 32 / 2 ** 20, 1)},
            "sort_off_thread_ms": {"median": round(float(np.median(sort_s)) * 1000, 1),
                                   "skinned_20_bones": round(float(np.median(skinned_sort_s)) * 1000, 1)},
            "redraw_static": {"python": static_python, "with_draw_llvmpipe": static_with_draw},
            "redraw_moving_view_python": moving_python,
            "offscreen_frame_llvmpipe_s": round(frame_s, 3), "frame_size": [WIDTH, HEIGHT],
        }
    finally:
        avatar_capture.unregister()


def chain_armature(bones: int) -> bpy.types.Object:
    """An armature of ``bones`` deform bones b0..b{bones-1} in a chain up +Z, linked to the scene."""
    armature = bpy.data.objects.new("BenchRig", bpy.data.armatures.new("BenchRig"))
    bpy.context.scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    parent = None
    for i in range(bones):
        bone = armature.data.edit_bones.new(f"b{i}")
        bone.head, bone.tail, bone.parent = (0.0, 0.0, 0.1 * i), (0.0, 0.0, 0.1 * (i + 1)), parent
        parent = bone
    bpy.ops.object.mode_set(mode="OBJECT")
    return armature


def bench_skinned(n: int, bones: int) -> dict:
    """Redraw cost of a skinned cloud bound to an armature: static, and while the pose changes."""
    from avatar_capture.blender.splat_object import bind_to_armature

    bpy.ops.wm.read_factory_settings(use_empty=True)
    import avatar_capture

    avatar_capture.register()
    try:
        g = with_random_skin(synthetic_cloud(n, 0), bones)
        obj = create_splat_object(g, "Skinned")
        armature = chain_armature(bones)
        bind_to_armature(obj, armature)
        bpy.context.view_layer.update()
        camera = framing_camera(g.means, WIDTH, HEIGHT)
        redraw_ms(lambda f: camera, 1, True)
        wait_for_sorts()
        static = redraw_ms(lambda f: camera, 30, True)
        pose_bone = armature.pose.bones["b0"]
        pose_bone.rotation_mode = "XYZ"

        def posed_camera(frame: int) -> SplatCamera:
            pose_bone.rotation_euler = (0.01 * (frame + 1), 0.0, 0.0)
            bpy.context.view_layer.update()  # what Blender does before it redraws (not timed)
            return camera

        posing = redraw_ms(posed_camera, 60, True, fps=60.0)
        wait_for_sorts()
        return {"splats": n, "bones": bones, "redraw_static_python": static,
                "redraw_while_posing_python": posing}
    finally:
        avatar_capture.unregister()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--sh-degree", type=int, default=3, choices=range(4))
    parser.add_argument("--bones", type=int, default=104, help="bones of the skinned case (Anny has 104)")
    args = parser.parse_args()
    ensure_gpu()
    results = []
    with tempfile.TemporaryDirectory(prefix="avatar_splat_bench_") as folder:
        for n in args.counts:
            results.append(bench_count(n, args.sh_degree, Path(folder)))
    skinned = bench_skinned(100_000, args.bones)
    import gpu

    device = f"{gpu.platform.renderer_get()} ({gpu.platform.backend_type_get()}); {os.cpu_count()} CPU cores"
    print(json.dumps({"device": device, "results": results, "skinned": skinned}, indent=1))


if __name__ == "__main__":
    main()

"""CPU reference rasterizer timings, printed as JSON: forward, backward and total seconds for 10k random
Gaussians at 256x256 (target: total under 0.5 s) and for the real 3DGS PLY at 512x512 when present.

Usage: .venv/bin/python bench/splat_raster.py [--runs 7] [--threads 1 2]
Each figure is the median over --runs of wall-clock seconds (``*_s``) and of this process's CPU
seconds (``*_cpu_s``: with one thread, less sensitive to other processes on a shared machine).
The backward pass is a plain .backward() of a sum (an optimiser would add its own step).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

REAL_PLY = Path(__file__).resolve().parents[2] / "shared" / "media" / "splats" / "douglas0406_GSHairLoD__donut_fused.ply"


def random_scene(count: int, size: int):
    """count splats of about 2 cm in a 1.2 x 0.6 x 1.2 m box, SH degree 1, seen from 2.5 m."""
    import torch

    from avatar_capture.core.splats.camera import SplatCamera, intrinsics, look_at

    g = torch.Generator().manual_seed(0)
    params = [(torch.rand(count, 3, generator=g) - 0.5) * torch.tensor([1.2, 0.6, 1.2]),
              torch.randn(count, 4, generator=g), torch.randn(count, 3, generator=g) * 0.3 - 4.0,
              torch.randn(count, generator=g) * 2.0, torch.randn(count, 4, 3, generator=g) * 0.3]
    camera = SplatCamera(intrinsics(size, size, 40.0), look_at(np.array([0.0, -2.5, 0.0]), np.zeros(3)), size, size)
    return params, camera


def ply_scene(size: int):
    import torch

    from avatar_capture.core.splats.camera import framing_camera
    from avatar_capture.core.splats.ply import read_ply

    g = read_ply(REAL_PLY)
    params = [torch.from_numpy(a) for a in (g.means, g.rotations, g.log_scales, g.logit_opacities, g.sh)]
    return params, framing_camera(g.means, size, size)


def time_scene(params, camera, runs: int) -> dict:
    """Median forward (projection + rasterization), backward and total times of render_tensors."""
    from avatar_capture.core.splats.rasterize import build_tile_table
    from avatar_capture.core.splats.project import project_gaussians
    from avatar_capture.core.splats.render import render_tensors

    samples: dict[str, list[float]] = {k: [] for k in ("forward_s", "backward_s", "forward_cpu_s", "backward_cpu_s")}
    for run in range(runs + 1):
        leaves = [t.clone().requires_grad_(True) for t in params]
        wall, cpu = time.perf_counter(), time.process_time()
        colour, alpha, depth = render_tensors(*leaves, camera)
        loss = colour.sum() + alpha.sum() + depth.sum()
        wall_forward, cpu_forward = time.perf_counter(), time.process_time()
        loss.backward()
        if run == 0:
            continue  # warm-up: first-touch allocations
        samples["forward_s"].append(wall_forward - wall)
        samples["backward_s"].append(time.perf_counter() - wall_forward)
        samples["forward_cpu_s"].append(cpu_forward - cpu)
        samples["backward_cpu_s"].append(time.process_time() - cpu_forward)
    figures = {k: round(statistics.median(v), 4) for k, v in samples.items()}
    figures["total_s"] = round(figures["forward_s"] + figures["backward_s"], 4)
    figures["total_cpu_s"] = round(figures["forward_cpu_s"] + figures["backward_cpu_s"], 4)
    p = project_gaussians(*params, camera)
    figures["splats"] = len(params[0])
    figures["visible_splats"] = int(p.visible.sum())
    figures["tile_overlaps"] = build_tile_table(p.means2d, p.radii, p.depths, camera.width, camera.height).count
    figures["mean_alpha"] = round(float(alpha.detach().mean()), 4)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import torch

    results = {"note": "wall-clock medians; noisy when other processes share the CPU", "target_total_s": 0.5,
               "cpu_count": __import__("os").cpu_count(), "torch": torch.__version__}
    scenes = {"random_10k_256": lambda: random_scene(10_000, 256)}
    if REAL_PLY.exists():
        scenes["real_ply_512"] = lambda: ply_scene(512)
    for name, make in scenes.items():
        params, camera = make()
        for threads in args.threads:
            torch.set_num_threads(threads)
            results[f"{name}_threads{threads}"] = time_scene(params, camera, args.runs)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Render a splat cloud to colour, alpha and depth: the reference image every other renderer is checked against.

Two backends draw the same model (gsplat 1.5.3's pinhole EWA splatting): gsplat's CUDA
kernels when a CUDA GPU and gsplat are available, and otherwise this package's own
tile-based torch rasterizer on the CPU (project.py + rasterize.py). ``render`` is the
one-shot numpy entry point (CLI, viewport comparisons); ``render_tensors`` is the
differentiable one optimisers call with torch parameters.

The cloud is drawn as stored: means in the frame the camera's world_to_cam maps from
(object frame = world), skinned clouds in the pose their arrays hold (pose them first
with skinning.skin_gaussians).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import AvatarCaptureError
from .camera import SplatCamera
from .gaussians import Gaussians

if TYPE_CHECKING:
    import torch
    from torch import Tensor

BACKENDS = ("auto", "cpu", "gsplat")


@dataclass(frozen=True)
class RenderOutput:
    """colour (H, W, 3) float32 premultiplied by alpha (no background); alpha (H, W) float32 in 0..1;
    depth (H, W) float32 expected camera z in metres (0 where alpha is 0)."""

    colour: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray


def render(g: Gaussians, camera: SplatCamera, *, sh_degree: int | None = None, backend: str = "auto") -> RenderOutput:
    """Render ``g`` seen from ``camera``. backend: "auto" (gsplat on CUDA when available, else the CPU
    rasterizer), "cpu" or "gsplat" (AvatarCaptureError without CUDA). sh_degree None = all stored bands."""
    import torch

    device = _device_for(backend)
    arrays = (g.means, g.rotations, g.log_scales, g.logit_opacities, g.sh)
    with torch.no_grad():
        tensors = [torch.as_tensor(a, dtype=torch.float32, device=device) for a in arrays]
        colour, alpha, depth = render_tensors(*tensors, camera, sh_degree=sh_degree)
    return RenderOutput(*(t.detach().cpu().numpy().astype(np.float32) for t in (colour, alpha, depth)))


def render_tensors(means: Tensor, quats: Tensor, log_scales: Tensor, logit_opacities: Tensor, sh: Tensor,
                   camera: SplatCamera, *, sh_degree: int | None = None,
                   device: str | torch.device | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable render of torch parameters: means (N, 3) metres, quats (N, 4) wxyz, log_scales (N, 3),
    logit_opacities (N,), sh (N, K, 3). Returns colour (H, W, 3) premultiplied, alpha (H, W), depth (H, W).

    Runs on ``device`` (default: the device of ``means``): gsplat's kernels on a CUDA device, the
    CPU rasterizer on the CPU. Gradients flow to all five inputs on both.
    """
    import torch

    device = torch.device(device) if device is not None else means.device
    if device.type not in ("cpu", "cuda"):
        raise AvatarCaptureError(f"splats render on the CPU or a CUDA device, not on '{device}'")
    if device.type == "cuda":
        from .gsplat_backend import gsplat_unavailable_reason, render_gsplat

        reason = gsplat_unavailable_reason()
        if reason is not None:
            raise AvatarCaptureError(f"cannot render splats on '{device}': {reason}")
    means, quats, log_scales, logit_opacities, sh = (
        t.to(device) for t in (means, quats, log_scales, logit_opacities, sh))
    if device.type == "cuda":
        return render_gsplat(means, quats, log_scales, logit_opacities, sh, camera, sh_degree=sh_degree)
    from .project import project_gaussians
    from .rasterize import rasterize

    p = project_gaussians(means, quats, log_scales, logit_opacities, sh, camera, sh_degree=sh_degree)
    return rasterize(p.means2d, p.conics, p.colours, p.opacities, p.depths, p.radii, camera.width, camera.height)


def _device_for(backend: str) -> str:
    """The torch device a backend name renders on; "gsplat" without CUDA is a clear error."""
    if backend not in BACKENDS:
        raise AvatarCaptureError(f"unknown splat render backend '{backend}'; use one of {', '.join(BACKENDS)}")
    if backend == "cpu":
        return "cpu"
    from .gsplat_backend import gsplat_unavailable_reason

    reason = gsplat_unavailable_reason()
    if reason is None:
        return "cuda"
    if backend == "gsplat":
        raise AvatarCaptureError(f"the gsplat backend cannot run: {reason}; use backend='cpu'")
    return "cpu"

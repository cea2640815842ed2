"""The CUDA path of the reference renderer: gsplat 1.5.3's fused kernels with the CPU path's exact settings.

gsplat is what 3DGS training uses, so on a CUDA machine it is both the fastest and the
most trusted renderer; the CPU rasterizer (rasterize.py) reimplements the same model
and the two are compared by bench/splat_gsplat_agreement.py. The settings that make
them agree: world_to_cam as viewmat, K, the camera's near/far planes, eps2d 0.3,
classic (not antialiased) mode, unpacked, 16 px tiles, no background, colour from SH
of the requested degree plus expected depth ("RGB+ED").

Known difference: gsplat 1.5.3's CUDA kernel clamps a splat's alpha at 0.999 where the
team's convention (and the CPU rasterizer) uses 0.99; only nearly opaque splat centres
differ (on the real 3DGS test PLY at 512 px the CPU image with 0.99 and with 0.999 differ
by 76.7 dB PSNR, far above the 40 dB agreement bar).

gsplat is imported only here, inside functions (it is optional and heavy).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AvatarCaptureError
from .camera import SplatCamera
from .project import EPS2D, sh_degree_in_use
from .rasterize import TILE

if TYPE_CHECKING:
    from torch import Tensor


def gsplat_unavailable_reason() -> str | None:
    """None when gsplat can rasterize here, else why not (one line for the user).

    With CUDA present, the first call loads gsplat's CUDA extension, compiling it when no
    prebuilt one exists (minutes, once per machine); gsplat 1.5.3 leaves it None when no CUDA
    toolkit is found, and its kernels would then fail with an AttributeError.
    """
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is available to torch"
    try:
        from gsplat.cuda._backend import _C
    except Exception as exc:  # build and load failures surface as many exception types
        return f"gsplat's CUDA extension does not load ({exc})"
    if _C is None:
        return "gsplat's CUDA extension is not built and no CUDA toolkit was found to build it"
    return None


def render_gsplat(means: Tensor, quats: Tensor, log_scales: Tensor, logit_opacities: Tensor, sh: Tensor,
                  camera: SplatCamera, *, sh_degree: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable gsplat render of CUDA tensors (shapes as render.render_tensors).

    Returns colour (H, W, 3) premultiplied, alpha (H, W), expected depth (H, W) (0 where alpha is 0).
    """
    import torch

    reason = gsplat_unavailable_reason()
    if reason is not None:
        raise AvatarCaptureError(f"the gsplat backend cannot run: {reason}")
    from gsplat import rasterization

    if means.device.type != "cuda":
        raise AvatarCaptureError(f"the gsplat backend needs CUDA tensors, got tensors on '{means.device}'")
    kw = {"dtype": torch.float32, "device": means.device}
    viewmats = torch.as_tensor(camera.world_to_cam, **kw)[None]       # (1, 4, 4) world -> OpenCV camera
    Ks = torch.as_tensor(camera.K, **kw)[None]                        # (1, 3, 3) pixels
    renders, alphas, _ = rasterization(
        means=means.float(), quats=quats.float(), scales=torch.exp(log_scales.float()),
        opacities=torch.sigmoid(logit_opacities.float()), colors=sh.float(),
        viewmats=viewmats, Ks=Ks, width=camera.width, height=camera.height,
        near_plane=camera.near, far_plane=camera.far, eps2d=EPS2D,
        sh_degree=sh_degree_in_use(sh.shape[1], sh_degree), packed=False, tile_size=TILE,
        backgrounds=None, render_mode="RGB+ED", rasterize_mode="classic", camera_model="pinhole")
    return renders[0, ..., :3], alphas[0, ..., 0], renders[0, ..., 3]

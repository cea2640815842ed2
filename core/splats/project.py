"""EWA projection of 3D Gaussians into a pinhole camera, in torch so optimisers get gradients.

This is the first half of the reference renderer (the second is rasterize.py). It
follows gsplat 1.5.3's pinhole model so the CPU path, gsplat's CUDA path and the
viewport shader draw the same splats: camera covariance W R S S^T R^T W^T,
perspective Jacobian evaluated at the mean with x/z, y/z clamped a little outside
the image (so splats far off-screen do not blow up), 0.3 px^2 added to the 2D
covariance, culling at the near/far planes and outside the image, and a per-axis
pixel radius of 3.33 sigma. Everything is batched over the N splats; no Python loop.

Frames: means (N, 3) metres in the frame the camera's world_to_cam maps from (the
cloud's object frame = world for a cloud rendered on its own); camera OpenCV
(x right, y down, z forward); pixels with the origin at the top-left corner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AvatarCaptureError
from ..rotations import quat_matrix_entries
from .camera import SplatCamera
from .gaussians import MAX_SH_DEGREE, sh_degree_of
from .sh import sh_to_colour

if TYPE_CHECKING:
    from torch import Tensor

EPS2D = 0.3            # px^2 added to the projected covariance (gsplat's eps2d)
RADIUS_SIGMAS = 3.33   # half-extent of a splat's pixel box, in standard deviations per axis
FOV_CLAMP = 0.3        # x/z, y/z are clamped this fraction of the half-FOV tangent beyond the image edges


@dataclass(frozen=True)
class ProjectedSplats:
    """Per-splat screen quantities for one camera (torch tensors, N rows, culled splats kept with radii 0).

    means2d (N, 2) px; conics (N, 3) = (a, b, c) of the inverse 2D covariance [[a, b], [b, c]] in px^-2;
    depths (N,) camera z in metres; radii (N, 2) int32 px half-extents (x, y), 0 where culled;
    colours (N, 3) RGB from SH (>= 0, not clamped at 1); opacities (N,) in 0..1.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    colours: Tensor
    opacities: Tensor

    @property
    def visible(self) -> Tensor:
        """(N,) bool: splats that reach at least one pixel box inside the image."""
        return (self.radii > 0).all(dim=-1)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices (N, 3, 3) from wxyz quaternions (N, 4), normalised here (torch, differentiable)."""
    import torch

    q = quats / quats.norm(dim=-1, keepdim=True)
    return torch.stack(quat_matrix_entries(*q.unbind(-1)), dim=-1).reshape(q.shape[:-1] + (3, 3))


def camera_tensors(camera: SplatCamera, like: Tensor) -> tuple[Tensor, Tensor]:
    """(world_to_cam (4, 4), K (3, 3)) as tensors with the dtype and device of ``like``."""
    import torch

    kw = {"dtype": like.dtype, "device": like.device}
    return torch.as_tensor(camera.world_to_cam, **kw), torch.as_tensor(camera.K, **kw)


def project_gaussians(means: Tensor, quats: Tensor, log_scales: Tensor, logit_opacities: Tensor, sh: Tensor,
                      camera: SplatCamera, *, sh_degree: int | None = None) -> ProjectedSplats:
    """Project N Gaussians (torch: means (N,3), quats (N,4) wxyz, log_scales (N,3), logit_opacities (N,),
    sh (N,K,3)) into ``camera``; differentiable w.r.t. all five. ``sh_degree`` None = all bands of sh."""
    import torch

    degree = sh_degree_in_use(sh.shape[1], sh_degree)
    world_to_cam, K = camera_tensors(camera, means)
    rotation, translation = world_to_cam[:3, :3], world_to_cam[:3, 3]
    means_cam = means @ rotation.T + translation                                   # (N, 3)
    # Sigma_cam = (W R S)(W R S)^T, S = diag(exp(log_scales)).
    wrs = rotation @ (quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :])   # (N, 3, 3)

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tx, ty, depths = means_cam.unbind(-1)
    in_depth = (depths > camera.near) & (depths < camera.far)
    # culled splats divide by 1 instead of their depth: no inf that would turn zero gradients into NaN
    tz = torch.where(in_depth, depths, torch.ones_like(depths))
    lim_x_pos = (camera.width - cx) / fx + FOV_CLAMP * 0.5 * camera.width / fx
    lim_x_neg = cx / fx + FOV_CLAMP * 0.5 * camera.width / fx
    lim_y_pos = (camera.height - cy) / fy + FOV_CLAMP * 0.5 * camera.height / fy
    lim_y_neg = cy / fy + FOV_CLAMP * 0.5 * camera.height / fy
    tx_clamped = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    ty_clamped = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(tz)
    jacobian = torch.stack([fx / tz, zero, -fx * tx_clamped / (tz * tz),
                            zero, fy / tz, -fy * ty_clamped / (tz * tz)], dim=-1).reshape(-1, 2, 3)
    jwrs = jacobian @ wrs                                                          # (N, 2, 3)
    cov_a = (jwrs[:, 0] * jwrs[:, 0]).sum(-1) + EPS2D
    cov_b = (jwrs[:, 0] * jwrs[:, 1]).sum(-1)
    cov_c = (jwrs[:, 1] * jwrs[:, 1]).sum(-1) + EPS2D
    det = cov_a * cov_c - cov_b * cov_b
    safe_det = det.clamp(min=1e-10)
    conics = torch.stack([cov_c / safe_det, -cov_b / safe_det, cov_a / safe_det], dim=-1)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)

    with torch.no_grad():
        radii = torch.ceil(RADIUS_SIGMAS * torch.sqrt(torch.stack([cov_a, cov_c], dim=-1)))
        keep = (det > 0) & in_depth
        keep &= (means2d[:, 0] + radii[:, 0] > 0) & (means2d[:, 0] - radii[:, 0] < camera.width)
        keep &= (means2d[:, 1] + radii[:, 1] > 0) & (means2d[:, 1] - radii[:, 1] < camera.height)
        radii = torch.where(keep[:, None], radii, torch.zeros_like(radii)).to(torch.int32)

    centre = torch.as_tensor(camera.centre_world, dtype=means.dtype, device=means.device)
    dirs = means - centre
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    colours = sh_to_colour(sh, dirs, degree)
    return ProjectedSplats(means2d, conics, depths, radii, colours, torch.sigmoid(logit_opacities))


def sh_degree_in_use(coefficient_count: int, sh_degree: int | None) -> int:
    """The SH degree to evaluate for K = coefficient_count stored coefficients: all stored bands by
    default, never more than are stored (missing bands count as zero); AvatarCaptureError outside 0..3."""
    stored = sh_degree_of(coefficient_count)
    if sh_degree is None:
        return stored
    if not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise AvatarCaptureError(f"SH degree must be 0..{MAX_SH_DEGREE}, got {sh_degree}")
    return min(int(sh_degree), stored)

"""The reference splat renderer: projection and SH against gsplat's own torch code, the tile rasterizer
against a per-pixel loop, gradients against finite differences, and a real 3DGS file end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.splats import rasterize as rasterize_module
from avatar_capture.core.splats.camera import SplatCamera, framing_camera, intrinsics, look_at
from avatar_capture.core.splats.gaussians import make_gaussians
from avatar_capture.core.splats.project import project_gaussians
from avatar_capture.core.splats.rasterize import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN, rasterize
from avatar_capture.core.splats.render import render, render_tensors
from shared_media import REAL_SPLAT_PLY



def random_cloud(n: int, *, seed: int, log_scale: float = -2.5, sh_coefficients: int = 16,
                 dtype=torch.float64) -> list[torch.Tensor]:
    """means, quats, log_scales, logit_opacities, sh of n splats in a box around the origin."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([1.0, 0.6, 1.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    log_scales = torch.randn(n, 3, generator=g, dtype=dtype) * 0.4 + log_scale
    logits = torch.randn(n, generator=g, dtype=dtype) * 2.0
    sh = torch.randn(n, sh_coefficients, 3, generator=g, dtype=dtype) * 0.3
    return [means, quats, log_scales, logits, sh]


def camera(width: int, height: int, *, eye=(0.2, -2.0, 0.3), fov: float = 50.0, principal=None) -> SplatCamera:
    K = intrinsics(width, height, fov)
    if principal is not None:
        K[0, 2], K[1, 2] = principal
        K[1, 1] *= 1.07  # non-square pixels too
    return SplatCamera(K, look_at(np.array(eye, float), np.zeros(3)), width, height)


def render_cloud(params, cam: SplatCamera, sh_degree=None):
    p = project_gaussians(*params, cam, sh_degree=sh_degree)
    return rasterize(p.means2d, p.conics, p.colours, p.opacities, p.depths, p.radii, cam.width, cam.height)


@pytest.mark.parametrize("cam", [camera(100, 80), camera(64, 96, eye=(1.5, -0.4, 0.9), principal=(27.0, 55.0)),
                                 camera(120, 90, eye=(0.0, -0.6, 0.1), fov=90.0)])
def test_projection_matches_gsplats_torch_reference(cam: SplatCamera) -> None:
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, log_scales, logits, sh = random_cloud(3000, seed=1)
    means = means * 3.0  # some splats behind the camera, beyond the frustum, or straddling the near plane
    ours = project_gaussians(means, quats, log_scales, logits, sh, cam)
    covars, _ = _quat_scale_to_covar_preci(quats, torch.exp(log_scales), compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, torch.tensor(cam.world_to_cam)[None], torch.tensor(cam.K)[None], cam.width, cam.height,
        eps2d=0.3, near_plane=cam.near, far_plane=cam.far)
    assert torch.equal(ours.radii, radii[0])
    visible = ours.visible
    assert 500 < int(visible.sum()) < 3000  # both culled and drawn splats are compared
    torch.testing.assert_close(ours.means2d[visible], means2d[0][visible], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.conics[visible], conics[0][visible], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.depths, depths[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colours_match_gsplats_spherical_harmonics(degree: int) -> None:
    from gsplat.cuda._torch_impl import _spherical_harmonics

    params = random_cloud(500, seed=2)
    params[4] = params[4] * 3.0  # large coefficients so the clamp at 0 is exercised
    cam = camera(64, 64)
    ours = project_gaussians(*params, cam, sh_degree=degree).colours
    dirs = params[0] - torch.tensor(cam.centre_world)
    expected = torch.clamp_min(_spherical_harmonics(degree, dirs, params[4]) + 0.5, 0.0)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)
    assert (expected == 0).any() and (expected > 1).any()


def brute_force(p, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Per pixel, per splat loop of the rendering conventions; also counts the clamp and stop events."""
    means2d, conics, colours = p.means2d.tolist(), p.conics.tolist(), p.colours.tolist()
    opacities, depths = p.opacities.tolist(), p.depths.tolist()
    order = sorted((i for i in range(len(depths)) if p.radii[i].min() > 0), key=lambda i: depths[i])
    colour, alpha, depth = np.zeros((height, width, 3)), np.zeros((height, width)), np.zeros((height, width))
    events = {"clamped": 0, "stopped": 0}
    for y in range(height):
        for x in range(width):
            transmittance = 1.0
            for i in order:
                dx, dy = x + 0.5 - means2d[i][0], y + 0.5 - means2d[i][1]
                a, b, c = conics[i]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                value = min(ALPHA_MAX, opacities[i] * math.exp(-sigma))
                if sigma < 0 or value < ALPHA_MIN:
                    continue
                events["clamped"] += value == ALPHA_MAX
                if transmittance * (1.0 - value) <= TRANSMITTANCE_MIN:
                    events["stopped"] += 1
                    break
                weight = value * transmittance
                colour[y, x] += weight * np.array(colours[i])
                alpha[y, x] += weight
                depth[y, x] += weight * depths[i]
                transmittance *= 1.0 - value
    depth = np.where(alpha > 0, depth / np.maximum(alpha, 1e-300), 0.0)
    return colour, alpha, depth, events


def tiny_scene(dtype=torch.float64) -> list[torch.Tensor]:
    """20 splats: 14 random ones and a stack of 6 opaque ones so that pixels clamp and terminate."""
    params = random_cloud(20, seed=3, log_scale=-2.2, sh_coefficients=4, dtype=dtype)
    params[0][14:] = torch.tensor([0.05, 0.0, -0.05], dtype=dtype) + 0.02 * torch.arange(6, dtype=dtype)[:, None]
    params[2][14:] = -1.8
    params[3][14:] = 6.0
    return params


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_tile_rasterizer_matches_a_per_pixel_loop(dtype, tolerance: float) -> None:
    cam = camera(24, 20)  # not a multiple of the 16 px tile in either direction
    p = project_gaussians(*tiny_scene(dtype), cam)
    colour, alpha, depth = rasterize(p.means2d, p.conics, p.colours, p.opacities, p.depths, p.radii, 24, 20)
    expected_colour, expected_alpha, expected_depth, events = brute_force(p, 24, 20)
    assert events["clamped"] > 0 and events["stopped"] > 0, "the scene must exercise clamping and early stop"
    assert colour.shape == (20, 24, 3) and alpha.shape == depth.shape == (20, 24)
    assert 0.1 < (expected_alpha > 0).mean() < 1.0
    np.testing.assert_allclose(colour.numpy(), expected_colour, atol=tolerance)
    np.testing.assert_allclose(alpha.numpy(), expected_alpha, atol=tolerance)
    np.testing.assert_allclose(depth.numpy(), expected_depth, atol=tolerance * 10)


@pytest.mark.parametrize("saved_elements", [0, 20_000])  # all chunks recomputed; some kept, some recomputed
def test_small_chunks_and_recomputed_backward_give_the_same_image_and_gradients(monkeypatch,
                                                                                saved_elements: int) -> None:
    params = random_cloud(300, seed=4, log_scale=-3.0, sh_coefficients=4)
    params[3][:100] = 5.0  # opaque splats: pixels stop early
    cam = camera(70, 50)

    def image_and_grads():
        leaves = [t.clone().requires_grad_(True) for t in params]
        colour, alpha, depth = render_cloud(leaves, cam)
        (colour.sum() + (alpha * alpha).sum() + depth.mean()).backward()
        return [colour, alpha, depth] + [t.grad for t in leaves]

    reference = image_and_grads()
    monkeypatch.setattr(rasterize_module, "CHUNK_ROWS", 7)           # many chunks, tiles longer than a chunk
    monkeypatch.setattr(rasterize_module, "ROW_BLOCK", 3)            # tiles composited over several blocks
    monkeypatch.setattr(rasterize_module, "SAVED_ELEMENTS_MAX", saved_elements)
    for ours, expected in zip(image_and_grads(), reference):
        torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)


def test_gradients_match_finite_differences_for_all_splat_parameters() -> None:
    cam = camera(24, 20)
    leaves = [t.clone().requires_grad_(True) for t in tiny_scene()]  # overlaps, a clamp and early stops
    weights = torch.rand(20, 24, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(*ps):
        colour, alpha, depth = render_cloud(ps, cam)
        return (torch.cat([colour, alpha[..., None], depth[..., None]], -1) * weights).sum()

    assert torch.autograd.gradcheck(loss, leaves, eps=1e-6, atol=1e-5, rtol=1e-3)
    loss(*leaves).backward()
    assert all(bool((t.grad != 0).any()) for t in leaves)


def single_splat(mean, log_scale: float = -2.0, logit: float = 8.0) -> list[torch.Tensor]:
    return [torch.tensor([mean], dtype=torch.float64), torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64),
            torch.full((1, 3), log_scale, dtype=torch.float64), torch.tensor([logit], dtype=torch.float64),
            torch.full((1, 1, 3), 0.4, dtype=torch.float64)]


def test_splats_behind_the_camera_or_outside_the_image_do_not_draw() -> None:
    cam = camera(48, 40, eye=(0.0, -2.0, 0.0))
    front = single_splat([0.0, 0.0, 0.0])
    behind = single_splat([0.0, -4.0, 0.0], log_scale=0.0)      # 2 m behind the camera, huge
    aside = single_splat([3.0, 0.0, 0.0], log_scale=-1.5)        # far to the right of the frustum
    in_camera_plane = single_splat([0.5, -2.0, 0.0])             # depth exactly 0
    assert single_visible(behind, cam) == single_visible(aside, cam) == single_visible(in_camera_plane, cam) == 0
    alone = render_cloud(front, cam)
    leaves = [torch.cat(t).requires_grad_(True) for t in zip(front, behind, aside, in_camera_plane)]
    together = render_cloud(leaves, cam)
    assert float(alone[1].max()) > 0.5
    for a, b in zip(alone, together):
        assert torch.equal(a, b.detach())
    sum(t.sum() for t in together).backward()
    for t in leaves:  # culled splats get zero gradients, not NaN
        assert torch.isfinite(t.grad).all() and torch.all(t.grad[1:] == 0)
    assert (leaves[0].grad[0] != 0).any()  # (the front splat is isotropic: its rotation has no gradient)


def single_visible(params, cam) -> int:
    return int(project_gaussians(*params, cam).visible.sum())


def test_depth_of_a_single_opaque_splat_is_its_camera_depth() -> None:
    cam = camera(48, 40, eye=(0.3, -2.5, 0.4))
    params = single_splat([0.1, 0.2, -0.1], log_scale=-1.5)
    colour, alpha, depth = render_cloud(params, cam)
    z = float(project_gaussians(*params, cam).depths[0])
    drawn = alpha > 0
    assert int(drawn.sum()) > 50 and math.isclose(float(alpha.max()), ALPHA_MAX, rel_tol=1e-9)
    torch.testing.assert_close(depth[drawn], torch.full_like(depth[drawn], z), rtol=1e-12, atol=1e-12)
    assert torch.all(depth[~drawn] == 0) and torch.all(colour[~drawn] == 0)


def test_render_returns_float32_arrays_and_reports_bad_backends() -> None:
    params = random_cloud(200, seed=6, log_scale=-3.0, sh_coefficients=9, dtype=torch.float32)
    g = make_gaussians(*(t.numpy() for t in params))
    cam = camera(40, 30)
    out = render(g, cam, backend="cpu")
    assert out.colour.dtype == out.alpha.dtype == out.depth.dtype == np.float32
    assert out.colour.shape == (30, 40, 3) and out.alpha.shape == out.depth.shape == (30, 40)
    auto = render(g, cam)  # no CUDA here: the CPU rasterizer
    np.testing.assert_array_equal(auto.colour, out.colour)
    degree0 = render(g, cam, sh_degree=0)
    assert not np.allclose(degree0.colour, out.colour) and np.allclose(degree0.alpha, out.alpha)
    with pytest.raises(AvatarCaptureError, match="backend"):
        render(g, cam, backend="vulkan")
    with pytest.raises(AvatarCaptureError, match="SH degree"):
        render(g, cam, sh_degree=4)

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without CUDA")
def test_the_gsplat_backend_says_clearly_that_it_needs_cuda() -> None:
    from avatar_capture.core.splats.gsplat_backend import render_gsplat

    params = random_cloud(10, seed=8, dtype=torch.float32)
    g = make_gaussians(*(t.numpy() for t in params))
    cam = camera(16, 16)
    with pytest.raises(AvatarCaptureError, match="gsplat backend cannot run: no CUDA GPU"):
        render(g, cam, backend="gsplat")
    with pytest.raises(AvatarCaptureError, match="no CUDA GPU"):
        render_tensors(*params, cam, device="cuda")
    with pytest.raises(AvatarCaptureError, match="no CUDA GPU"):
        render_gsplat(*params, cam)


def test_render_tensors_is_differentiable_in_float32() -> None:
    leaves = [t.requires_grad_(True) for t in random_cloud(400, seed=7, log_scale=-3.0, dtype=torch.float32)]
    colour, alpha, depth = render_tensors(*leaves, camera(64, 48), sh_degree=3)
    assert colour.dtype == torch.float32 and colour.shape == (48, 64, 3)
    (colour.mean() + alpha.mean() + 0.1 * depth.mean()).backward()
    for t in leaves:
        assert torch.isfinite(t.grad).all() and (t.grad != 0).any()


@pytest.mark.skipif(not REAL_SPLAT_PLY.exists(), reason="shared media absent")
def test_a_real_3dgs_file_renders_centred_in_the_default_camera() -> None:
    from avatar_capture.core.splats.ply import read_ply

    g = read_ply(REAL_SPLAT_PLY)
    cam = framing_camera(g.means, 200, 160)
    out = render(g, cam, backend="cpu")
    assert np.isfinite(out.colour).all() and out.alpha.max() <= 1.0 + 1e-6
    covered = out.alpha > 0.5
    assert 0.05 < covered.mean() < 0.9
    ys, xs = np.nonzero(covered)
    assert abs(xs.mean() - 100) < 0.2 * 200 and abs(ys.mean() - 80) < 0.2 * 160
    assert out.colour[covered].mean() > 0.05  # not a black silhouette
    assert np.all(out.depth[covered] > 0)

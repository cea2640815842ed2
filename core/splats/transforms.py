"""Moving splat clouds: rotate view-dependent colour with the splats, and apply rigid/similarity transforms.

A splat's SH coefficients describe colour as a function of the viewing
direction in the splat's object frame, so rotating the splats without rotating
the SH would make highlights stay put while the geometry turns. Each SH band l
is closed under rotation: Y_l(R^T d) = Y_l(d) @ A_l(R) for a (2l+1) x (2l+1)
matrix A_l, and the rotated coefficients are A_l @ c_l. Rather than hand-coding
Wigner matrices in 3DGS's sign convention, A_l is solved exactly (least squares
over a fixed set of well-spread directions, full rank) from ``sh.sh_basis``
itself, so it can never disagree with the basis the renderers use.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from ..errors import AvatarCaptureError
from ..rotations import matrix_to_quat, quat_multiply
from .gaussians import Gaussians, SurfaceBinding, sh_degree_of
from .sh import sh_basis

_SAMPLE_DIRECTIONS = 20  # >= 16 basis functions; condition number 1.5 on a Fibonacci sphere
_CHUNK = 8192  # splats per batch of per-splat rotations: bounds temporary memory to ~50 MB


@lru_cache(maxsize=1)
def _sample_basis() -> tuple[np.ndarray, np.ndarray]:
    """Fixed unit directions D (M, 3) and pinv of the degree-3 basis at them, (16, M)."""
    i = np.arange(_SAMPLE_DIRECTIONS) + 0.5
    z = 1.0 - 2.0 * i / _SAMPLE_DIRECTIONS
    phi = np.pi * (1.0 + 5.0 ** 0.5) * i
    r = np.sqrt(1.0 - z * z)
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    basis = np.stack(sh_basis(dirs, 3), axis=-1)  # (M, 16)
    return dirs, np.linalg.pinv(basis)


def sh_rotation_blocks(rotations: np.ndarray, degree: int) -> list[np.ndarray]:
    """Per band l = 1..degree the (..., 2l+1, 2l+1) matrices A_l mapping coefficients c_l to A_l @ c_l.

    rotations (..., 3, 3) turn the old object frame into the new one; after the
    update, colour_new(d) = colour_old(R^T d) for every unit direction d.
    """
    dirs, pinv = _sample_basis()
    rotated = dirs @ np.asarray(rotations, np.float64)  # (..., M, 3): rows (R^T d)^T = d^T R
    basis_rotated = np.stack(sh_basis(rotated, degree), axis=-1)  # (..., M, K)
    blocks = []
    for band in range(1, degree + 1):
        lo, hi = band * band, (band + 1) * (band + 1)
        blocks.append(pinv[lo:hi] @ basis_rotated[..., lo:hi])
    return blocks


def rotate_sh(sh: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """SH coefficients sh (N, K, 3) of splats turned by rotation (3, 3) or per splat (N, 3, 3).

    Band 0 is unchanged; bands 1..3 are rotated exactly. Returns a new array of sh's dtype.
    """
    sh = np.asarray(sh)
    rotation = np.asarray(rotation, np.float64)
    degree = sh_degree_of(sh.shape[1])
    out = sh.copy()
    if degree == 0:
        return out
    if rotation.shape == (3, 3):
        for band, block in enumerate(sh_rotation_blocks(rotation, degree), start=1):
            lo, hi = band * band, (band + 1) * (band + 1)
            out[:, lo:hi] = block @ sh[:, lo:hi]
        return out
    if rotation.shape != (len(sh), 3, 3):
        raise ValueError(f"rotation must be (3, 3) or ({len(sh)}, 3, 3), got {rotation.shape}")
    for start in range(0, len(sh), _CHUNK):
        part = slice(start, start + _CHUNK)
        for band, block in enumerate(sh_rotation_blocks(rotation[part], degree), start=1):
            lo, hi = band * band, (band + 1) * (band + 1)
            out[part, lo:hi] = block @ sh[part, lo:hi]
    return out


def split_similarity(matrix: np.ndarray, tolerance: float = 1e-5) -> tuple[np.ndarray, float, np.ndarray]:
    """(rotation (3, 3), uniform scale s > 0, translation (3,)) of a 4x4 rigid or similarity transform.

    Raises AvatarCaptureError for shear, non-uniform scale, mirroring or a projective bottom row:
    a Gaussian's SH and quaternion cannot follow those exactly.
    """
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise AvatarCaptureError(f"the splat transform must be a finite 4x4 matrix, got shape {matrix.shape}")
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0], atol=tolerance):
        raise AvatarCaptureError("the splat transform has a projective bottom row; give an affine 4x4 matrix")
    linear = matrix[:3, :3]
    det = np.linalg.det(linear)
    if det <= 0.0:
        raise AvatarCaptureError("the splat transform mirrors or collapses space; splats need det > 0")
    scale = float(np.cbrt(det))
    rotation = linear / scale
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=tolerance):
        raise AvatarCaptureError("the splat transform has shear or non-uniform scale; only rotation, "
                                 "translation and uniform scale keep Gaussians exact")
    return rotation, scale, matrix[:3, 3].copy()


def transform_gaussians(g: Gaussians, matrix: np.ndarray) -> Gaussians:
    """The cloud moved by a 4x4 rigid or uniform-similarity transform (old object frame -> new).

    Means are mapped, rotations pre-multiplied, log-scales shifted by log(s), SH
    rotated; a skin's rest bone frames are mapped too. A surface-bound cloud's
    rotations, SH and offsets live in the triangle frames, which turn with the
    mesh: its rotations and SH stay as they are and only the offsets are scaled by s
    (so ``follow_surface`` on the moved mesh gives the moved cloud).
    """
    rotation, scale, translation = split_similarity(matrix)
    linear = scale * rotation
    means = g.means.astype(np.float64) @ linear.T + translation
    rotations, sh = g.rotations, g.sh
    if g.surface is None:
        rotations, sh = quat_multiply(matrix_to_quat(rotation), g.rotations), rotate_sh(g.sh, rotation)
    skin = g.skin
    if skin is not None:
        skin = replace(skin, rest_bone_to_object=np.asarray(matrix, np.float64) @ skin.rest_bone_to_object)
    surface = g.surface
    if surface is not None:
        surface = SurfaceBinding(surface.face_indices, surface.barycentrics,
                                 (surface.offsets * scale).astype(np.float32))
    return replace(g, means=means.astype(np.float32), rotations=rotations.astype(np.float32),
                   log_scales=(g.log_scales + np.float32(np.log(scale))).astype(np.float32),
                   sh=sh, skin=skin, surface=surface)

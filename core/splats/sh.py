"""Real spherical harmonics up to degree 3, in the sign and order convention of 3DGS.

Colour of a splat seen along unit direction d (from the camera centre to the
splat, object frame): max(0, sum_k Y_k(d) * sh_k + 0.5). The same basis is used
by the reference rasterizer, the GLSL shader (native/) and SH rotation, so the
constants live here once. Works on numpy arrays and torch tensors alike.
"""
from __future__ import annotations

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(dirs, degree: int) -> list:
    """The (degree + 1)^2 basis functions, each shaped like dirs[..., 0], at unit directions dirs (..., 3).

    A list rather than a stacked array so numpy and torch callers stack in their own library.
    """
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    basis = [SH_C0 + 0.0 * x]
    if degree >= 1:
        basis += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2.0 * zz - xx - yy),
                  SH_C2[3] * x * z, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        basis += [SH_C3[0] * y * (3.0 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4.0 * zz - xx - yy),
                  SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy), SH_C3[4] * x * (4.0 * zz - xx - yy),
                  SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3.0 * yy)]
    return basis


def sh_to_colour(sh, dirs, degree: int):
    """RGB (..., 3) from coefficients sh (..., K, 3) seen along unit dirs (..., 3), bands 0..degree.

    Bands above ``degree`` are ignored (quality control); the result is clamped at 0, not at 1.
    """
    basis = sh_basis(dirs, degree)
    colour = 0.5 + basis[0][..., None] * sh[..., 0, :]
    for k in range(1, len(basis)):
        colour = colour + basis[k][..., None] * sh[..., k, :]
    return colour.clip(min=0.0)


def rgb_to_sh_dc(rgb):
    """The degree-0 coefficient that gives colour ``rgb`` from every direction (inverse of band 0)."""
    return (rgb - 0.5) / SH_C0

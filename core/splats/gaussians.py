"""The one splat container every part shares: avatar, animal, viewport, export.

A ``Gaussians`` holds N anisotropic 3D Gaussians in the parameterisation 3DGS
trains and stores (log-scales, logit-opacities, SH coefficients), so files
round-trip bit for bit and optimisers can work on the raw fields. Frames: the
means are metres in the owning object's frame (Blender's: Z up, -Y forward);
quaternions are wxyz like everywhere in the project.

Optional bindings make a cloud follow a body:
  ``skin``     linear blend skinning to a skeleton (up to 4 bones per splat);
  ``surface``  a binding to mesh triangles (point on a triangle + offset in its frame).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from ..errors import AvatarCaptureError, FileFormatError

MAX_SH_DEGREE = 3
BONES_PER_SPLAT = 4


def sh_coefficient_count(degree: int) -> int:
    """Number of SH basis functions per colour channel for bands 0..degree: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_degree_of(coefficient_count: int) -> int:
    """The SH degree whose (degree + 1)^2 coefficients per channel make ``coefficient_count`` (K -> degree)."""
    return int(round(coefficient_count ** 0.5)) - 1


@dataclass(frozen=True)
class SplatSkin:
    """Linear blend skinning of splats to a skeleton.

    bone_names (B,), bone_parents (B,) int (-1 for roots, parents before children),
    rest_bone_to_object (B, 4, 4): each bone's rest frame in the cloud's object frame (metres);
    bone_indices (N, 4) int32 into bone_names; bone_weights (N, 4) float32, rows sum to 1
    (unused slots have weight 0 and any valid index).
    """

    bone_names: tuple[str, ...]
    bone_parents: np.ndarray
    rest_bone_to_object: np.ndarray
    bone_indices: np.ndarray
    bone_weights: np.ndarray


@dataclass(frozen=True)
class SurfaceBinding:
    """Splats attached to the triangles of a mesh (GaussianAvatar-style).

    face_indices (N,) int32 into the mesh's triangles; barycentrics (N, 3) of the anchor point;
    offsets (N, 3) of the mean from the anchor in the triangle's frame (tangent, bitangent,
    normal), metres; the splat's rotation is also relative to that frame.
    """

    face_indices: np.ndarray
    barycentrics: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class Gaussians:
    """N Gaussians. Shapes and units:

    means (N, 3) float32, metres, object frame
    rotations (N, 4) float32, quaternions wxyz (object frame); like 3DGS files they need not be unit
        length and are normalised wherever they are used
    log_scales (N, 3) float32, natural log of the standard deviations in metres (local axes)
    logit_opacities (N,) float32, opacity = sigmoid(logit)
    sh (N, K, 3) float32, K = (degree + 1)^2 SH coefficients per RGB channel; sh[:, 0] is the
        3DGS "f_dc"; colour = max(0, sum_k basis_k(view dir) * sh[:, k] + 0.5)
    """

    means: np.ndarray
    rotations: np.ndarray
    log_scales: np.ndarray
    logit_opacities: np.ndarray
    sh: np.ndarray
    skin: SplatSkin | None = None
    surface: SurfaceBinding | None = None

    def __post_init__(self) -> None:
        check_gaussians(self)

    @property
    def count(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.sh.shape[1])

    @property
    def scales(self) -> np.ndarray:
        """Standard deviations (N, 3) in metres."""
        return np.exp(self.log_scales)

    @property
    def opacities(self) -> np.ndarray:
        """Opacities (N,) in 0..1."""
        return 1.0 / (1.0 + np.exp(-self.logit_opacities))

    def subset(self, keep: np.ndarray) -> "Gaussians":
        """The splats selected by a boolean mask or index array, bindings included."""
        skin = self.skin
        if skin is not None:
            skin = replace(skin, bone_indices=skin.bone_indices[keep], bone_weights=skin.bone_weights[keep])
        surface = self.surface
        if surface is not None:
            surface = SurfaceBinding(surface.face_indices[keep], surface.barycentrics[keep], surface.offsets[keep])
        return replace(self, means=self.means[keep], rotations=self.rotations[keep],
                       log_scales=self.log_scales[keep], logit_opacities=self.logit_opacities[keep],
                       sh=self.sh[keep], skin=skin, surface=surface)

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """The same splats with SH truncated to, or zero-padded up to, ``degree``."""
        k = sh_coefficient_count(degree)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = np.concatenate([sh, np.zeros((self.count, k - sh.shape[1], 3), np.float32)], axis=1)
        return replace(self, sh=np.ascontiguousarray(sh))


def make_gaussians(means: ArrayLike, rotations: ArrayLike, log_scales: ArrayLike, logit_opacities: ArrayLike,
                   sh: ArrayLike, skin: SplatSkin | None = None, surface: SurfaceBinding | None = None) -> Gaussians:
    """Build a Gaussians from array-likes, converting to contiguous float32 / int32 first."""
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    if skin is not None:
        skin = SplatSkin(tuple(str(n) for n in skin.bone_names), np.ascontiguousarray(skin.bone_parents, np.int32),
                         np.ascontiguousarray(skin.rest_bone_to_object, np.float64),
                         np.ascontiguousarray(skin.bone_indices, np.int32), f32(skin.bone_weights))
    if surface is not None:
        surface = SurfaceBinding(np.ascontiguousarray(surface.face_indices, np.int32), f32(surface.barycentrics),
                                 f32(surface.offsets))
    return Gaussians(f32(means), f32(rotations), f32(log_scales), f32(logit_opacities).reshape(-1), f32(sh),
                     skin, surface)


def check_exportable(g: Gaussians, path) -> None:
    """Refuse to write a surface-bound cloud to an interchange file (PLY, glTF).

    Its rotations and SH are relative to the triangles and its means are rest means,
    so another tool would draw it wrong; pose it with surface.follow_surface first.
    The project's own .npz keeps the binding and needs no such check.
    """
    if g.surface is not None:
        raise FileFormatError(path, "these splats are bound to mesh triangles; write the posed cloud "
                                    "(core.splats.surface.follow_surface) or save the binding as .npz")


class InvalidGaussians(AvatarCaptureError):
    """Splat arrays that do not form a valid cloud (shape, count or NaN); says which field."""


def check_gaussians(g: Gaussians) -> None:
    """Raise InvalidGaussians naming the first field with a wrong shape, dtype or non-finite value."""
    n = len(g.means)
    if n == 0:
        raise InvalidGaussians("the cloud has 0 splats")
    expected = {"means": (n, 3), "rotations": (n, 4), "log_scales": (n, 3), "logit_opacities": (n,)}
    for name, shape in expected.items():
        _check_array(name, getattr(g, name), shape)
    if g.sh.ndim != 3 or g.sh.shape[0] != n or g.sh.shape[2] != 3 or \
            g.sh.shape[1] not in {sh_coefficient_count(d) for d in range(MAX_SH_DEGREE + 1)}:
        raise InvalidGaussians(f"sh has shape {g.sh.shape}; expected ({n}, 1|4|9|16, 3)")
    _check_array("sh", g.sh, g.sh.shape)
    if np.any(np.einsum("ij,ij->i", g.rotations, g.rotations) < 1e-12):
        raise InvalidGaussians("rotations: some quaternions are zero")
    if g.skin is not None:
        _check_skin(g.skin, n)
    if g.surface is not None:
        s = g.surface
        _check_array("surface.barycentrics", s.barycentrics, (n, 3))
        _check_array("surface.offsets", s.offsets, (n, 3))
        if s.face_indices.shape != (n,) or s.face_indices.dtype.kind not in "iu" or np.any(s.face_indices < 0):
            raise InvalidGaussians(f"surface.face_indices must be {n} non-negative integers")


def _check_skin(skin: SplatSkin, n: int) -> None:
    b = len(skin.bone_names)
    if b == 0:
        raise InvalidGaussians("skin: no bones")
    _check_array("skin.rest_bone_to_object", skin.rest_bone_to_object, (b, 4, 4))
    _check_array("skin.bone_weights", skin.bone_weights, (n, BONES_PER_SPLAT))
    parents = np.asarray(skin.bone_parents)
    if parents.shape != (b,) or np.any(parents >= np.arange(b)) or np.any(parents < -1):
        raise InvalidGaussians("skin.bone_parents must list each bone's parent before the bone (-1 for roots)")
    idx = skin.bone_indices
    if idx.shape != (n, BONES_PER_SPLAT) or idx.dtype.kind not in "iu" or np.any(idx < 0) or np.any(idx >= b):
        raise InvalidGaussians(f"skin.bone_indices must be ({n}, {BONES_PER_SPLAT}) integers in 0..{b - 1}")
    if np.any(skin.bone_weights < 0) or np.any(np.abs(skin.bone_weights.sum(axis=1) - 1.0) > 1e-3):
        raise InvalidGaussians("skin.bone_weights must be non-negative and sum to 1 per splat")


def _check_array(name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise InvalidGaussians(f"{name} must be a floating-point array")
    if value.shape != shape:
        raise InvalidGaussians(f"{name} has shape {value.shape}; expected {shape}")
    bad = ~np.isfinite(value)
    if bad.any():
        rows = int(bad.reshape(len(value), -1).any(axis=1).sum()) if value.ndim else 1
        raise InvalidGaussians(f"{name} holds NaN or infinite values in {rows} splat(s)")

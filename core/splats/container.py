"""The project's own splat file: a versioned ``.npz`` that keeps everything a Gaussians holds.

3DGS PLY cannot carry a surface binding and carries a skin only through our
extension, so the avatar pipeline saves here and exports PLY/GLB for others.
Format "avatar-capture/splats", version 1; arrays stored without pickling.

Fields (N splats, K = (degree + 1)^2 SH coefficients with degree 0..3, B bones):
  means (N, 3) float32              metres, in the cloud's object frame (Blender: Z up, -Y forward)
  rotations (N, 4) float32          quaternions w, x, y, z, object frame
  log_scales (N, 3) float32         natural log of the standard deviations in metres
  logit_opacities (N,) float32      opacity = sigmoid(logit)
  sh (N, K, 3) float32              SH coefficients per RGB channel, 3DGS order; sh[:, 0] is band 0
Skin, optional, all five or none (linear blend skinning, see gaussians.SplatSkin):
  skin_bone_names (B,) text, skin_bone_parents (B,) int32 (-1 for roots, parents first)
  skin_rest_bone_to_object (B, 4, 4) float64   each bone's rest frame in the object frame, metres
  skin_bone_indices (N, 4) int32, skin_bone_weights (N, 4) float32 (rows sum to 1)
Surface binding, optional, all three or none (see gaussians.SurfaceBinding):
  surface_face_indices (N,) int32   triangle of the bound mesh
  surface_barycentrics (N, 3) float32 anchor point on that triangle
  surface_offsets (N, 3) float32    mean minus anchor in the triangle frame (tangent, bitangent, normal), metres
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FileFormatError
from ..npz_schema import Field, check_fields, load_npz, save_npz_atomic
from .gaussians import Gaussians, InvalidGaussians, SplatSkin, SurfaceBinding, make_gaussians

SPLATS_FORMAT = "avatar-capture/splats"
SPLATS_VERSION = 1

_CLOUD_FIELDS = (
    Field("means", "f", ("N", 3)),
    Field("rotations", "f", ("N", 4)),
    Field("log_scales", "f", ("N", 3)),
    Field("logit_opacities", "f", ("N",)),
    Field("sh", "f", ("N", "K", 3)),
)
_SKIN_FIELDS = (
    Field("skin_bone_names", "U", ("B",), optional=True),
    Field("skin_bone_parents", "i", ("B",), optional=True),
    Field("skin_rest_bone_to_object", "f", ("B", 4, 4), optional=True),
    Field("skin_bone_indices", "i", ("N", 4), optional=True),
    Field("skin_bone_weights", "f", ("N", 4), optional=True),
)
_SURFACE_FIELDS = (
    Field("surface_face_indices", "i", ("N",), optional=True),
    Field("surface_barycentrics", "f", ("N", 3), optional=True),
    Field("surface_offsets", "f", ("N", 3), optional=True),
)


def save_splats(g: Gaussians, path: str | Path) -> Path:
    """Write the cloud with its skin and surface binding atomically."""
    arrays = {
        "format": np.array(SPLATS_FORMAT), "version": np.array(SPLATS_VERSION),
        "means": g.means, "rotations": g.rotations, "log_scales": g.log_scales,
        "logit_opacities": g.logit_opacities, "sh": g.sh,
    }
    if g.skin is not None:
        arrays.update(
            skin_bone_names=np.array(g.skin.bone_names, dtype=str),
            skin_bone_parents=np.asarray(g.skin.bone_parents, np.int32),
            skin_rest_bone_to_object=np.asarray(g.skin.rest_bone_to_object, np.float64),
            skin_bone_indices=g.skin.bone_indices, skin_bone_weights=g.skin.bone_weights,
        )
    if g.surface is not None:
        arrays.update(surface_face_indices=g.surface.face_indices, surface_barycentrics=g.surface.barycentrics,
                      surface_offsets=g.surface.offsets)
    return save_npz_atomic(path, arrays)


def load_splats(path: str | Path) -> Gaussians:
    """Read and validate a splat container; FileFormatError names the file and the offending field."""
    arrays = load_npz(path, SPLATS_FORMAT, SPLATS_VERSION)
    dims = check_fields(path, arrays, _CLOUD_FIELDS + _SKIN_FIELDS + _SURFACE_FIELDS)
    if dims["N"] == 0:
        raise FileFormatError(path, "the file holds 0 splats", "means")
    skin = surface = None
    if _all_or_none(path, arrays, _SKIN_FIELDS):
        skin = SplatSkin(tuple(str(n) for n in arrays["skin_bone_names"]), arrays["skin_bone_parents"],
                         arrays["skin_rest_bone_to_object"], arrays["skin_bone_indices"], arrays["skin_bone_weights"])
    if _all_or_none(path, arrays, _SURFACE_FIELDS):
        surface = SurfaceBinding(arrays["surface_face_indices"], arrays["surface_barycentrics"],
                                 arrays["surface_offsets"])
    try:
        return make_gaussians(arrays["means"], arrays["rotations"], arrays["log_scales"], arrays["logit_opacities"],
                              arrays["sh"], skin=skin, surface=surface)
    except InvalidGaussians as exc:
        raise FileFormatError(path, str(exc)) from None


def _all_or_none(path: str | Path, arrays: dict[str, np.ndarray], fields: tuple[Field, ...]) -> bool:
    """True when every field of the group is present, False when none is; otherwise a clear error."""
    present = [f.name for f in fields if f.name in arrays]
    if present and len(present) != len(fields):
        missing = next(f.name for f in fields if f.name not in arrays)
        raise FileFormatError(path, f"{present[0]} is present, so this field must be too", missing)
    return bool(present)

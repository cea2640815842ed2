"""Linear blend skinning of Gaussian splats: centres, shapes and view-dependent colour follow the bones.

Skinning only the means (as for mesh vertices) leaves every splat facing its
rest direction, which tears a splat avatar apart at the elbows. Here each splat
gets its blended affine transform M = sum_i w_i A_i (A_i = posed bone @ inverse
rest bone); the mean maps as a point, the covariance as M3 Sigma M3^T (M3 = the
3x3 part), re-factored into a rotation and log-scales, and the SH colour turns
with the rotation part of M3 (its polar factor). Splats driven by one bone (M3
a rotation) take an exact shortcut: their quaternion is pre-multiplied, their
scales kept. This numpy path is the reference and the export path; the viewport
does the same in its vertex shader.

Frames: everything is in the cloud's object frame (metres); bone frames
(B, 4, 4) map bone-local coordinates to the object frame, rest and posed alike.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from ..errors import AvatarCaptureError
from ..kinematics import skinning_matrices as bone_deformations
from ..rotations import matrix_to_quat, quat_multiply, quat_to_matrix
from .gaussians import Gaussians, SplatSkin
from .transforms import rotate_sh

RIGID_TOLERANCE = 1e-6  # |M3^T M3 - I| below this: the splat moves rigidly, exact quaternion update
_MIN_SCALE = 1e-30  # floor for singular values before the log (a fully collapsed blend)
_PERMUTATIONS = np.array(list(itertools.permutations(range(3))))  # (6, 3)


def skinning_matrices(skin: SplatSkin, posed_bone_to_object: np.ndarray) -> np.ndarray:
    """Per-bone deformation (B, 4, 4) = posed bone frame @ inverse(rest bone frame).

    posed_bone_to_object (B, 4, 4) lists the bones in skin.bone_names order.
    """
    posed = np.asarray(posed_bone_to_object, np.float64)
    bones = len(skin.bone_names)
    if posed.shape != (bones, 4, 4) or not np.all(np.isfinite(posed)):
        raise AvatarCaptureError(f"posed bone matrices must be finite ({bones}, 4, 4) to match the splat skin's "
                                 f"{bones} bones, got shape {posed.shape}")
    return bone_deformations(posed, skin.rest_bone_to_object)


def blend_bone_transforms(bone_transforms: np.ndarray, bone_indices: np.ndarray,
                          bone_weights: np.ndarray) -> np.ndarray:
    """Per-splat affine transforms (N, 3, 4) = sum_i w_i A[idx_i][:3] for bone_transforms A (B, 4, 4).

    bone_indices (N, 4) int, bone_weights (N, 4) rows summing to 1.
    """
    return np.einsum("nk,nkab->nab", np.asarray(bone_weights, np.float64), bone_transforms[bone_indices, :3, :])


def polar_rotations(linear: np.ndarray) -> np.ndarray:
    """Rotation factors (N, 3, 3) of linear maps (N, 3, 3): the closest proper rotation (det +1) to each."""
    u, _, vt = np.linalg.svd(linear)
    flip = np.linalg.det(u @ vt) < 0.0
    u[flip, :, 2] *= -1.0
    return u @ vt


def deform_covariances(linear: np.ndarray, polar: np.ndarray, rotations: np.ndarray,
                       log_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New (rotations (N, 4) wxyz, log_scales (N, 3)) of covariances R S^2 R^T mapped to M3 Sigma M3^T.

    linear (N, 3, 3) = M3; polar (N, 3, 3) its rotation factor. General splats: the
    SVD of F = M3 R S gives Sigma' = U diag(sigma)^2 U^T, so the new axes are U's
    columns and the new scales the singular values; axes are then reordered and
    sign-flipped to match the old axes carried along by the polar rotation, so a
    splat keeps its axis labelling while the pose changes, and U is kept
    right-handed. Rigid splats: q' = polar * q, scales unchanged (exact).
    """
    rotations = np.asarray(rotations, np.float64)
    log_scales = np.asarray(log_scales, np.float64)
    new_rotations = quat_multiply(matrix_to_quat(polar), rotations)
    new_log_scales = log_scales.copy()
    stretch = np.einsum("nji,njk->nik", linear, linear) - np.eye(3)
    general = np.nonzero(np.abs(stretch).max(axis=(1, 2)) > RIGID_TOLERANCE)[0]
    if len(general) == 0:
        return new_rotations, new_log_scales
    axes_old = quat_to_matrix(rotations[general])  # columns: the splat's axes
    factor = linear[general] @ axes_old * np.exp(log_scales[general])[:, None, :]
    u, sigma, _ = np.linalg.svd(factor)
    expected = polar[general] @ axes_old  # where the old axes went
    similarity = np.abs(np.einsum("nai,naj->nij", expected, u))  # (n, old axis, new axis)
    scores = similarity[:, np.arange(3), _PERMUTATIONS].sum(axis=-1)  # (n, 6)
    order = _PERMUTATIONS[np.argmax(scores, axis=1)]  # (n, 3): new axis for each old axis
    u = np.take_along_axis(u, order[:, None, :], axis=2)
    sigma = np.take_along_axis(sigma, order, axis=1)
    signs = np.where(np.einsum("nai,nai->ni", expected, u) < 0.0, -1.0, 1.0)
    u *= signs[:, None, :]
    left_handed = np.linalg.det(u) < 0.0
    weakest = np.argmin(np.abs(np.einsum("nai,nai->ni", expected, u)), axis=1)
    u[left_handed, :, weakest[left_handed]] *= -1.0
    norms = np.linalg.norm(rotations[general], axis=1, keepdims=True)  # keep each quaternion's stored length
    new_rotations[general] = matrix_to_quat(u) * norms
    new_log_scales[general] = np.log(np.maximum(sigma, _MIN_SCALE))
    return new_rotations, new_log_scales


def skin_gaussians(g: Gaussians, posed_bone_to_object: np.ndarray) -> Gaussians:
    """The cloud posed by its skin: means, rotations, scales and SH follow the bones (LBS).

    posed_bone_to_object (B, 4, 4) in skin.bone_names order, object frame, metres.
    The result is the POSED cloud; it keeps the skin (rest frames and weights
    unchanged) so callers can still see how it is bound, but skinning it again
    would apply the pose twice: always skin the rest cloud.
    """
    if g.skin is None:
        raise AvatarCaptureError("these splats have no skin; bind them to an armature first")
    blended = blend_bone_transforms(skinning_matrices(g.skin, posed_bone_to_object), g.skin.bone_indices,
                                    g.skin.bone_weights)
    linear = blended[:, :, :3]
    means = np.einsum("nab,nb->na", linear, g.means.astype(np.float64)) + blended[:, :, 3]
    polar = polar_rotations(linear)
    rotations, log_scales = deform_covariances(linear, polar, g.rotations, g.log_scales)
    return replace(g, means=means.astype(np.float32), rotations=rotations.astype(np.float32),
                   log_scales=log_scales.astype(np.float32), sh=rotate_sh(g.sh, polar))

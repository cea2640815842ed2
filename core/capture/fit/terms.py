"""Loss terms of the fit (torch): robust reprojection, 3D bone directions, smoothness and foot contacts.

Each returns a scalar already normalised by how many things it sums over, so
the weights in solve.py mean the same for a short and a long clip.
"""
from __future__ import annotations

from ...landmarks import LANDMARK_NAMES

_L = {name: i for i, name in enumerate(LANDMARK_NAMES)}
# Landmark pairs whose direction BlazePose's 3D landmarks give reliably (limbs, torso, feet).
SEGMENTS = tuple((_L[a], _L[b]) for a, b in (
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_heel", "left_toe"), ("right_heel", "right_toe"),
    ("right_hip", "left_hip"), ("right_shoulder", "left_shoulder"), ("pelvis", "neck"),
    ("left_ear", "right_ear"), ("neck", "nose"),
))


def geman_mcclure(squared, sigma: float):
    """Geman-McClure robust penalty of squared residuals: sigma^2 r^2 / (sigma^2 + r^2)."""
    s2 = sigma * sigma
    return s2 * squared / (s2 + squared)


def project(points_world, rotations, translations, focal, principal):
    """Pixels (T, L, 2) and depths (T, L) of world points (T, L, 3) for world_to_cam rotations (T, 3, 3),
    translations (T, 3), focal length (scalar tensor) and principal point (2,)."""
    cam = points_world @ rotations.transpose(-1, -2) + translations[:, None, :]
    depth = cam[..., 2].clamp(min=1e-3)
    return focal * cam[..., :2] / depth[..., None] + principal, cam[..., 2]


def reprojection(pixels, observed, weights, sigma: float):
    """Mean weighted Geman-McClure error (pixels^2) between projected and observed pixels (T, L, 2)."""
    squared = ((pixels - observed) ** 2).sum(-1)
    return (weights * geman_mcclure(squared, sigma)).sum() / weights.sum().clamp(min=1.0)


def bone_directions(landmarks_world, rotations, observed_cam, weights):
    """Mean squared difference of unit segment directions, in camera axes, against the detector's 3D landmarks.

    Scale-free, so it transfers the detector's 3D pose without its guessed bone lengths.
    landmarks_world (T, L, 3); rotations (T, 3, 3) world_to_cam; observed_cam (T, L, 3) (NaN filled
    with 0 where weights are 0); weights (T, L).
    """
    import torch

    a = torch.tensor([s[0] for s in SEGMENTS])
    b = torch.tensor([s[1] for s in SEGMENTS])
    model = (landmarks_world[:, b] - landmarks_world[:, a]) @ rotations.transpose(-1, -2)
    seen = observed_cam[:, b] - observed_cam[:, a]
    model = model / model.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    seen = seen / seen.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    w = weights[:, a] * weights[:, b]
    return (w * ((model - seen) ** 2).sum(-1)).sum() / w.sum().clamp(min=1.0)


def acceleration(points):
    """Mean squared second difference over time of points (T, ..., 3) (metres^2 per frame^4)."""
    if len(points) < 3:
        return points.sum() * 0.0
    return ((points[2:] - 2 * points[1:-1] + points[:-2]) ** 2).sum(-1).mean()


def contact_slide(foot_points, contacts):
    """Mean squared step (metres^2) of foot points (T, P, 3) between consecutive frames both in contact (T, P)."""
    both = contacts[1:] * contacts[:-1]
    step = ((foot_points[1:] - foot_points[:-1]) ** 2).sum(-1)
    return (both * step).sum() / both.sum().clamp(min=1.0)


def contact_height(foot_points, contacts, rest_heights):
    """Mean squared distance (metres^2) in contact frames (T, P) of foot points (T, P, 3) from their
    height above the sole when the foot stands flat (P,): heels and toes are surface points, not the sole."""
    return (contacts * (foot_points[..., 2] - rest_heights) ** 2).sum() / contacts.sum().clamp(min=1.0)


def penetration(foot_points, rest_heights):
    """Mean squared depth (metres^2) by which foot points (T, P, 3) put the sole below the ground Z = 0."""
    return ((foot_points[..., 2] - rest_heights).clamp(max=0.0) ** 2).mean()

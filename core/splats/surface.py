"""Splats bound to mesh triangles (GaussianAvatars-style): each splat rides on its nearest triangle.

Skinning weights blur across joints; a binding to the body mesh's triangles lets
splats follow whatever deforms the mesh (skinning, blend shapes, cloth), with
their shape turning with the local surface.

Triangle frame (columns, right-handed): tangent = normalised edge v0 -> v1,
normal = normalised (v1 - v0) x (v2 - v0), bitangent = normal x tangent.
A bound cloud stores, per splat, the triangle index, the barycentrics of the
closest point on that triangle (the anchor) and the mean's offset from the
anchor in the triangle frame (metres); its rotations and SH are made relative
to the triangle frame, so they only mean something together with a mesh: render
``follow_surface(g, vertices, faces)``. The means stay the rest-pose means (for
bounds and picking). Triangle frames are rigid: stretching a triangle moves the
anchor but does not scale the splats.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import AvatarCaptureError
from ..rotations import matrix_to_quat, quat_multiply
from .gaussians import Gaussians, SurfaceBinding
from .transforms import rotate_sh

_MAX_PAIRS = 1 << 19  # point-triangle pairs per batch: bounds temporary memory to ~150 MB
_MIN_AREA2 = 1e-24  # squared doubled area below which a triangle has no frame (m^4)


def triangle_frames(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Frames (F, 3, 3) of triangles faces (F, 3) of vertices (V, 3): columns tangent, bitangent, normal."""
    tri = np.asarray(vertices, np.float64)[faces]
    collapsed = collapsed_triangles(tri)
    if collapsed.any():
        raise AvatarCaptureError(f"{int(collapsed.sum())} triangle(s) carrying splats have collapsed to no area, "
                                 "so they have no frame")
    edge = tri[:, 1] - tri[:, 0]
    normal = np.cross(edge, tri[:, 2] - tri[:, 0])
    tangent = edge / np.linalg.norm(edge, axis=1, keepdims=True)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return np.stack([tangent, np.cross(normal, tangent), normal], axis=2)


def collapsed_triangles(tri: np.ndarray) -> np.ndarray:
    """(F,) True where triangle corners tri (F, 3, 3) have (next to) no area or a zero first edge."""
    edge = tri[:, 1] - tri[:, 0]
    normal = np.cross(edge, tri[:, 2] - tri[:, 0])
    return (np.einsum("fi,fi->f", normal, normal) < _MIN_AREA2) | (np.einsum("fi,fi->f", edge, edge) < _MIN_AREA2)


def closest_point_barycentrics(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentrics (..., 3) of the point of triangle (a, b, c) closest to p; all inputs (..., 3).

    Voronoi-region tests of the vertex, edge and face regions, in that order of
    precedence (np.select keeps the first region that applies).
    """
    ab, ac = b - a, c - a
    ap, bp, cp = p - a, p - b, p - c
    d1, d2, d3, d4, d5, d6 = _dot(ab, ap), _dot(ac, ap), _dot(ab, bp), _dot(ac, bp), _dot(ab, cp), _dot(ac, cp)
    vc, vb, va = d1 * d4 - d3 * d2, d5 * d2 - d1 * d6, d3 * d6 - d5 * d4
    on_ab = d1 / _nonzero(d1 - d3)
    on_ac = d2 / _nonzero(d2 - d6)
    on_bc = (d4 - d3) / _nonzero((d4 - d3) + (d5 - d6))
    total = _nonzero(va + vb + vc)
    v, w = vb / total, vc / total
    zero, one = np.zeros_like(d1), np.ones_like(d1)
    regions = [  # vertices a, b, c; edges ab, ac, bc; otherwise the inside of the face
        (d1 <= 0) & (d2 <= 0), (d3 >= 0) & (d4 <= d3), (d6 >= 0) & (d5 <= d6),
        (vc <= 0) & (d1 >= 0) & (d3 <= 0), (vb <= 0) & (d2 >= 0) & (d6 <= 0),
        (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
    ]
    return np.stack([
        np.select(regions, [one, zero, zero, 1 - on_ab, 1 - on_ac, zero], default=1 - v - w),
        np.select(regions, [zero, one, zero, on_ab, zero, 1 - on_bc], default=v),
        np.select(regions, [zero, zero, one, zero, on_ac, on_bc], default=w),
    ], axis=-1)


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", u, v)


def _nonzero(x: np.ndarray) -> np.ndarray:
    """x with exact zeros replaced by 1: those quotients are only used in regions where x is not 0."""
    return np.where(x != 0.0, x, 1.0)


def nearest_triangles(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(face_indices (N,), barycentrics (N, 3)) of the closest point on the mesh for each point (N, 3).

    Exact, with few exact point-triangle tests. Every point of triangle f lies
    within its bounding radius r_f of its centroid c_f, so |p - c_f| - r_f bounds
    its distance from below and |p - c_f| + r_f from above. Triangles are put in
    about 2 sqrt(F) spatially coherent groups (Morton order of the centroids) with
    bounding spheres. A point takes an upper bound u from the group whose centre
    is nearest, tightens u over the triangles of every group that could beat it,
    and exactly tests only the triangles whose lower bound is <= u.
    """
    groups = _TriangleGroups(np.asarray(vertices, np.float64)[faces])
    points = np.asarray(points, np.float64)
    face_out = np.empty(len(points), np.int64)
    bary_out = np.empty((len(points), 3))
    rows = max(1, _MAX_PAIRS // (8 * groups.size))  # about 8 candidate groups per point near the surface
    for start in range(0, len(points), rows):
        part = slice(start, start + rows)
        face_out[part], bary_out[part] = groups.nearest(points[part])
    return face_out, bary_out


class _TriangleGroups:
    """Triangles (F, 3, 3) with bounding spheres, grouped by proximity, for nearest-triangle queries."""

    def __init__(self, tri: np.ndarray) -> None:
        self.tri = tri
        self.centroid = tri.mean(axis=1)
        self.radius = np.linalg.norm(tri - self.centroid[:, None], axis=2).max(axis=1)
        self.size = int(np.ceil(np.sqrt(len(tri)) / 2))  # 2 sqrt(F) groups: fastest on body-like meshes
        order = _spatial_order(self.centroid)
        self.members = np.concatenate([order, np.full(-len(order) % self.size, order[-1])]).reshape(-1, self.size)
        self.centre = self.centroid[self.members].mean(axis=1)  # (G, 3)
        self.reach = (np.linalg.norm(self.centroid[self.members] - self.centre[:, None], axis=2)
                      + self.radius[self.members]).max(axis=1)  # (G,) bounding radius of each group

    def nearest(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(face (n,), barycentrics (n, 3)) for points p (n, 3); halves the batch when it has too many pairs."""
        to_group = np.linalg.norm(p[:, None] - self.centre, axis=2)  # (n, G)
        near = self.members[np.argmin(to_group, axis=1)]  # (n, size)
        upper = (np.linalg.norm(p[:, None] - self.centroid[near], axis=2) + self.radius[near]).min(axis=1)
        point, group = np.nonzero(to_group - self.reach <= upper[:, None] + 1e-9)  # sorted by point
        if len(point) * self.size > _MAX_PAIRS and len(p) > 1:
            half = len(p) // 2
            (f0, b0), (f1, b1) = self.nearest(p[:half]), self.nearest(p[half:])
            return np.concatenate([f0, f1]), np.concatenate([b0, b1])
        who, face = np.repeat(point, self.size), self.members[group].reshape(-1)
        to_centroid = np.linalg.norm(p[who] - self.centroid[face], axis=1)
        runs = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
        upper[who[runs]] = np.minimum(upper[who[runs]],
                                      np.minimum.reduceat(to_centroid + self.radius[face], runs))
        keep = to_centroid - self.radius[face] <= upper[who] + 1e-9
        who, face = who[keep], face[keep]
        corners = self.tri[face]
        bary = closest_point_barycentrics(p[who], corners[:, 0], corners[:, 1], corners[:, 2])
        gap = np.linalg.norm(np.einsum("nc,nci->ni", bary, corners) - p[who], axis=1)
        order = np.lexsort((gap, who))  # by point, nearest first
        _, first = np.unique(who[order], return_index=True)
        best = order[first]
        return face[best], bary[best]


def _spatial_order(centroid: np.ndarray) -> np.ndarray:
    """Indices (F,) sorting points (F, 3) along a Morton (Z-order) curve: neighbours in the order are near in space."""
    lo, hi = centroid.min(axis=0), centroid.max(axis=0)
    cells = ((centroid - lo) / np.maximum(hi - lo, 1e-12) * 1023).astype(np.int64)  # 10 bits per axis
    code = np.zeros(len(centroid), np.int64)
    for bit in range(10):
        for axis in range(3):
            code |= ((cells[:, axis] >> bit) & 1) << (3 * bit + axis)
    return np.argsort(code, kind="stable")


def bind_to_surface(g: Gaussians, vertices: np.ndarray, faces: np.ndarray) -> Gaussians:
    """The cloud bound to its nearest triangles of a mesh (vertices (V, 3) metres, faces (F, 3) int).

    Both in the cloud's object frame. Rotations and SH become relative to the
    triangle frames (see the module docstring); any skin is kept.
    """
    faces = np.asarray(faces, np.int64)
    usable = np.nonzero(~collapsed_triangles(np.asarray(vertices, np.float64)[faces]))[0]
    if len(usable) == 0:
        raise AvatarCaptureError("the mesh has no triangle with an area to bind splats to")
    face, bary = nearest_triangles(g.means, vertices, faces[usable])
    face = usable[face]
    frames = triangle_frames(vertices, faces[face])
    inverse = np.swapaxes(frames, 1, 2)
    anchors = np.einsum("nc,nci->ni", bary, np.asarray(vertices, np.float64)[faces[face]])
    offsets = np.einsum("nij,nj->ni", inverse, g.means - anchors)
    rotations = quat_multiply(matrix_to_quat(inverse), g.rotations)
    binding = SurfaceBinding(face.astype(np.int32), bary.astype(np.float32), offsets.astype(np.float32))
    return replace(g, rotations=rotations.astype(np.float32), sh=rotate_sh(g.sh, inverse), surface=binding)


def follow_surface(g: Gaussians, vertices: np.ndarray, faces: np.ndarray) -> Gaussians:
    """The renderable cloud on the mesh posed as vertices (V, 3): means, rotations and SH follow the triangles.

    faces (F, 3) must be the triangles the cloud was bound to. The result is a
    plain cloud in the object frame (the binding is dropped: bind the rest cloud,
    follow every pose from it).
    """
    if g.surface is None:
        raise AvatarCaptureError("these splats are not bound to a surface; bind them to a mesh first")
    faces = np.asarray(faces, np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or g.surface.face_indices.max() >= len(faces):
        raise AvatarCaptureError(f"the splats are bound to triangle {int(g.surface.face_indices.max())}, "
                                 f"but the mesh has {len(faces)} triangles")
    face = g.surface.face_indices
    frames = triangle_frames(vertices, faces[face])
    anchors = np.einsum("nc,nci->ni", g.surface.barycentrics, np.asarray(vertices, np.float64)[faces[face]])
    means = anchors + np.einsum("nij,nj->ni", frames, g.surface.offsets)
    rotations = quat_multiply(matrix_to_quat(frames), g.rotations)
    return replace(g, means=means.astype(np.float32), rotations=rotations.astype(np.float32),
                   sh=rotate_sh(g.sh, frames), surface=None)

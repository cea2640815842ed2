"""The body as a differentiable function of its pose, for the optimiser (torch).

Only the skeleton and the landmark regressor are evaluated (a reduced rig of
about 20 joints, see RiggedBody.reduced): fitting never touches the mesh, which
is what makes a whole-sequence fit cheap. The maths is kinematics.py's
(Blender's pose-bone convention) written in batched torch.
"""
from __future__ import annotations

import numpy as np

from ...rig import RiggedBody


def so3_exp(axis_angle):
    """Rotation matrices (..., 3, 3) from rotation vectors (..., 3) (Rodrigues), smooth at zero."""
    import torch

    angle2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    angle = torch.sqrt(angle2 + 1e-12)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), -1).reshape(axis_angle.shape[:-1] + (3, 3))
    small = angle2 < 1e-8
    a = torch.where(small, 1.0 - angle2 / 6.0, torch.sin(angle) / angle)
    b = torch.where(small, 0.5 - angle2 / 24.0, (1.0 - torch.cos(angle)) / (angle2 + 1e-12))
    eye = torch.eye(3, dtype=axis_angle.dtype).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


class TorchBody:
    """Forward kinematics and landmarks of a (reduced) rig for batched poses.

    rotations (T, J, 3, 3) local, root_translation (T, 3) world metres ->
    joint frames and landmarks (T, L, 3) in the world.
    """

    def __init__(self, rig: RiggedBody, dtype=None) -> None:
        import torch

        from ...kinematics import rest_local_transforms

        self.dtype = dtype or torch.float32
        s = rig.skeleton
        rest = np.asarray(s.rest_frames_world, dtype=np.float64)
        local = rest_local_transforms(rest, s.parents)
        self.parents = [int(p) for p in s.parents]
        # Joints grouped by depth in the tree, so FK takes one batched step per level, not per joint.
        depth = [0] * len(self.parents)
        for j in range(1, len(self.parents)):
            depth[j] = depth[self.parents[j]] + 1
        self.levels = [[j for j in range(len(depth)) if depth[j] == d] for d in range(max(depth) + 1)]
        slot = {j: i for level in self.levels for i, j in enumerate(level)}
        self.level_parents = [torch.tensor([slot[self.parents[j]] for j in level]) for level in self.levels[1:]]
        self.level_joints = [torch.tensor(level) for level in self.levels]
        order = [j for level in self.levels for j in level]
        self.joint_order = torch.tensor(np.argsort(order))  # from level order back to joint order
        self.rest_local_rotation = torch.tensor(local[:, :3, :3], dtype=self.dtype)
        self.rest_local_offset = torch.tensor(local[:, :3, 3], dtype=self.dtype)
        self.rest_rotation_t = torch.tensor(np.swapaxes(rest[:, :3, :3], -1, -2), dtype=self.dtype)
        self.rest_head = torch.tensor(rest[:, :3, 3], dtype=self.dtype)
        points = np.asarray(rig.landmark_bone_points, dtype=np.float64)
        # Laid out for batched matrix products: (J, 3, L) and (J, L).
        self.bone_points = torch.tensor(np.transpose(points[..., :3], (1, 2, 0)), dtype=self.dtype)
        self.bone_weights = torch.tensor(points[..., 3].T, dtype=self.dtype)

    def joints(self, rotations, root_translation):
        """World rotations (T, J, 3, 3) and heads (T, J, 3) of every joint."""
        import torch

        world_rot = [self.rest_local_rotation[0] @ rotations[:, :1]]  # per level: (T, n, 3, 3)
        heads = [root_translation[:, None]]
        for joints, parents in zip(self.level_joints[1:], self.level_parents):
            parent_rot = world_rot[-1][:, parents]
            world_rot.append(parent_rot @ (self.rest_local_rotation[joints] @ rotations[:, joints]))
            heads.append((parent_rot @ self.rest_local_offset[joints][..., None])[..., 0] + heads[-1][:, parents])
        return torch.cat(world_rot, 1)[:, self.joint_order], torch.cat(heads, 1)[:, self.joint_order]

    def landmarks(self, rotations, root_translation):
        """Landmarks (T, L, 3) in the world, in the rig's landmark order.

        Written with matmul rather than einsum: on CPU torch's einsum takes a
        slow path for these shapes (about 20x slower, forward and backward).
        """
        world_rot, heads = self.joints(rotations, root_translation)
        deform_rot = world_rot @ self.rest_rotation_t  # (T, J, 3, 3)
        deform_shift = heads - (deform_rot @ self.rest_head[..., None])[..., 0]  # (T, J, 3)
        rotated = (deform_rot @ self.bone_points).sum(1)  # (T, 3, L)
        shifted = deform_shift.transpose(1, 2) @ self.bone_weights  # (T, 3, L)
        return (rotated + shifted).transpose(1, 2)

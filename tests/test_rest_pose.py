"""T-pose / A-pose rest frames and rebasing clips and rigs onto them."""
import numpy as np
import pytest

from avatar_capture.core import kinematics, rest_pose
from avatar_capture.core.clip import clip_from_pose
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.rotations import axis_angle_to_quat
from avatar_capture.core.skeleton import Skeleton

ANNY_LEFT_ARM = ("upperarm01.L", "upperarm02.L", "lowerarm01.L", "lowerarm02.L", "wrist.L")
ANNY_LEFT_LEG = ("upperleg01.L", "upperleg02.L", "lowerleg01.L", "lowerleg02.L")


def random_pose(rig, frames, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    rotations = axis_angle_to_quat(rng.normal(scale=scale, size=(frames, rig.skeleton.joint_count, 3)))
    root = rig.skeleton.rest_heads_world[0] + rng.normal(scale=0.2, size=(frames, 3))
    return rotations, root


def y_axes(skeleton, frames, names):
    return np.array([frames[skeleton.index(name), :3, 1] for name in names])


@pytest.fixture(scope="module")
def t_frames(anny_rig):
    return rest_pose.rest_frames_for(anny_rig.skeleton, "anny", "T")


def test_t_pose_arms_horizontal_legs_down(anny_rig, t_frames):
    s = anny_rig.skeleton
    assert np.allclose(y_axes(s, t_frames, ANNY_LEFT_ARM), [1, 0, 0], atol=1e-9)
    right_arm = [name.replace(".L", ".R") for name in ANNY_LEFT_ARM]
    assert np.allclose(y_axes(s, t_frames, right_arm), [-1, 0, 0], atol=1e-9)
    assert np.allclose(y_axes(s, t_frames, ANNY_LEFT_LEG), [0, 0, -1], atol=1e-9)
    # The rest of the skeleton: bones follow their parents rigidly; feet keep their world orientation.
    foot = s.index("foot.L")
    assert np.allclose(t_frames[foot, :3, :3], s.rest_frames_world[foot, :3, :3], atol=1e-9)
    old_local = kinematics.rest_local_transforms(s.rest_frames_world, s.parents)
    new_local = kinematics.rest_local_transforms(t_frames, s.parents)
    assert np.allclose(new_local[:, :3, 3], old_local[:, :3, 3], atol=1e-9)  # bone offsets kept
    moved = {s.index(n) for n in ANNY_LEFT_ARM + ANNY_LEFT_LEG} | {s.index(n.replace(".L", ".R"))
                                                                   for n in ANNY_LEFT_ARM + ANNY_LEFT_LEG}
    moved |= {foot, s.index("foot.R")}
    rigid = [j for j in range(s.joint_count) if j not in moved]
    assert np.allclose(new_local[rigid], old_local[rigid], atol=1e-9)
    assert np.allclose(t_frames[:, :3, 3][s.index("head")], s.rest_heads_world[s.index("head")])
    # The wrist ends up level with the shoulder (Anny's child heads sit up to ~2 mm off their parent's axis).
    wrist, shoulder = s.index("wrist.L"), s.index("upperarm01.L")
    assert t_frames[wrist, 2, 3] == pytest.approx(t_frames[shoulder, 2, 3], abs=0.005)
    assert t_frames[wrist, 0, 3] - t_frames[shoulder, 0, 3] > 0.4


def test_a_pose_arms_down_45_degrees(anny_rig):
    s = anny_rig.skeleton
    frames = rest_pose.rest_frames_for(s, "anny", "A")
    assert np.allclose(y_axes(s, frames, ANNY_LEFT_ARM), [np.sqrt(0.5), 0, -np.sqrt(0.5)], atol=1e-9)
    with pytest.raises(AvatarCaptureError, match="unknown rest pose"):
        rest_pose.rest_frames_for(s, "anny", "X")
    with pytest.raises(AvatarCaptureError, match="body model 'none'"):
        rest_pose.rest_frames_for(s, "none", "T")


def test_smpl_skeleton_t_pose():
    from test_body_smpl import SMPL_JOINTS, SMPL_PARENTS
    from avatar_capture.core.body.smpl_body import SMPL_TO_WORLD

    names = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
             "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
             "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
             "left_hand", "right_hand")
    heads = SMPL_JOINTS @ SMPL_TO_WORLD.T
    # Bend the arms down first so the T-pose has something to do.
    heads[[18, 20, 22], 2] -= [0.1, 0.3, 0.4]
    tails = heads + [0.0, 0.0, 0.05]
    for child, parent in enumerate(SMPL_PARENTS):
        if parent >= 0:
            tails[parent] = heads[child]
    frames = kinematics.frames_from_heads_tails(heads, tails, np.tile([0.0, -1.0, 0.0], (24, 1)))
    skeleton = Skeleton(names, np.array(SMPL_PARENTS), frames, np.linalg.norm(tails - heads, axis=1))
    t_frames = rest_pose.rest_frames_for(skeleton, "smpl", "T")
    arm = ("left_shoulder", "left_elbow", "left_wrist", "left_hand")
    assert np.allclose(y_axes(skeleton, t_frames, arm), [1, 0, 0], atol=1e-9)
    assert np.allclose(y_axes(skeleton, t_frames, ("right_hip", "right_knee")), [0, 0, -1], atol=1e-9)


def test_rebase_clip_keeps_world_motion(anny_rig, t_frames):
    rotations, root = random_pose(anny_rig, 5, seed=1)
    clip = clip_from_pose(anny_rig, rotations, root, 30.0)
    rebased = rest_pose.rebase_clip(clip, t_frames)
    assert np.array_equal(rebased.skeleton.rest_frames_world, t_frames)
    assert np.array_equal(rebased.joints_world, clip.joints_world)
    frames = kinematics.forward_kinematics(t_frames, clip.skeleton.parents, rebased.rotations,
                                           rebased.root_translation)
    assert np.abs(frames[:, :, :3, 3] - clip.joints_world).max() < 1e-9
    assert not np.allclose(rebased.rotations, clip.rotations, atol=1e-3)  # the rotations did change
    # Bad rest frames (a moved joint) are refused with a clear message.
    moved = t_frames.copy()
    moved[5, :3, 3] += 0.1
    with pytest.raises(AvatarCaptureError, match="pose of the same skeleton"):
        rest_pose.rebase_clip(clip, moved)


def test_rebase_rig_skins_the_same(anny_rig, t_frames):
    rebased = rest_pose.rebase_rig(anny_rig, t_frames)
    s = anny_rig.skeleton
    # The rebased mesh at rest is the original mesh posed into the T-pose.
    to_t, root = kinematics.local_rotations(t_frames[None], s.rest_frames_world, s.parents)
    assert np.abs(anny_rig.skin(anny_rig.pose(to_t, root))[0] - rebased.vertices_rest).max() < 1e-9

    rotations, root = random_pose(anny_rig, 3, seed=2)
    frames = anny_rig.pose(rotations, root)
    new_rotations, new_root = kinematics.local_rotations(frames, t_frames, s.parents)
    new_frames = rebased.pose(new_rotations, new_root)
    assert np.abs(new_frames - frames).max() < 1e-9
    # Landmarks skin exactly as before.
    assert np.abs(rebased.landmarks(new_frames) - anny_rig.landmarks(frames)).max() < 1e-9
    # Vertices whose bones all share one rest change skin exactly as before; blended ones stay close.
    change = t_frames @ np.linalg.inv(s.rest_frames_world)
    influence = anny_rig.skin_weights > 0
    same = np.array([np.allclose(change[idx[w]], change[idx[w][0]], atol=1e-12)
                     for idx, w in zip(anny_rig.skin_indices, influence)])
    before, after = anny_rig.skin(frames), rebased.skin(new_frames)
    error = np.linalg.norm(after - before, axis=-1)
    assert same.mean() > 0.6
    assert error[:, same].max() < 1e-9
    assert error.max() < 0.05  # measured 2.4 cm at a shoulder for this random pose

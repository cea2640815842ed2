"""The procedural demo walk on the real Anny body."""
import numpy as np
import pytest

from avatar_capture.core.clip import load_clip, save_clip
from avatar_capture.core.demo_motion import make_demo_clip
from avatar_capture.core.landmarks import CONTACT_NAMES


@pytest.fixture(scope="module")
def walk(anny_rig):
    return make_demo_clip(anny_rig, seconds=4.0, fps=30.0)


def test_walk_is_a_valid_clip(walk, anny_rig, tmp_path):
    assert walk.frame_count == 120 and walk.fps == 30.0 and walk.body_model == "anny"
    for array in (walk.rotations, walk.root_translation, walk.joints_world, walk.landmarks_world, walk.contacts):
        assert np.all(np.isfinite(array))
    assert np.allclose(np.linalg.norm(walk.rotations, axis=-1), 1.0)
    back = load_clip(save_clip(walk, tmp_path / "walk.npz"))  # passes the file's own validation
    assert np.allclose(back.joints_world, walk.joints_world, atol=1e-5)


def test_walk_moves_forward_with_feet_on_the_ground(walk, anny_rig):
    root = walk.root_translation
    speed = (root[0, 1] - root[-1, 1]) / ((walk.frame_count - 1) / walk.fps)
    assert 1.0 < speed < 1.4  # forward is -Y, about 1.2 m/s
    assert np.abs(root[:, 0] - root[0, 0]).max() < 1e-9
    bob = root[:, 2].max() - root[:, 2].min()
    assert 0.005 < bob < 0.1
    # The lowest vertex of the body touches the ground on every (sampled) frame.
    frames = anny_rig.pose(walk.rotations[::10], root[::10])
    lowest = anny_rig.skin(frames)[:, :, 2].min(axis=1)
    assert np.all(np.abs(lowest) < 0.02), lowest
    # Heads and arms stay above the knees: a walk, not a tumble.
    head = walk.joints_world[:, walk.skeleton.index("head"), 2]
    assert head.min() > 1.3


def test_contacts_follow_the_feet(walk):
    feet = [walk.landmark_names.index(name) for name in CONTACT_NAMES]
    contacts = walk.contacts
    assert contacts.min() >= 0.0 and contacts.max() <= 1.0
    for column in range(4):
        assert (contacts[:, column] > 0.9).mean() > 0.3  # planted for a good part of the cycle
        assert (contacts[:, column] < 0.1).mean() > 0.2  # and lifted for another
    # A planted foot does not slide.
    positions = walk.landmarks_world[:, feet]
    step = np.linalg.norm(np.diff(positions[:, :, :2], axis=0), axis=-1)  # (T-1, 4) metres per frame
    planted = (contacts[1:] > 0.9) & (contacts[:-1] > 0.9)
    assert step[planted].max() < 0.005
    # Left and right alternate: their contacts are not the same signal.
    assert np.corrcoef(contacts[:, 0], contacts[:, 2])[0, 1] < 0.2


def test_arms_hang_and_swing_against_the_legs(walk):
    """The rest pose's A-pose is lowered: upper arms within 20 deg of vertical, swinging fore and aft."""
    names = list(walk.landmark_names)
    lm = walk.landmarks_world
    for side, other in (("left", "right"), ("right", "left")):
        upper = lm[:, names.index(f"{side}_elbow")] - lm[:, names.index(f"{side}_shoulder")]
        from_vertical = np.degrees(np.arctan2(np.abs(upper[:, 0]), -upper[:, 2]))
        assert from_vertical.max() < 20.0, from_vertical.max()
        wrist_y = lm[:, names.index(f"{side}_wrist"), 1] - lm[:, names.index(f"{side}_shoulder"), 1]
        ankle_y = lm[:, names.index(f"{other}_ankle"), 1] - lm[:, names.index("pelvis"), 1]
        assert np.ptp(wrist_y) > 0.1  # a visible swing
        assert np.corrcoef(wrist_y, ankle_y)[0, 1] > 0.5  # the arm goes forward with the opposite leg

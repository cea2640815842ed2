"""BVH -> motion clip: a small humanoid written here with known motion, Blender's BVH importer as the
reference for the rest bones, the clip file round trip, bad files, and the CMU clips in ../shared (skipped
when absent)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from avatar_capture.core.bvh import read_bvh, world_pose
from avatar_capture.core.clip import load_clip, save_clip
from avatar_capture.core.errors import FileFormatError
from avatar_capture.core.kinematics import forward_kinematics
from avatar_capture.core.landmarks import CONTACT_NAMES, LANDMARK_NAMES
from avatar_capture.core.retarget.bvh_clip import clip_from_bvh
from avatar_capture.core.rotations import quat_to_matrix

SHARED_BVH = Path(__file__).resolve().parents[2] / "shared" / "media" / "bvh"
CMU_FILES = sorted(SHARED_BVH.glob("*.bvh")) if SHARED_BVH.is_dir() else []
needs_cmu = pytest.mark.skipif(not CMU_FILES, reason=f"no CMU BVH files in {SHARED_BVH}")

FPS = 30.0
ROOT_CHANNELS = "Xposition Yposition Zposition Zrotation Xrotation Yrotation"
# (name, parent, offset in file units (cm, Y up, facing +Z, left = +X), End Site offset or None)
HUMANOID = (
    ("Hips", None, (0, 0, 0), None),
    ("LeftUpLeg", "Hips", (10, -5, 0), None),
    ("LeftLeg", "LeftUpLeg", (0, -42, 0), None),
    ("LeftFoot", "LeftLeg", (0, -40, 0), None),
    ("LeftToeBase", "LeftFoot", (0, -8, 12), (0, 0, 6)),
    ("RightUpLeg", "Hips", (-10, -5, 0), None),
    ("RightLeg", "RightUpLeg", (0, -42, 0), None),
    ("RightFoot", "RightLeg", (0, -40, 0), None),
    ("RightToeBase", "RightFoot", (0, -8, 12), (0, 0, 6)),
    ("Spine", "Hips", (0, 10, 0), None),
    ("Neck", "Spine", (0, 45, 0), None),
    ("Head", "Neck", (0, 10, 0), (0, 20, 0)),
    ("LeftArm", "Spine", (18, 40, 0), None),
    ("LeftForeArm", "LeftArm", (28, 0, 0), None),
    ("LeftHand", "LeftForeArm", (25, 0, 0), (8, 0, 0)),
    ("RightArm", "Spine", (-18, 40, 0), None),
    ("RightForeArm", "RightArm", (-28, 0, 0), None),
    ("RightHand", "RightForeArm", (-25, 0, 0), (-8, 0, 0)),
)
NAMES = tuple(joint[0] for joint in HUMANOID)
HIP_HEIGHT = 95.0  # cm: the toe joints' heads are on the floor (5 + 42 + 40 + 8), the ankles 8 cm up


def humanoid_bvh(motion: np.ndarray, names: tuple[str, ...] = NAMES, translated: tuple[str, ...] = ()) -> str:
    """The HUMANOID hierarchy (joints renamed to `names`) with motion (F, 6 + 3 * (J - 1)), rotations ZXY.

    Joints in `translated` also have position channels (three more motion columns before their rotations).
    """
    lines = ["HIERARCHY"]

    def write(joint: int, depth: int) -> None:
        name, _, offset, end = HUMANOID[joint]
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if joint == 0 else 'JOINT'} {names[joint]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {offset[0]} {offset[1]} {offset[2]}")
        channels = ROOT_CHANNELS if joint == 0 else "Zrotation Xrotation Yrotation"
        if name in translated:
            channels = "Xposition Yposition Zposition " + channels
        lines.append(f"{pad}  CHANNELS {len(channels.split())} {channels}")
        for child, (_, parent, _, _) in enumerate(HUMANOID):
            if parent == name:
                write(child, depth + 1)
        if end is not None:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET {end[0]} {end[1]} {end[2]}", pad + "  }"])
        lines.append(pad + "}")

    write(0, 0)
    lines += ["MOTION", f"Frames: {len(motion)}", f"Frame Time: {1.0 / FPS:.10f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    return "\n".join(lines) + "\n"


def channel_index(joint: str, axis: str) -> int:
    """Motion column of a non-root joint's rotation about the file's axis (channels Z X Y)."""
    return 6 + 3 * (NAMES.index(joint) - 1) + "ZXY".index(axis)


def random_motion(frames: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    motion = rng.uniform(-60.0, 60.0, (frames, 6 + 3 * (len(NAMES) - 1)))
    motion[:, :3] = rng.uniform(-50.0, 150.0, (frames, 3))
    return motion


def gait_motion(floor_cm: float = 20.0) -> np.ndarray:
    """60 frames, root still: the left foot stands for frames 0-29 and swings in 30-59, the right the other way."""
    motion = np.zeros((60, 6 + 3 * (len(NAMES) - 1)))
    motion[:, 1] = HIP_HEIGHT + floor_cm
    for side, start in (("Left", 30), ("Right", 0)):
        phase = np.clip((np.arange(60) - start) / 30.0, 0.0, 1.0)
        bump = np.sin(np.pi * phase)
        # Turning about file +X by a negative angle takes a downward leg forwards (+Z); the knee bends back.
        motion[:, channel_index(f"{side}UpLeg", "X")] = -60.0 * bump  # thigh up, shin upright: the foot
        motion[:, channel_index(f"{side}Leg", "X")] = 60.0 * bump  # rises 0.26 m, flat, 0.36 m forward
    return motion


def write(tmp_path: Path, text: str, name: str = "clip.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def fk_positions(clip) -> np.ndarray:
    skeleton = clip.skeleton
    return forward_kinematics(skeleton.rest_frames_world, skeleton.parents, clip.rotations,
                              clip.root_translation)


def test_joints_are_world_pose_and_forward_kinematics_reproduces_them(tmp_path):
    path = write(tmp_path, humanoid_bvh(random_motion()))
    clip = clip_from_bvh(path)
    pose = world_pose(read_bvh(path))
    assert clip.skeleton.joint_names == NAMES and clip.body_model == "none" and clip.frame_count == 12
    assert clip.fps == pytest.approx(FPS, rel=1e-8)  # the file's frame time has 10 decimals
    np.testing.assert_allclose(clip.joints_world, pose.positions, atol=1e-6)
    np.testing.assert_allclose(clip.root_translation, pose.positions[:, 0], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(clip.rotations, axis=-1), 1.0, atol=1e-12)
    assert np.all(np.sum(clip.rotations[1:] * clip.rotations[:-1], axis=-1) >= 0.0)  # no sign flips between keys
    frames = fk_positions(clip)
    np.testing.assert_allclose(frames[..., :3, 3], clip.joints_world, atol=1e-6)
    # Each posed bone is its rest bone turned by the joint's world rotation.
    rest = clip.skeleton.rest_frames_world[:, :3, :3]
    np.testing.assert_allclose(frames[..., :3, :3], pose.rotations @ rest, atol=1e-9)


def test_known_positions_in_blender_axes(tmp_path):
    motion = np.zeros((2, 6 + 3 * (len(NAMES) - 1)))
    motion[:, 1] = HIP_HEIGHT
    motion[1, :3] = [10.0, HIP_HEIGHT, 20.0]  # the root moves 0.1 m left and 0.2 m forward in the file (+Z)
    motion[1, 5] = 90.0  # root turned 90 degrees about file Y (the third root rotation channel)
    clip = clip_from_bvh(write(tmp_path, humanoid_bvh(motion)))
    np.testing.assert_allclose(clip.root_translation, [[0.0, 0.0, 0.95], [0.1, -0.2, 0.95]], atol=1e-12)
    hip = clip.skeleton.index("LeftUpLeg")
    np.testing.assert_allclose(clip.joints_world[0, hip], [0.1, 0.0, 0.9], atol=1e-12)
    # About file +Y by 90 degrees, file +X (the body's left) turns onto file -Z: Blender's +Y (backwards).
    np.testing.assert_allclose(clip.joints_world[1, hip], [0.1, -0.2 + 0.1, 0.9], atol=1e-12)


def test_rest_bones_follow_blenders_importer_rules(tmp_path):
    clip = clip_from_bvh(write(tmp_path, humanoid_bvh(np.zeros((1, 6 + 3 * (len(NAMES) - 1)))),))
    skeleton = clip.skeleton
    heads, tails = skeleton.rest_heads_world, skeleton.rest_tails_world
    frames = skeleton.rest_frames_world[:, :3, :3]
    np.testing.assert_allclose(frames @ np.swapaxes(frames, -1, -2), np.broadcast_to(np.eye(3), frames.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(frames), 1.0, atol=1e-12)
    np.testing.assert_allclose(heads[skeleton.index("LeftLeg")], [0.1, 0.0, -0.47], atol=1e-12)
    # An End Site is the tail; one child's head is the tail; several children average (the Hips).
    np.testing.assert_allclose(tails[skeleton.index("LeftToeBase")], [0.1, -0.18, -0.95], atol=1e-12)
    np.testing.assert_allclose(tails[skeleton.index("LeftLeg")], heads[skeleton.index("LeftFoot")], atol=1e-12)
    children = [skeleton.index(n) for n in ("LeftUpLeg", "RightUpLeg", "Spine")]
    np.testing.assert_allclose(tails[skeleton.index("LeftArm")], heads[skeleton.index("LeftForeArm")], atol=1e-12)
    # The Hips' children average to its own head: a zero-length bone gets 0.1 file units up (Blender's rule).
    np.testing.assert_allclose(heads[children].mean(axis=0), heads[0], atol=1e-12)
    np.testing.assert_allclose(tails[0], heads[0] + [0.0, 0.0, 0.001], atol=1e-12)
    np.testing.assert_allclose(skeleton.bone_lengths, np.linalg.norm(tails - heads, axis=-1), atol=1e-12)
    # Y runs from head to tail.
    direction = (tails - heads) / np.linalg.norm(tails - heads, axis=-1, keepdims=True)
    np.testing.assert_allclose(frames[:, :, 1], direction, atol=1e-12)
    np.testing.assert_allclose(clip.rotations[..., 0], 1.0, atol=1e-12)  # the rest frame's pose is the rest


def test_rest_bones_and_rotations_equal_blenders_bvh_import(tmp_path):
    """Blender's own importer (default axes) builds the same bones: heads, tails, rolls and pose rotations."""
    import bpy
    import addon_utils  # Blender's module, importable once bpy is

    path = write(tmp_path, humanoid_bvh(random_motion(frames=3, seed=1)))
    clip = clip_from_bvh(path)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("io_anim_bvh")
    bpy.ops.import_anim.bvh(filepath=str(path), global_scale=0.01, frame_start=1, use_fps_scale=False,
                            rotate_mode="QUATERNION")
    armature = bpy.context.object
    world = np.array(armature.matrix_world)
    for joint, name in enumerate(NAMES):
        bone = armature.data.bones[name]
        np.testing.assert_allclose(world @ np.array(bone.matrix_local), clip.skeleton.rest_frames_world[joint],
                                   atol=1e-5, err_msg=name)
    for frame in range(3):
        bpy.context.scene.frame_set(frame + 1)
        for joint, name in enumerate(NAMES):
            basis = np.array(armature.pose.bones[name].matrix_basis)[:3, :3]
            np.testing.assert_allclose(basis, quat_to_matrix(clip.rotations[frame, joint]), atol=1e-5,
                                       err_msg=f"{name} frame {frame}")
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_translating_joints_stay_in_joints_world_with_a_warning(tmp_path, caplog):
    """A non-root joint with position channels away from its OFFSET cannot be carried by rotations."""
    motion = random_motion(frames=3)
    column = 6 + 3 * (NAMES.index("Neck") - 1)
    motion = np.insert(motion, [column] * 3, [0.0, 55.0, 0.0], axis=1)  # the neck 10 cm longer than its OFFSET
    path = write(tmp_path, humanoid_bvh(motion, translated=("Neck",)))
    with caplog.at_level(logging.WARNING):
        clip = clip_from_bvh(path)
    np.testing.assert_allclose(clip.joints_world, world_pose(read_bvh(path)).positions, atol=1e-9)
    miss = np.linalg.norm(fk_positions(clip)[..., :3, 3] - clip.joints_world, axis=-1).max(axis=0)
    assert {NAMES[j] for j in np.flatnonzero(miss > 1e-4)} == {"Neck", "Head"}
    assert any("joints Neck, Head move away" in r.getMessage() for r in caplog.records)


def test_landmarks_by_name(tmp_path):
    path = write(tmp_path, humanoid_bvh(random_motion(frames=4)))
    clip = clip_from_bvh(path)
    pose = world_pose(read_bvh(path))
    expected = {"left_shoulder": "LeftArm", "right_elbow": "RightForeArm", "left_wrist": "LeftHand",
                "left_hip": "LeftUpLeg", "right_knee": "RightLeg", "left_ankle": "LeftFoot", "pelvis": "Hips",
                "neck": "Neck"}
    for landmark, joint in expected.items():
        np.testing.assert_allclose(clip.landmarks_world[:, clip.landmark_names.index(landmark)],
                                   pose.positions[:, NAMES.index(joint)], atol=1e-12, err_msg=landmark)
    # The toe landmark is the toe tip (End Site); heels and the face are not joints, so they are absent.
    np.testing.assert_allclose(clip.landmarks_world[:, clip.landmark_names.index("right_toe")],
                               pose.end_sites[:, NAMES.index("RightToeBase")], atol=1e-12)
    assert list(clip.landmark_names) == [n for n in LANDMARK_NAMES if n in clip.landmark_names]
    assert len(clip.landmark_names) == 16 and "left_heel" not in clip.landmark_names and "nose" not in \
        clip.landmark_names


def test_other_naming_conventions_give_the_same_landmarks(tmp_path):
    motion = random_motion(frames=3)
    asf = {"LeftUpLeg": "LeftHip", "LeftLeg": "LeftKnee", "LeftFoot": "LeftAnkle", "LeftToeBase": "LeftToe",
           "LeftArm": "LeftShoulder", "LeftForeArm": "LeftElbow", "LeftHand": "LeftWrist", "Neck": "lowerneck"}
    asf.update({k.replace("Left", "Right"): v.replace("Left", "Right") for k, v in asf.items()})
    mixamo = tuple(f"mixamorig:{n}" for n in NAMES)
    reference = clip_from_bvh(write(tmp_path, humanoid_bvh(motion), "a.bvh"))
    for names in (tuple(asf.get(n, n) for n in NAMES), mixamo):
        clip = clip_from_bvh(write(tmp_path, humanoid_bvh(motion, names), "b.bvh"))
        assert clip.landmark_names == reference.landmark_names
        np.testing.assert_allclose(clip.landmarks_world, reference.landmarks_world, atol=1e-12)


def test_contacts_follow_the_planted_foot(tmp_path):
    clip = clip_from_bvh(write(tmp_path, humanoid_bvh(gait_motion())))
    left = [CONTACT_NAMES.index("left_heel"), CONTACT_NAMES.index("left_toe")]
    right = [CONTACT_NAMES.index("right_heel"), CONTACT_NAMES.index("right_toe")]
    assert np.all(clip.contacts[:30, left] == 1.0)  # the left foot stands still for frames 0-29
    assert np.all(clip.contacts[35:55, left] == 0.0)  # and is up and moving in mid-swing
    assert np.all(clip.contacts[30:, right] == 1.0)
    assert np.all(clip.contacts[5:25, right] == 0.0)
    # The floor is 0.2 m up in this file and the ankles ride 8 cm above it (more than detect_contacts'
    # 6.5 cm): contacts were found above the estimated ground and standing heights.
    toe = clip.landmarks_world[:, clip.landmark_names.index("left_toe")]
    ankle = clip.landmarks_world[:, clip.landmark_names.index("left_ankle")]
    np.testing.assert_allclose(toe[:30, 2], 0.2, atol=1e-9)
    np.testing.assert_allclose(ankle[:30, 2], 0.28, atol=1e-9)


def test_save_and_load_round_trip(tmp_path):
    clip = clip_from_bvh(write(tmp_path, humanoid_bvh(gait_motion())))
    loaded = load_clip(save_clip(clip, tmp_path / "clip.npz"))
    assert loaded.fps == clip.fps and loaded.body_model == "none" and loaded.landmark_names == clip.landmark_names
    assert loaded.skeleton.joint_names == clip.skeleton.joint_names
    np.testing.assert_array_equal(loaded.skeleton.parents, clip.skeleton.parents)
    np.testing.assert_allclose(loaded.skeleton.rest_frames_world, clip.skeleton.rest_frames_world, atol=1e-12)
    np.testing.assert_allclose(loaded.skeleton.bone_lengths, clip.skeleton.bone_lengths, atol=1e-12)
    for name in ("rotations", "root_translation", "joints_world", "landmarks_world", "contacts"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(clip, name), atol=1e-6, err_msg=name)
    assert loaded.contacts.sum() == clip.contacts.sum() > 0


def test_unknown_names_give_no_landmarks_and_no_contacts_with_a_warning(tmp_path, caplog):
    names = tuple(f"bone{i}" for i in range(len(NAMES)))
    path = write(tmp_path, humanoid_bvh(gait_motion(), names))
    with caplog.at_level(logging.WARNING):
        clip = clip_from_bvh(path)
    assert clip.landmark_names == () and clip.landmarks_world.shape == (60, 0, 3)
    assert clip.contacts.shape == (60, 4) and not clip.contacts.any()
    assert any(str(path) in r.getMessage() and "left and right" in r.getMessage() for r in caplog.records)
    loaded = load_clip(save_clip(clip, tmp_path / "clip.npz"))  # a clip with no landmarks is a valid file
    assert loaded.landmark_names == () and loaded.landmarks_world.shape == (60, 0, 3)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("Frames: 2", "Frames: 0").split("Frame Time")[0] + "Frame Time: 0.03\n",
     "the motion has no frames"),
    (lambda t: t.replace("MOTION", "MOVES"), "no MOTION section"),
    (lambda t: t.replace("OFFSET 0 -42 0", "OFFSET 0 x 0", 1), "'x' is not a number"),
])
def test_bad_files_raise_one_clear_error(tmp_path, mutate, message):
    path = write(tmp_path, mutate(humanoid_bvh(random_motion(frames=2))))
    with pytest.raises(FileFormatError) as caught:
        clip_from_bvh(path)
    assert message in str(caught.value) and str(caught.value).startswith(str(path))


def test_missing_file_and_bad_scale(tmp_path):
    with pytest.raises(FileFormatError, match="file not found"):
        clip_from_bvh(tmp_path / "nope.bvh")
    path = write(tmp_path, humanoid_bvh(random_motion(frames=2)))
    with pytest.raises(FileFormatError, match="unit scale must be a positive"):
        clip_from_bvh(path, scale=0.0)
    assert clip_from_bvh(path, scale=0.02).joints_world[0, 0] == pytest.approx(
        2.0 * clip_from_bvh(path).joints_world[0, 0])


@needs_cmu
def test_cmu_clips_convert():
    for path in CMU_FILES:
        clip = clip_from_bvh(path)
        bvh = read_bvh(path)
        assert clip.fps == pytest.approx(bvh.fps) and clip.frame_count == bvh.frame_count, path.name
        np.testing.assert_allclose(clip.joints_world, world_pose(bvh).positions, atol=1e-6, err_msg=path.name)
        np.testing.assert_allclose(fk_positions(clip)[..., :3, 3], clip.joints_world, atol=1e-6, err_msg=path.name)
        # CMU's End Sites have zero offsets, so the top of the head is not in the files: the Head joint (top
        # of the neck, ~0.2 m below the crown) stands 1.33-1.35 m above the soles in these clips' rest poses.
        assert 1.25 < np.ptp(clip.skeleton.rest_heads_world[:, 2]) < 1.9, path.name
        assert len(clip.landmark_names) == 16, path.name
        feet = np.stack([clip.landmarks_world[:, clip.landmark_names.index(n)]
                         for n in ("left_ankle", "left_toe", "right_ankle", "right_toe")], axis=1)
        step = np.linalg.norm(np.diff(feet, axis=0), axis=-1)  # (T - 1, 4) metres per frame
        planted = (clip.contacts[1:] > 0.5) & (clip.contacts[:-1] > 0.5)
        assert planted.mean() > 0.1, path.name  # people stand on the floor for a good share of every clip
        assert step[planted].mean() < 0.01, path.name
        assert step[planted].mean() < 0.5 * step[~planted].mean(), path.name


def test_cli_converts_a_bvh_into_a_clip(tmp_path, capsys):
    from avatar_capture.cli import main
    from avatar_capture.core.clip import load_clip

    source = write(tmp_path, humanoid_bvh(gait_motion()))
    out = tmp_path / "walk.npz"
    assert main(["bvh", str(source), "-o", str(out)]) == 0
    clip = load_clip(out)
    direct = clip_from_bvh(source)
    np.testing.assert_allclose(clip.joints_world, direct.joints_world)
    np.testing.assert_array_equal(clip.contacts, direct.contacts)
    assert "left_ankle" in clip.landmark_names and clip.contacts.any()
    assert main(["bvh", str(source), "-o", str(tmp_path / "walk.fbx")]) == 2
    assert main(["bvh", str(tmp_path / "missing.bvh"), "-o", str(tmp_path / "x.npz")]) == 2
    assert not (tmp_path / "walk.fbx").exists() and not (tmp_path / "x.npz").exists()
    assert "avatarcap: error:" in capsys.readouterr().err


def test_contacts_are_found_again_from_the_mapped_feet(tmp_path):
    """An armature's action read back carries no contacts: contacts_from_mapping finds them from the
    ankle and toe joints, where the BVH reader found them."""
    from avatar_capture.core.retarget.auto_map import auto_map
    from avatar_capture.core.retarget.bvh_clip import contacts_from_mapping

    clip = clip_from_bvh(write(tmp_path, humanoid_bvh(gait_motion())))
    mapping = auto_map(clip.skeleton.joint_names, clip.skeleton.parents)[0]
    found = contacts_from_mapping(clip, mapping, "test armature") > 0.5
    stored = clip.contacts > 0.5
    heels = [0, 2]  # the ankle stands in for the heel in both; the toes here are joints, not end sites
    assert stored[:, heels].sum() > 5
    assert (found[:, heels] == stored[:, heels]).mean() > 0.9

"""BVH reading and posing: known answers on small files written here, the CMU clips in ../shared
(skipped when absent), Blender's own BVH importer as the reference, and clear errors on bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_capture.core.bvh import UNIT_METRES, local_rotations, read_bvh, unit_scale, world_pose
from avatar_capture.core.errors import FileFormatError

SHARED_BVH = Path(__file__).resolve().parents[2] / "shared" / "media" / "bvh"
CMU_FILES = sorted(SHARED_BVH.glob("*.bvh")) if SHARED_BVH.is_dir() else []
needs_cmu = pytest.mark.skipif(not CMU_FILES, reason=f"no CMU BVH files in {SHARED_BVH}")


def chain_bvh(frames: list[str], root_channels: str = "Xposition Yposition Zposition Zrotation Yrotation Xrotation",
              child_channels: str = "Zrotation Xrotation Yrotation", length: float = 10.0) -> str:
    """A root with one child `length` units up the file's Y axis, and an End Site as long again."""
    root_count, child_count = len(root_channels.split()), len(child_channels.split())
    return (
        "HIERARCHY\nROOT Root\n{\n  OFFSET 0 0 0\n"
        f"  CHANNELS {root_count} {root_channels}\n"
        f"  JOINT Child\n  {{\n    OFFSET 0 {length} 0\n    CHANNELS {child_count} {child_channels}\n"
        f"    End Site\n    {{\n      OFFSET 0 {length} 0\n    }}\n  }}\n}}\n"
        f"MOTION\nFrames: {len(frames)}\nFrame Time: 0.0333333\n" + "\n".join(frames) + "\n"
    )


def write(tmp_path: Path, text: str, name: str = "clip.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_two_joint_chain_known_positions_in_blender_axes(tmp_path):
    frames = [
        "0 0 0 0 0 0 0 0 0",
        "0 0 0 90 0 0 0 0 0",  # root turned 90 degrees about file Z: the chain points along file -X
        "0 0 0 0 0 90 0 0 0",  # about file X: the chain points along file +Z, i.e. Blender's forward (-Y)
        "100 200 300 0 0 0 0 0 0",  # root moved by (1, 2, 3) m at 0.01 m per unit
    ]
    bvh = read_bvh(write(tmp_path, chain_bvh(frames)))
    assert bvh.joint_names == ("Root", "Child") and list(bvh.parents) == [-1, 0]
    assert bvh.frame_count == 4 and bvh.fps == pytest.approx(30.0, rel=1e-5)
    pose = world_pose(bvh, scale=0.01)
    child = pose.positions[:, 1]
    np.testing.assert_allclose(child[0], [0.0, 0.0, 0.1], atol=1e-12)  # file up (Y) is Blender up (Z)
    np.testing.assert_allclose(child[1], [-0.1, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(child[2], [0.0, -0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(pose.positions[3, 0], [1.0, -3.0, 2.0], atol=1e-12)  # (x, y, z) -> (x, -z, y)
    np.testing.assert_allclose(child[3], [1.0, -3.0, 2.1], atol=1e-12)
    np.testing.assert_allclose(pose.end_sites[:, 1], 2 * (child - pose.positions[:, 0]) + pose.positions[:, 0],
                               atol=1e-12)
    assert np.isnan(pose.end_sites[:, 0]).all()  # the root has no End Site


def test_world_rotations_turn_the_rest_offsets_onto_the_posed_bones(tmp_path):
    frames = ["0 0 0 30 -20 45 10 60 -35", "0 0 0 -70 15 5 80 -10 20"]
    bvh = read_bvh(write(tmp_path, chain_bvh(frames)))
    pose = world_pose(bvh, scale=1.0)
    rotations = pose.rotations
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, -1, -2), np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    rest_bone = np.array([0.0, 0.0, 10.0])  # the child's file offset (0, 10, 0) in Blender axes
    np.testing.assert_allclose(np.einsum("fij,j->fi", rotations[:, 0], rest_bone),
                               pose.positions[:, 1] - pose.positions[:, 0], atol=1e-9)
    np.testing.assert_allclose(np.einsum("fij,j->fi", rotations[:, 1], rest_bone),
                               pose.end_sites[:, 1] - pose.positions[:, 1], atol=1e-9)


@pytest.mark.parametrize("order, expected", [("Xrotation Yrotation", [0.0, -10.0, 0.0]),
                                             ("Yrotation Xrotation", [10.0, 0.0, 0.0])])
def test_rotation_channels_compose_in_the_order_listed(tmp_path, order, expected):
    # Rx(90) @ Ry(90) leaves the +Y bone on file +Z; Ry(90) @ Rx(90) takes it on to file +X.
    bvh = read_bvh(write(tmp_path, chain_bvh(["90 90 0 0"], root_channels=order, child_channels="Zrotation Xrotation")))
    np.testing.assert_allclose(world_pose(bvh, scale=1.0).positions[0, 1], expected, atol=1e-9)


def test_position_channels_replace_the_offset(tmp_path):
    text = chain_bvh(["0 0 0 5 0 0"], root_channels="Zrotation Xrotation Yrotation",
                     child_channels="Xposition Yposition Zposition")
    pose = world_pose(read_bvh(write(tmp_path, text)), scale=1.0)
    np.testing.assert_allclose(pose.positions[0, 1], [5.0, 0.0, 0.0], atol=1e-12)  # not the OFFSET (0, 10, 0)


def test_other_file_axes(tmp_path):
    # A Z-up file: its axes are Blender's already. The chain points up file Y, i.e. Blender's +Y here,
    # and the unit is guessed from the extent along file Z (zero here: 2 x 85 along Y does not count).
    bvh = read_bvh(write(tmp_path, chain_bvh(["0 0 0 0 0 0 0 0 0"], length=85.0)))
    pose = world_pose(bvh, scale=0.01, axes=np.eye(3))
    np.testing.assert_allclose(pose.positions[0, 1], [0.0, 0.85, 0.0], atol=1e-12)
    with pytest.raises(FileFormatError, match="no height"):
        unit_scale(bvh, axes=np.eye(3))


def test_local_rotations_are_the_channel_products(tmp_path):
    bvh = read_bvh(write(tmp_path, chain_bvh(["0 0 0 90 0 0 0 0 0"])))
    local = local_rotations(bvh)
    np.testing.assert_allclose(local[0, 0], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(local[0, 1], np.eye(3), atol=1e-12)


@pytest.mark.parametrize("length, unit", [(85.0, "centimetre"), (0.85, "metre"), (15.0, "cmu"), (33.0, "inch"),
                                          (850.0, "millimetre")])
def test_unit_guess_from_the_rest_height(tmp_path, length, unit):
    # The rest skeleton is 2 * length tall (joint plus End Site).
    bvh = read_bvh(write(tmp_path, chain_bvh(["0 0 0 0 0 0 0 0 0"], length=length)))
    assert unit_scale(bvh) == UNIT_METRES[unit]


@pytest.mark.parametrize("mutate, message, field", [
    (lambda t: t.rsplit("\n", 2)[0] + "\n", "truncated motion: 1 of 2 frames", "MOTION"),
    (lambda t: t.replace("0 0 0 0 0 0 0 0 1\n", "0 0 0 0 0 0 0 0\n"), "frame 1 has 8 values", "MOTION"),
    (lambda t: t.replace("0 0 0 0 0 0 0 0 1\n", "0 0 0 0 0 0 0 0 1.2.3\n"), "'1.2.3'", "MOTION"),
    (lambda t: t.replace("0 0 0 0 0 0 0 0 1\n", "0 0 0 0 0 0 0 0 nan\n"), "'nan'", "MOTION"),
    (lambda t: t.replace("Frames: 2", "Frames: 3"), "truncated motion: 2 of 3 frames", "MOTION"),
    (lambda t: t.replace("Frames: 2", "Frames: 1"), "2 frames of motion, but the header says 1", "Frames"),
    (lambda t: t.replace("Frames: 2", "Frames: two"), "'two' is not a whole number", "Frames"),
    (lambda t: t.replace("Frame Time: 0.0333333", "Frame Time: 0"), "not a positive number", "Frame Time"),
    (lambda t: t.replace("CHANNELS 3", "CHANNELS 2"), "'Child' lists more channels than its count 2", "CHANNELS"),
    (lambda t: t.replace("CHANNELS 3", "CHANNELS 4"), "unknown channel 'End'", "CHANNELS"),
    (lambda t: t.replace("CHANNELS 3 Zrotation", "CHANNELS 3 Wrotation"), "unknown channel 'Wrotation'", "CHANNELS"),
    (lambda t: t.replace("OFFSET 0 10.0 0", "OFFSET 0 ten 0", 1), "'ten' is not a number", "OFFSET"),
    (lambda t: t.replace("MOTION", "MOTIONS"), "no MOTION section", "MOTION"),
    (lambda t: t.replace("HIERARCHY", "HIERARCH"), "expected 'HIERARCHY'", "HIERARCHY"),
    (lambda t: t.split("MOTION")[0].rsplit("}", 1)[0] + "MOTION" + t.split("MOTION")[1],
     "the hierarchy ends early", "HIERARCHY"),
    (lambda t: t.replace("JOINT Child", "JOINT Root"), "joint 'Root' appears twice", "JOINT"),
])
def test_bad_files_raise_one_clear_error(tmp_path, mutate, message, field):
    text = mutate(chain_bvh(["0 0 0 0 0 0 0 0 0", "0 0 0 0 0 0 0 0 1"]))
    path = write(tmp_path, text)
    with pytest.raises(FileFormatError) as caught:
        read_bvh(path)
    assert message in str(caught.value) and caught.value.field == field
    assert str(caught.value).startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="file not found"):
        read_bvh(tmp_path / "nope.bvh")


@needs_cmu
def test_cmu_clips_read_as_metre_sized_people_on_the_ground():
    for path in CMU_FILES:
        bvh = read_bvh(path)
        assert len(bvh.joint_names) == 31 and bvh.fps == pytest.approx(120.0, rel=1e-3), path.name
        assert bvh.motion.shape == (bvh.frame_count, 6 + 3 * 30)
        assert unit_scale(bvh) == UNIT_METRES["cmu"], path.name
        pose = world_pose(bvh)
        feet = pose.positions[:, [bvh.joint_names.index(n) for n in bvh.joint_names if "Toe" in n]]
        assert -0.1 < feet[..., 2].min() < 0.1, path.name  # Z is up and the floor is near 0
        head = pose.positions[:, bvh.joint_names.index("Head")]
        assert 1.3 < np.median(head[:, 2]) < 1.8, path.name
        # Rigid bones: every joint stays at its offset's length (scaled) from its parent.
        for joint in range(1, len(bvh.joint_names)):
            length = np.linalg.norm(pose.positions[:, joint] - pose.positions[:, bvh.parents[joint]], axis=-1)
            np.testing.assert_allclose(length, np.linalg.norm(bvh.offsets[joint]) * UNIT_METRES["cmu"], atol=1e-9)


@needs_cmu
def test_cmu_clip_matches_blenders_bvh_importer():
    """Blender's importer (default axes: file -Z forward, Y up) is the reference for positions and rotations."""
    import bpy
    import addon_utils  # Blender's module, importable once bpy is

    path = next(p for p in CMU_FILES if "02_01" in p.name)
    bvh = read_bvh(path)
    pose = world_pose(bvh)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("io_anim_bvh")
    bpy.ops.import_anim.bvh(filepath=str(path), global_scale=unit_scale(bvh), frame_start=1, use_fps_scale=False,
                            rotate_mode="NATIVE")
    armature = bpy.context.object
    for frame in (0, 57, bvh.frame_count - 1):
        bpy.context.scene.frame_set(frame + 1)
        for joint, name in enumerate(bvh.joint_names):
            bone = armature.pose.bones[name]
            np.testing.assert_allclose(np.array(armature.matrix_world @ bone.head), pose.positions[frame, joint],
                                       atol=1e-5)
            # The importer's rest bones are aligned with the file axes' images, so matrix @ rest^-1 is the
            # joint's world rotation.
            turn = np.array(bone.matrix)[:3, :3] @ np.array(bone.bone.matrix_local)[:3, :3].T
            np.testing.assert_allclose(turn, pose.rotations[frame, joint], atol=1e-5)
    bpy.ops.wm.read_factory_settings(use_empty=True)

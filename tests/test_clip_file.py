"""The motion clip file: round trip, validation errors that name the field, atomic writes."""
import os

import numpy as np
import pytest

from avatar_capture.core import clip as clipmod
from avatar_capture.core import kinematics, landmarks, rotations
from avatar_capture.core.errors import FileFormatError
from avatar_capture.core.skeleton import Skeleton


def small_clip(frames: int = 5, with_camera: bool = True) -> clipmod.MotionClip:
    rng = np.random.default_rng(0)
    parents = np.array([-1, 0, 1, 0])
    heads = np.array([[0, 0, 1.0], [0, 0, 1.3], [0, 0, 1.6], [0.1, 0, 0.9]])
    tails = heads + [[0, 0, 0.3], [0, 0, 0.3], [0, 0, 0.2], [0, 0, -0.4]]
    rest = kinematics.frames_from_heads_tails(heads, tails, np.tile([0, -1.0, 0], (4, 1)))
    skeleton = Skeleton(("hips", "spine", "head", "thigh.L"), parents, rest, np.linalg.norm(tails - heads, axis=1))
    q = rotations.quat_normalize(np.tile([1.0, 0, 0, 0], (frames, 4, 1)) + 0.1 * rng.normal(size=(frames, 4, 4)))
    root = np.c_[np.zeros(frames), -np.linspace(0, 1, frames), np.ones(frames)]
    posed = kinematics.forward_kinematics(rest, parents, q, root)
    names = landmarks.LANDMARK_NAMES
    camera = None
    if with_camera:
        K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        w2c = np.tile(np.eye(4), (frames, 1, 1))
        camera = clipmod.Camera(K, w2c, (640, 480))
    return clipmod.MotionClip(
        fps=30.0, skeleton=skeleton, rotations=q, root_translation=root,
        joints_world=posed[:, :, :3, 3], landmark_names=names,
        landmarks_world=rng.normal(size=(frames, len(names), 3)),
        contacts=rng.random((frames, 4)), body_model="none", body_shape_names=(), body_shape=np.zeros(0),
        camera=camera,
    )


def test_round_trip_keeps_every_field(tmp_path):
    original = small_clip()
    path = clipmod.save_clip(original, tmp_path / "a.npz")
    loaded = clipmod.load_clip(path)
    assert loaded.skeleton.joint_names == original.skeleton.joint_names
    assert np.array_equal(loaded.skeleton.parents, original.skeleton.parents)
    assert np.allclose(loaded.rotations, original.rotations, atol=1e-6)
    assert np.allclose(loaded.joints_world, original.joints_world, atol=1e-6)
    assert np.allclose(loaded.root_translation, original.root_translation)
    assert loaded.landmark_names == landmarks.LANDMARK_NAMES
    assert loaded.camera.image_size == (640, 480)
    assert np.allclose(loaded.camera.K, original.camera.K)
    assert loaded.fps == 30.0 and loaded.body_model == "none"


def test_unknown_fields_survive_a_round_trip(tmp_path):
    arrays = small_clip().to_arrays()
    arrays["hand_poses"] = np.ones((5, 33, 3))
    np.savez(tmp_path / "newer.npz", **arrays)
    loaded = clipmod.load_clip(tmp_path / "newer.npz")
    clipmod.save_clip(loaded, tmp_path / "again.npz")
    assert np.array_equal(clipmod.load_clip(tmp_path / "again.npz").extras["hand_poses"], np.ones((5, 33, 3)))


def capture_fields(frames: int = 5) -> dict[str, np.ndarray]:
    keypoints = np.full((frames, 33, 2), 100.0)
    keypoints[2] = np.nan  # a lost frame
    return dict(
        keypoints_2d=keypoints, keypoints_2d_visibility=np.ones((frames, 33)),
        keypoints_2d_names=np.array([f"k{i}" for i in range(33)]),
        frame_confidence=np.linspace(0, 1, frames), frame_lost=np.arange(frames) == 2,
        source_video=np.array("/videos/walk.mp4"), source_frames=np.arange(frames) + 10,
    )


def test_capture_fields_round_trip_with_nan_for_lost_frames(tmp_path):
    arrays = small_clip().to_arrays()
    arrays.update(capture_fields())
    np.savez(tmp_path / "capture.npz", **arrays)
    clipmod.save_clip(clipmod.load_clip(tmp_path / "capture.npz"), tmp_path / "again.npz")
    extras = clipmod.load_clip(tmp_path / "again.npz").extras
    assert np.isnan(extras["keypoints_2d"][2]).all() and np.all(extras["keypoints_2d"][3] == 100.0)
    assert extras["frame_lost"].tolist() == [False, False, True, False, False]
    assert int(extras["source_frames"][0]) == 10 and str(extras["source_video"]) == "/videos/walk.mp4"


@pytest.mark.parametrize("name, value, words", [
    ("keypoints_2d", np.ones((4, 33, 2)), "does not match"),
    ("keypoints_2d", np.full((5, 33, 2), np.inf), "infinite"),
    ("frame_confidence", np.full(5, np.nan), "NaN"),
    ("frame_lost", np.zeros(5), "true/false"),
])
def test_bad_capture_fields_are_named(tmp_path, name, value, words):
    arrays = small_clip().to_arrays()
    arrays.update(capture_fields())
    arrays[name] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(FileFormatError, match=words) as caught:
        clipmod.load_clip(tmp_path / "bad.npz")
    assert caught.value.field == name


def test_version_1_files_still_load(tmp_path):
    arrays = small_clip().to_arrays()
    arrays["version"] = np.array(1)
    np.savez(tmp_path / "v1.npz", **arrays)
    assert clipmod.load_clip(tmp_path / "v1.npz").frame_count == 5


def write_with(tmp_path, **changes):
    arrays = small_clip().to_arrays()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "changes, field, words",
    [
        (dict(version=np.array(99)), "version", "not supported"),
        (dict(format=np.array("something/else")), "format", "not an"),
        (dict(rotations=None), "rotations", "missing"),
        (dict(rotations=np.zeros((5, 3, 4))), "rotations", "shape"),
        (dict(joints_world=np.full((5, 4, 3), np.nan)), "joints_world", "NaN"),
        (dict(rotations=np.full((5, 4, 4), 0.3)), "rotations", "unit quaternions"),
        (dict(contacts=np.full((5, 4), 2.0)), "contacts", "0..1"),
        (dict(fps=np.array(0.0)), "fps", "positive"),
        (dict(parents=np.array([0, 0, 1, 0])), "parents", "root"),
        (dict(camera_K=None), "camera_K", "together"),
        (dict(joint_names=np.arange(4)), "joint_names", "text"),
    ],
)
def test_invalid_fields_are_named(tmp_path, changes, field, words):
    path = write_with(tmp_path, **changes)
    with pytest.raises(FileFormatError) as err:
        clipmod.load_clip(path)
    assert err.value.field == field
    assert words in str(err.value) and str(path) in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileFormatError, match="file not found"):
        clipmod.load_clip(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(FileFormatError, match="not a readable"):
        clipmod.load_clip(junk)
    good = clipmod.save_clip(small_clip(), tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(FileFormatError):
        clipmod.load_clip(truncated)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = clipmod.save_clip(small_clip(), tmp_path / "keep.npz")
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError):
        clipmod.save_clip(small_clip(frames=7), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npz"]


def test_unwritable_folder_is_reported(tmp_path):
    # /proc refuses new files even for root, which CI runs as.
    with pytest.raises(FileFormatError, match="cannot write here|not writable"):
        clipmod.save_clip(small_clip(), "/proc/avatar_capture_test.npz")


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        clipmod.save_clip(small_clip(), tmp_path / "no" / "x.npz")

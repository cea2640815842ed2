"""The Anny body: rig structure, exact agreement with Anny's own forward(), the cache, the rig cache and jobs."""
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_capture.core import rest_pose
from avatar_capture.core.body import anny_body, jobs, models
from avatar_capture.core.clip import clip_from_pose, save_clip
from avatar_capture.core.errors import AvatarCaptureError
from avatar_capture.core.landmarks import COCO17, LANDMARK_NAMES
from avatar_capture.core.rig import load_rig
from avatar_capture.core.rotations import axis_angle_to_quat, quat_to_matrix
from avatar_capture.core.settings import ComputeSettings


def identity(frames, joints):
    q = np.zeros((frames, joints, 4))
    q[..., 0] = 1.0
    return q


@pytest.fixture
def warm_settings(compute_settings, anny_rig, tmp_path) -> ComputeSettings:
    """Settings with a fresh cache folder holding (hard links to) the session's warm Anny data."""
    source = compute_settings.anny_cache_path
    settings = ComputeSettings(cache_dir=str(tmp_path / "cache"))
    for path in source.glob("v*/build_compact_model_data_*.safetensors"):
        target = settings.anny_cache_path / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    return settings


def test_default_rig_structure(anny_rig):
    s = anny_rig.skeleton
    assert anny_rig.body_model == "anny" and anny_rig.shape_names == anny_body.ANNY_SHAPE_NAMES
    assert np.allclose(anny_rig.shape_values, 0.5)
    assert s.joint_count == 104 and s.joint_names[0] == "root" and s.parents[0] == -1
    assert np.all(s.parents[1:] < np.arange(1, 104))  # parents before children
    assert anny_rig.vertices_rest.shape == (13718, 3) and anny_rig.faces.shape == (27420, 3)
    assert anny_rig.faces.min() >= 0 and anny_rig.faces.max() < 13718
    assert anny_rig.skin_indices.shape == (13718, 9)
    assert np.allclose(anny_rig.skin_weights.sum(axis=1), 1.0)
    assert anny_rig.landmark_names == LANDMARK_NAMES
    # Grounded, Z up, facing -Y, about 1.6 m tall.
    assert anny_rig.vertices_rest[:, 2].min() == pytest.approx(0.0, abs=1e-12)
    assert 1.4 < anny_rig.vertices_rest[:, 2].max() < 1.9
    heads = dict(zip(s.joint_names, s.rest_heads_world))
    assert heads["head"][2] > heads["root"][2] > heads["lowerleg01.L"][2]
    assert heads["upperarm01.L"][0] > 0 > heads["upperarm01.R"][0]
    assert s.rest_tails_world[s.index("foot.L"), 1] < heads["foot.L"][1]  # feet point forward (-Y)
    # Proper, orthonormal frames; the root points up with Z forward; every bone visible.
    rot = s.rest_frames_world[:, :3, :3]
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rot), 1.0)
    assert np.allclose(rot[0], [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    assert np.all(s.bone_lengths >= 0.01)
    # Chain bones end at their child: the upper leg's tail is the knee joint.
    assert np.allclose(s.rest_tails_world[s.index("upperleg02.L")], heads["lowerleg01.L"], atol=2e-3)


def test_matches_anny_forward(compute_settings):
    """Our FK + LBS reproduce Anny's own vertices, for its rest pose and for random poses of another shape."""
    import anny

    shape = {"gender": 0.1, "age": 0.8, "weight": 0.7, "height": 0.9}
    rig = anny_body.build_anny_rig(compute_settings, shape)
    model = anny_body.load_anny_model(compute_settings)
    frames_count, joints = 3, rig.skeleton.joint_count
    phenotypes = {name: torch.full((frames_count,), float(v), dtype=torch.float64)
                  for name, v in zip(anny_body.ANNY_SHAPE_NAMES, rig.shape_values)}
    with torch.no_grad():
        rest = model(phenotype_kwargs={k: v[:1] for k, v in phenotypes.items()})
    anny_rest = rest["rest_bone_poses"][0].numpy()
    shift = rig.skeleton.rest_heads_world[0] - anny_rest[0, :3, 3]
    assert np.allclose(shift[:2], 0.0) and shift[2] > 0.5  # only lifted onto the ground
    assert np.abs(rest["rest_vertices"][0].numpy() + shift - rig.vertices_rest).max() < 1e-9

    # Anny's rest pose, given as world poses, is our identity pose.
    with torch.no_grad():
        out = model(pose_parameters=rest["rest_bone_poses"], pose_parameterization="world",
                    phenotype_kwargs={k: v[:1] for k, v in phenotypes.items()})
    rotations, root = anny_body.rotations_from_anny_bone_poses(rig, anny_rest, out["bone_poses"].numpy())
    assert np.allclose(np.abs(rotations[..., 0]), 1.0, atol=1e-9)
    assert np.allclose(root[0], rig.skeleton.rest_heads_world[0])

    # Random local rotations of every bone plus a root move, in Anny's default parameterization.
    rng = np.random.default_rng(7)
    deltas = np.tile(np.eye(4), (frames_count, joints, 1, 1))
    deltas[:, :, :3, :3] = quat_to_matrix(axis_angle_to_quat(rng.normal(scale=0.4, size=(frames_count, joints, 3))))
    deltas[:, 0, :3, 3] = rng.normal(scale=0.5, size=(frames_count, 3))
    with torch.no_grad():
        out = model(pose_parameters=torch.from_numpy(deltas), phenotype_kwargs=phenotypes)
        keypoints = anny.KeypointsRegressor.coco(model)(out).numpy() + shift
    rotations, root = anny_body.rotations_from_anny_bone_poses(rig, anny_rest, out["bone_poses"].numpy())
    frames = rig.pose(rotations, root)
    vertices = rig.skin(frames)
    assert np.abs(vertices - (out["vertices"].numpy() + shift)).max() < 1e-5
    assert np.abs(frames[:, :, :3, 3] - (out["bone_poses"][:, :, :3, 3].numpy() + shift)).max() < 1e-9

    landmarks = dict(zip(rig.landmark_names, np.moveaxis(rig.landmarks(frames), 1, 0)))
    labels = anny.KeypointsRegressor.coco(model).labels
    # Anny's regressor rows sum to 1 within ~1e-8, hence the micrometre tolerance after the ground lift.
    for name in COCO17 + ("left_heel", "right_heel"):
        assert np.abs(landmarks[name] - keypoints[:, labels.index(name)]).max() < 1e-6, name
    assert np.abs(landmarks["left_toe"] - keypoints[:, labels.index("left_big_toe")]).max() < 1e-6
    assert np.allclose(landmarks["pelvis"], 0.5 * (landmarks["left_hip"] + landmarks["right_hip"]))
    assert np.allclose(landmarks["neck"], 0.5 * (landmarks["left_shoulder"] + landmarks["right_shoulder"]))


def test_shape_is_checked(compute_settings):
    with pytest.raises(AvatarCaptureError, match="no shape parameter 'size'"):
        anny_body.build_anny_rig(compute_settings, {"size": 0.5})
    with pytest.raises(AvatarCaptureError, match="'height' must lie in 0.0..1.0"):
        anny_body.build_anny_rig(compute_settings, {"height": 1.5})
    assert models.default_shape("anny") == dict.fromkeys(anny_body.ANNY_SHAPE_NAMES, 0.5)


def test_warm_start_prunes_the_cache(warm_settings):
    """A warm start keeps only the compact data: intermediates and stale staging folders go."""
    cache = warm_settings.anny_cache_path
    compact = sorted(cache.glob("v*/build_compact_model_data_*.safetensors"))
    assert compact
    intermediate = compact[0].with_name("load_data_0123.safetensors")
    intermediate.write_bytes(b"\0" * 1024)
    stale = cache / ".staging-999999999-abc"
    (stale / "v14").mkdir(parents=True)
    reports = []
    info = anny_body.ensure_anny_cache(warm_settings, lambda *event: reports.append(event))
    assert info["built"] is False
    assert sorted(cache.glob("v*/*.safetensors")) == compact
    assert not stale.exists() and not list(cache.glob(".staging-*"))
    assert reports[0][:2] == ("Loading Anny", 0.0) and reports[-1][:2] == ("Loading Anny", 1.0)
    assert anny_body.anny_cache_ready(warm_settings)


def test_interrupted_build_leaves_no_partial_cache(tmp_path, monkeypatch):
    """A build stopped half way (the worker's cancel raises in the main thread) leaves an empty cache."""
    import anny

    class Cancelled(BaseException):
        pass

    def interrupted_build(*args, **kwargs):
        staging = anny.paths.get_anny_cache_path()
        (staging / "v14").mkdir(parents=True, exist_ok=True)
        (staging / "v14" / "build_compact_model_data_half.safetensors").write_bytes(b"partial")
        raise Cancelled()

    monkeypatch.setattr(anny, "Anny", interrupted_build)
    settings = ComputeSettings(cache_dir=str(tmp_path))
    with pytest.raises(Cancelled):
        anny_body.ensure_anny_cache(settings)
    assert list(settings.anny_cache_path.iterdir()) == []
    assert not anny_body.anny_cache_ready(settings)


def test_rig_cache_and_rig_for_clip(warm_settings, anny_rig):
    rig, path = models.cached_rig(warm_settings)
    assert path.parent == warm_settings.rig_cache_path and path.name.startswith("anny-")
    assert np.array_equal(rig.vertices_rest, anny_rig.vertices_rest)
    assert models.rig_cache_file(warm_settings, "anny", {"height": 0.5}) == path  # defaults are explicit
    assert models.rig_cache_file(warm_settings, "anny", {"height": 0.6}) != path
    assert list(warm_settings.rig_cache_path.iterdir()) == [path]  # no temporary files left

    clip = clip_from_pose(anny_rig, identity(2, 104), np.repeat(anny_rig.skeleton.rest_heads_world[:1], 2, 0), 30)
    same = models.rig_for_clip(clip, warm_settings)
    assert np.array_equal(same.landmark_bone_points, anny_rig.landmark_bone_points)

    # A clip moved onto a T-pose rest gets the rig bound in that rest, cached beside the original.
    t_clip = rest_pose.rebase_clip(clip, rest_pose.rest_frames_for(clip.skeleton, "anny", "T"))
    t_rig, t_path = models.rig_file_for_clip(t_clip, warm_settings)
    assert np.array_equal(t_rig.skeleton.rest_frames_world, t_clip.skeleton.rest_frames_world)
    assert t_path.is_file() and t_path.name.startswith(path.stem + "-rest-")
    assert np.allclose(load_rig(t_path).vertices_rest, t_rig.vertices_rest)
    # A clip whose skeleton is another shape's does not get this shape's body.
    tall = anny_body.build_anny_rig(warm_settings, {"height": 1.0})
    tall_clip = dataclasses.replace(clip_from_pose(tall, identity(1, 104), tall.skeleton.rest_heads_world[:1], 30),
                                    body_shape=clip.body_shape)
    with pytest.raises(AvatarCaptureError, match="does not fit the anny body"):
        models.rig_for_clip(tall_clip, warm_settings)

    with pytest.raises(AvatarCaptureError, match="skeleton only"):
        models.rig_for_clip(dataclasses.replace(clip, body_model="none"), warm_settings)
    unknown_shape = dataclasses.replace(clip, body_shape_names=("size",), body_shape=np.array([1.0]))
    with pytest.raises(AvatarCaptureError, match="no shape parameter 'size'"):
        models.rig_for_clip(unknown_shape, warm_settings)


def test_jobs_build_body_and_rig_for_clip(warm_settings, anny_rig, tmp_path):
    reports = []
    result = jobs.build_body({}, warm_settings, lambda *event: reports.append(event))
    assert result["body_model"] == "anny" and result["anny_cache_built"] is False
    assert result["vertices"] == 13718 and result["joints"] == 104 and result["seconds"] > 0
    rig = load_rig(result["rig_path"])
    assert np.allclose(rig.vertices_rest, anny_rig.vertices_rest)
    fractions = [event[1] for event in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    clip_path = tmp_path / "clip.npz"
    save_clip(clip_from_pose(anny_rig, identity(3, 104), np.repeat(anny_rig.skeleton.rest_heads_world[:1], 3, 0),
                             24), clip_path)
    answer = jobs.rig_for_clip_job({"clip_path": str(clip_path)}, warm_settings, lambda *event: None)
    assert answer == {"rig_path": result["rig_path"]}
    with pytest.raises(AvatarCaptureError, match="file not found"):
        jobs.rig_for_clip_job({"clip_path": str(tmp_path / "missing.npz")}, warm_settings, lambda *e: None)
    assert sorted(p.name for p in warm_settings.rig_cache_path.iterdir()) == [Path(result["rig_path"]).name]



@pytest.mark.skipif(os.name != "posix", reason="sends SIGTERM like the runner does on POSIX")
def test_cancelled_cold_build_in_the_worker_leaves_nothing(tmp_path):
    """SIGTERM (the UI's Cancel) during a real cold build: the worker exits and no cache file remains."""
    import json
    import signal
    import subprocess
    import sys
    import time

    settings = ComputeSettings(cache_dir=str(tmp_path / "cache"))
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"kind": "body.build", "params": {}, "settings": settings.to_dict()}))
    process = subprocess.Popen([sys.executable, "-m", "avatar_capture.core.jobs.worker", str(job)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(settings.anny_cache_path.glob(".staging-*/v*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(settings.anny_cache_path.glob(".staging-*")), "the build never started"
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        process.kill()
    assert "Building Anny's body data" in process.stdout.read()
    assert list(settings.anny_cache_path.iterdir()) == []

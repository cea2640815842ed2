"""The installed ``avatarcap`` command, run as a subprocess like a user or a farm script would.

Checks exit codes, that failures print one ``avatarcap: error:`` line naming
the problem and write no output file, and that successful commands write
files Blender reads back. The demo's clip doubles as the valid clip to import.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import bpy
import cv2
import numpy as np
import pytest

from avatar_capture import cli
from avatar_capture.core.clip import load_clip

AVATARCAP = Path(sys.executable).with_name("avatarcap")


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    assert AVATARCAP.is_file(), f"{AVATARCAP} is missing: install the package (pip install -e .)"
    return subprocess.run([str(AVATARCAP), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str, code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("avatarcap: error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]  # the error is the last word
    for word in words:
        assert word in errors[0]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    started = time.perf_counter()
    result = run("demo", "--out", str(out))
    print(f"\navatarcap demo: {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    return out


def test_help_lists_the_commands_without_loading_heavy_modules():
    result = run("--help")
    assert result.returncode == 0
    for command in ("body", "capture", "import", "demo", "--body-model", "--cache-dir"):
        assert command in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom avatar_capture import cli\ncli.build_parser()\n"
         "print(sorted(m for m in ('bpy', 'torch', 'anny') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"  # so `avatarcap --help` stays quick
    for sub in (["body", "build"], ["capture"], ["import"], ["demo"]):
        result = run(*sub, "--help")
        assert result.returncode == 0 and "usage: avatarcap" in result.stdout


def test_demo_captures_the_demo_video_into_every_output(demo_dir):
    assert sorted(p.name for p in demo_dir.iterdir()) == [
        "demo.blend", "demo.fbx", "demo.glb", "demo.npz", "demo_overlay.mp4"]
    clip = load_clip(demo_dir / "demo.npz")
    video = cv2.VideoCapture(str(cli.DEMO_VIDEO))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    assert clip.body_model == "anny" and clip.frame_count == frames
    assert str(clip.extras["source_video"]) == str(cli.DEMO_VIDEO)
    assert np.linalg.norm(np.ptp(clip.root_translation[:, :2], axis=0)) > 1.0  # it walks
    overlay = cv2.VideoCapture(str(demo_dir / "demo_overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    assert overlay.get(cv2.CAP_PROP_FRAME_WIDTH) == video.get(cv2.CAP_PROP_FRAME_WIDTH)

    bpy.ops.wm.open_mainfile(filepath=str(demo_dir / "demo.blend"))
    try:
        camera = bpy.context.scene.camera
        (background,) = camera.data.background_images
        assert Path(background.clip.filepath) == cli.DEMO_VIDEO
        assert any(marker.name.endswith("foot down") for marker in bpy.context.scene.timeline_markers)
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_import_writes_all_four_outputs(tmp_path, demo_dir):
    outputs = {kind: tmp_path / f"walk.{kind}" for kind in ("blend", "fbx", "glb", "bvh")}
    started = time.perf_counter()
    result = run("import", str(demo_dir / "demo.npz"), *[arg for kind, path in outputs.items()
                                                           for arg in (f"--{kind}", str(path))])
    print(f"\navatarcap import (4 outputs): {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in outputs.values())
    assert all(path.stat().st_size > 0 for path in outputs.values())

    clip = load_clip(demo_dir / "demo.npz")
    bpy.ops.wm.open_mainfile(filepath=str(outputs["blend"]))
    try:
        (armature,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
        assert armature.name == "demo"
        assert [b.name for b in armature.data.bones] == list(clip.skeleton.joint_names)
        action = armature.animation_data.action
        assert tuple(action.frame_range) == (1.0, float(clip.frame_count))
        assert [obj.type for obj in armature.children] == ["MESH"]
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_import_with_a_t_pose_rest(tmp_path, demo_dir):
    result = run("import", str(demo_dir / "demo.npz"), "--fbx", str(tmp_path / "t.fbx"), "--rest-pose", "t-pose")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.fbx").stat().st_size > 0


def test_missing_clip(tmp_path):
    clip = tmp_path / "nothere.npz"
    result = run("import", str(clip), "--fbx", str(tmp_path / "x.fbx"))
    assert_one_line_error(result, str(clip), "not found")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_clip(tmp_path):
    clip = tmp_path / "noise.npz"
    clip.write_bytes(np.random.default_rng(0).bytes(4096))
    result = run("import", str(clip), "--blend", str(tmp_path / "x.blend"), "--fbx", str(tmp_path / "x.fbx"))
    assert_one_line_error(result, str(clip), "not a readable .npz")
    assert [p.name for p in tmp_path.iterdir()] == ["noise.npz"]


def test_clip_with_a_newer_version(tmp_path, demo_dir):
    arrays = dict(np.load(demo_dir / "demo.npz"))
    arrays["version"] = np.array(99)
    clip = tmp_path / "future.npz"
    np.savez(clip, **arrays)
    result = run("import", str(clip), "--glb", str(tmp_path / "x.glb"))
    assert_one_line_error(result, str(clip), "version 99")
    assert [p.name for p in tmp_path.iterdir()] == ["future.npz"]


@pytest.mark.parametrize("bad", ["/proc/avatarcap-test.fbx", "{tmp}/no/such/folder.fbx"])
def test_unwritable_output_writes_nothing(tmp_path, demo_dir, bad):
    bad = bad.format(tmp=tmp_path)
    result = run("import", str(demo_dir / "demo.npz"), "--blend", str(tmp_path / "ok.blend"), "--fbx", bad)
    assert_one_line_error(result, bad)
    assert list(tmp_path.iterdir()) == []  # not even the writable .blend
    assert not Path(bad).exists()


def test_import_needs_an_output(tmp_path, demo_dir):
    result = run("import", str(demo_dir / "demo.npz"))
    assert_one_line_error(result, "--blend")


def test_bad_arguments_exit_with_usage():
    result = run("import", "--rest-pose", "sideways", "x.npz")
    assert result.returncode == 2 and "usage: avatarcap import" in result.stderr


def test_unexpected_failure_logs_its_traceback(tmp_path, monkeypatch, capsys):
    """A bug (not a user error) exits 1 with one line pointing at a log file holding the traceback."""
    def broken(args):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setenv("AVATAR_CAPTURE_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "_import", broken)
    assert cli.main(["import", "clip.npz", "--fbx", "x.fbx"]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("avatarcap: error: unexpected ZeroDivisionError: simulated bug (traceback in ")
    log = Path(line.rpartition("traceback in ")[2].rstrip(")"))
    assert log.parent == tmp_path / "logs"
    assert "Traceback" in log.read_text() and "simulated bug" in log.read_text()


def test_body_build_reports_progress_and_succeeds():
    started = time.perf_counter()
    result = run("body", "build")
    print(f"\navatarcap body build: {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    assert "body ready" in result.stdout
    assert "%" in result.stderr  # progress lines


# -- capture --------------------------------------------------------------------------------------

def write_video(path: Path, frames: int, size=(320, 240)) -> Path:
    """A video with no person in it: a still horizontal gradient."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for _ in range(frames):
        writer.write(np.repeat(np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None], size[1], 0)
                     .repeat(3, 2))
    writer.release()
    return path


def test_capture_writes_the_clip_and_overlay_of_a_frame_range(tmp_path):
    started = time.perf_counter()
    result = run("capture", str(cli.DEMO_VIDEO), "-o", str(tmp_path / "walk.npz"), "--preview",
                 str(tmp_path / "walk.mp4"), "--start", "30", "--end", "70", "--quality", "fast")
    print(f"\navatarcap capture (40 frames + overlay): {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.mp4", "walk.npz"]
    assert "frames/s" in result.stderr and "ETA" in result.stderr  # progress shows the rate
    clip = load_clip(tmp_path / "walk.npz")
    assert list(clip.extras["source_frames"]) == list(range(30, 70))
    assert int(cv2.VideoCapture(str(tmp_path / "walk.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 40


@pytest.mark.parametrize("case, words", [
    ("not a video", ["notes.mp4", "not a video file"]),
    ("two frames", ["short.mp4", "2 frames"]),
    ("no person", ["gradient.mp4", "no person"]),
    ("end before start", ["end frame 4 must come after start frame 9"]),
    ("bad fov", ["field of view"]),
    ("unwritable", ["/proc/avatarcap-test.glb"]),
    ("clip not npz", ["clip.txt", ".npz"]),
])
def test_capture_refuses_bad_input_and_writes_nothing(tmp_path, case, words):
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    video = write_video(inputs / "gradient.mp4", 24)
    args = ["-o", str(out / "clip.npz"), "--preview", str(out / "overlay.mp4"), "--blend", str(out / "s.blend")]
    if case == "not a video":
        video = inputs / "notes.mp4"
        video.write_text("shopping list")
    elif case == "two frames":
        video = write_video(inputs / "short.mp4", 2)
    elif case == "end before start":
        args += ["--start", "9", "--end", "4"]
    elif case == "bad fov":
        args += ["--fov", "0"]
    elif case == "unwritable":
        args += ["--glb", "/proc/avatarcap-test.glb"]
    elif case == "clip not npz":
        args[1] = str(out / "clip.txt")
    result = run("capture", str(video), *args)
    assert_one_line_error(result, *words)
    assert list(out.iterdir()) == []


def test_capture_bad_box_exits_with_usage(tmp_path):
    result = run("capture", "v.mp4", "-o", str(tmp_path / "c.npz"), "--box", "1,2,3")
    assert result.returncode == 2 and "usage: avatarcap capture" in result.stderr and "x0,y0,x1,y1" in result.stderr


def test_capture_flags_become_capture_options(monkeypatch, tmp_path):
    from avatar_capture.core.capture.options import CaptureOptions

    seen = {}
    monkeypatch.setattr(cli, "_capture_to", lambda video, options, *rest: seen.update(video=video, options=options))
    assert cli.main(["capture", "v.mp4", "-o", str(tmp_path / "c.npz"), "--start", "12", "--end", "90", "--fov",
                     "55", "--moving-camera", "--box", "10,20,300.5,400", "--quality", "best"]) == 0
    assert seen == {"video": Path("v.mp4"), "options": CaptureOptions(
        start=12, end=90, fov_degrees=55.0, moving_camera=True, box=(10.0, 20.0, 300.5, 400.0), quality="best")}
    assert cli.main(["capture", "v.mp4", "-o", str(tmp_path / "c.npz")]) == 0
    assert seen["options"] == CaptureOptions()


def test_a_late_failure_leaves_none_of_the_capture_outputs(monkeypatch, tmp_path, capsys):
    """The clip and overlay are staged with the scene files: an export failing last takes them all back."""
    from avatar_capture.blender import export
    from avatar_capture.core.errors import AvatarCaptureError

    def full_disk(*args, **kwargs):
        raise AvatarCaptureError("simulated: no space left on the device")

    monkeypatch.setattr(export, "export_avatar", full_disk)
    out = tmp_path / "out"
    out.mkdir()
    code = cli.main(["capture", str(cli.DEMO_VIDEO), "-o", str(out / "c.npz"), "--preview", str(out / "o.mp4"),
                     "--blend", str(out / "s.blend"), "--glb", str(out / "s.glb"), "--end", "20",
                     "--quality", "fast"])
    assert code == 2 and "no space left" in capsys.readouterr().err
    assert list(out.iterdir()) == []
    bpy.ops.wm.read_factory_settings(use_empty=True)

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
    for command in ("body", "import", "demo", "--body-model", "--cache-dir"):
        assert command in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom avatar_capture import cli\ncli.build_parser()\n"
         "print(sorted(m for m in ('bpy', 'torch', 'anny') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"  # so `avatarcap --help` stays quick
    for sub in (["body", "build"], ["import"], ["demo"]):
        result = run(*sub, "--help")
        assert result.returncode == 0 and "usage: avatarcap" in result.stdout


def test_demo_writes_a_clip_and_the_scene_files(demo_dir):
    assert sorted(p.name for p in demo_dir.iterdir()) == ["demo.blend", "demo.fbx", "demo.glb", "demo.npz"]
    clip = load_clip(demo_dir / "demo.npz")
    assert clip.body_model == "anny" and clip.frame_count > 10
    assert np.ptp(clip.root_translation[:, 1]) > 0.5  # it walks


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

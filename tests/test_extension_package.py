"""The extension zip: built with Blender's own tool, installed the way a user does, and working.

The zip is what users get, and it differs from the checkout in ways tests of the checkout
cannot see: files left out by the manifest's exclude patterns, the package living under
``bl_ext.user_default.avatar_capture`` (relative imports only), and the bundled wheels
replacing our .venv. So the zip is built with tools/build_extension.py (or taken from
$AVATAR_CAPTURE_EXTENSION_ZIP), installed into a throw-away Blender user folder through
Blender's "Install from Disk" operator in a separate bpy process, enabled, and used: the
"Check set-up" operator and the import of a skeleton-only clip. Finally the bundled wheels
alone (plus numpy, which Blender ships) build an Anny rig with our own code, as a worker job
on Blender's Python would.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import numpy
import pytest

from test_clip_file import small_clip

from avatar_capture.core.clip import save_clip
from avatar_capture.core.splats.gaussians import make_gaussians
from avatar_capture.core.splats.ply import write_ply

REPO = Path(__file__).resolve().parent.parent
ZIP_ENV = "AVATAR_CAPTURE_EXTENSION_ZIP"
ADDON_MODULE = "bl_ext.user_default.avatar_capture"
DEV_ONLY_PATHS = (".venv/", ".git/", ".ci/", "tests/", "tools/", "bench/", "dist/", "out/", "build/")

_spec = importlib.util.spec_from_file_location("build_extension", REPO / "tools" / "build_extension.py")
build_extension = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_extension)


@pytest.fixture(scope="module")
def workdir():
    """One scratch folder for the module (zip ~250 MB, installed wheels ~1 GB), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="avatar-extension-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def extension_zip(workdir: Path) -> Path:
    given = os.environ.get(ZIP_ENV)
    if given:
        assert Path(given).is_file(), f"${ZIP_ENV} names no file: {given}"
        return Path(given)
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_extension.py"),
         "--build-dir", str(workdir / "build"), "--output-dir", str(workdir / "dist")],
        capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    print("\n" + "\n".join(result.stdout.strip().splitlines()[-2:]))
    shutil.rmtree(workdir / "build")
    zips = sorted((workdir / "dist").glob("*.zip"))
    assert [z.name for z in zips] == ["avatar_capture-0.1.0-linux_x64.zip"]
    return zips[0]


def test_zip_holds_the_addon_and_exactly_the_pinned_wheels(extension_zip: Path) -> None:
    with zipfile.ZipFile(extension_zip) as archive:
        names = archive.namelist()
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode("utf-8"))
    assert {"__init__.py", "blender_manifest.toml", "core/clip.py", "operators/__init__.py",
            "native/splat_vert.glsl", "native/splat_frag.glsl"} <= set(names)
    leaked = [name for name in names if name.startswith(DEV_ONLY_PATHS) or "__pycache__" in name]
    assert not leaked, f"development files in the zip: {leaked[:10]}"
    assert manifest["id"] == "avatar_capture" and manifest["blender_version_min"] == "4.2.0"
    assert manifest["blender_version_max"] == build_extension.BLENDER_VERSION_MAX
    assert manifest["build"]["generated"]["platforms"] == ["linux-x64"]
    wheels = manifest["wheels"]
    assert all(wheel.removeprefix("./") in names for wheel in wheels)
    assert sorted(name for name in names if name.endswith(".whl")) == sorted(w.removeprefix("./") for w in wheels)
    bundled = {build_extension.canonical_name(Path(w).name.split("-")[0]): Path(w).name.split("-")[1] for w in wheels}
    pins = build_extension.read_pins(build_extension.REQUIREMENTS)
    assert {name: version.split("+")[0] for name, version in bundled.items()} == pins
    assert "numpy" not in bundled, "Blender ships numpy; a second copy would shadow it"
    assert bundled["torch"].endswith("+cpu"), "the Linux torch wheel must be the CPU build"


_INSTALL = r"""
import json, sys
from pathlib import Path
import bpy

zip_path, sandbox, clip_path, splat_path = sys.argv[1:5]
extensions = Path(bpy.utils.user_resource("EXTENSIONS"))
config = Path(bpy.utils.user_resource("CONFIG"))
assert extensions.is_relative_to(sandbox) and config.is_relative_to(sandbox), (extensions, config)

bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
enabled = "bl_ext.user_default.avatar_capture" in bpy.context.preferences.addons
check = bpy.ops.avatar.check_setup()
before = {obj.name for obj in bpy.data.objects}
imported = bpy.ops.avatar.import_clip(filepath=clip_path)
new = [bpy.data.objects[name] for name in sorted({obj.name for obj in bpy.data.objects} - before)]
armatures = [obj for obj in new if obj.type == "ARMATURE"]
splats = bpy.ops.avatar.import_splats(filepath=splat_path)
# The viewport shaders, loaded from the installed add-on's native/ folder, draw the imported cloud.
from bl_ext.user_default.avatar_capture.blender.splat_offscreen import render_offscreen
from bl_ext.user_default.avatar_capture.core.splats.camera import framing_camera
cloud = bpy.context.active_object
means = [tuple(cloud.matrix_world @ v.co) for v in cloud.data.vertices]
image = render_offscreen([cloud], framing_camera(means, 32, 32))
site = extensions / ".local" / "lib" / "python3.11" / "site-packages"
print(json.dumps({
    "enabled": enabled,
    "check_setup": sorted(check),
    "import_clip": sorted(imported),
    "bones": [bone.name for bone in armatures[0].data.bones] if armatures else [],
    "action_frames": list(armatures[0].animation_data.action.frame_range) if armatures else [],
    "import_splats": sorted(splats),
    "splat_image_alpha": float(image[..., 3].max()),
    "addon_files": sorted(str(p.relative_to(extensions / "user_default" / "avatar_capture"))
                          for p in (extensions / "user_default" / "avatar_capture").rglob("*") if p.is_file()),
    "site_packages": str(site),
    "site_names": sorted(p.name for p in site.iterdir()) if site.is_dir() else [],
    "user_default": str(extensions / "user_default"),
}))
"""


@pytest.fixture(scope="module")
def installed(extension_zip: Path, workdir: Path) -> dict:
    """Install and enable the zip in a sandboxed Blender user folder; import a clip and splats with it."""
    sandbox = workdir / "blender-user"
    clip = small_clip(frames=4, with_camera=False)
    clip_path = save_clip(clip, workdir / "skeleton_only.npz")
    rng = numpy.random.default_rng(0)
    splat_path = write_ply(make_gaussians(rng.normal(size=(40, 3)) * 0.2, rng.normal(size=(40, 4)),
                                          numpy.full((40, 3), -3.0), numpy.full(40, 2.0),
                                          rng.normal(size=(40, 1, 3))), workdir / "cloud.ply")
    env = dict(os.environ,
               BLENDER_USER_RESOURCES=str(sandbox),
               BLENDER_USER_CONFIG=str(sandbox / "config"),
               BLENDER_USER_SCRIPTS=str(sandbox / "scripts"),
               BLENDER_USER_EXTENSIONS=str(sandbox / "extensions"),
               BLENDER_USER_DATAFILES=str(sandbox / "datafiles"))
    result = subprocess.run([sys.executable, "-c", _INSTALL, str(extension_zip), str(sandbox), str(clip_path),
                             str(splat_path)],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["clip"] = clip
    report["log"] = result.stdout + result.stderr
    return report


def test_installed_extension_is_enabled_and_runs_its_operators(installed: dict) -> None:
    assert installed["enabled"], installed["log"][-3000:]
    assert installed["check_setup"] == ["FINISHED"], installed["log"][-3000:]
    assert installed["import_clip"] == ["FINISHED"], installed["log"][-3000:]
    clip = installed["clip"]
    assert installed["bones"] == list(clip.skeleton.joint_names)
    assert installed["action_frames"][1] - installed["action_frames"][0] == clip.frame_count - 1
    assert installed["import_splats"] == ["FINISHED"], installed["log"][-3000:]
    assert installed["splat_image_alpha"] > 0.5, "the packaged viewport shaders drew nothing"
    assert "__init__.py" in installed["addon_files"]
    assert not [f for f in installed["addon_files"] if f.startswith(DEV_ONLY_PATHS)]


def test_blender_unpacked_the_wheels_without_numpy(installed: dict) -> None:
    names = set(installed["site_names"])
    assert {"torch", "anny", "smplx", "roma", "trimesh"} <= names, sorted(names)
    assert "numpy" not in names and "warp" not in names and "requests" not in names, sorted(names)


_LEAN = r"""
import json, sys, time
cache_dir = sys.argv[1]
sys.path[:0] = sys.argv[2:]
t0 = time.perf_counter()
import numpy, torch, anny, smplx
from avatar_capture.core.body.models import build_rig
from avatar_capture.core.settings import ComputeSettings
t1 = time.perf_counter()
rig = build_rig(ComputeSettings(cache_dir=cache_dir))
t2 = time.perf_counter()
print(json.dumps({
    "files": {m.__name__: m.__file__ for m in (numpy, torch, anny, smplx)},
    "package": sys.modules["avatar_capture"].__file__,
    "vertices": int(rig.vertices_rest.shape[0]), "joints": rig.skeleton.joint_count,
    "import_s": t1 - t0, "build_s": t2 - t1,
    "loaded": sorted({name.split(".")[0] for name in sys.modules} & {"warp", "requests", "scipy", "bpy"}),
}))
"""


def test_bundled_wheels_alone_build_an_anny_rig(installed: dict, workdir: Path, compute_settings) -> None:
    """No site-packages but the bundled ones and numpy (Blender's Python has numpy, not our .venv)."""
    only_numpy = workdir / "only-numpy"
    only_numpy.mkdir(exist_ok=True)
    numpy_dir = Path(numpy.__file__).parent
    for folder in (numpy_dir, numpy_dir.parent / "numpy.libs"):
        if folder.exists() and not (only_numpy / folder.name).exists():
            (only_numpy / folder.name).symlink_to(folder)
    paths = [str(only_numpy), installed["site_packages"], installed["user_default"]]
    result = subprocess.run([sys.executable, "-I", "-S", "-c", _LEAN, str(compute_settings.cache_path), *paths],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("torch", "anny", "smplx"):
        assert report["files"][name].startswith(installed["site_packages"]), report["files"]
    assert report["package"].startswith(installed["user_default"])
    assert (report["vertices"], report["joints"]) == (13718, 104)
    assert report["loaded"] == []
    print(f"\nbundled wheels: imports {report['import_s']:.1f} s, Anny rig {report['build_s']:.1f} s")

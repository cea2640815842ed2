"""Build the Avatar Capture extension zip with Blender's own extension tool, then validate it.

Why a script rather than a bare ``blender --command extension build``: the wheels that let worker
jobs run on Blender's own Python (torch, anny, smplx and their run-time dependencies, pinned in
requirements-blender.txt) are downloaded per platform instead of committed, and the manifest must
list exactly the wheel files in the zip. So the repository's blender_manifest.toml never changes:
the script stages a copy of the add-on (default build/extension/), puts the wheels and a manifest
with ``wheels = [...]`` there, builds the zip into dist/ with ``bl_pkg`` taken from the bpy module
and validates it.

Usage (from the repository root, with the project's .venv, which has bpy):
    python tools/build_extension.py                          # linux-x64, wheels bundled
    python tools/build_extension.py --platform windows-x64 --platform macos-arm64
    python tools/build_extension.py --no-wheels              # add-on only (external compute Python)

Platforms: wheels for CPython 3.11 (Blender 4.2 to 5.0) are fetched with
``pip download --no-deps --only-binary=:all: --python-version 3.11 --implementation cp
--platform TAG``; see PLATFORM_TAGS. Several platforms give one zip each (``--split-platforms``).
Only linux-x64 is built and tested in this project's CI.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "blender_manifest.toml"
REQUIREMENTS = ROOT / "requirements-blender.txt"

PYTHON_VERSION = "3.11"
# Blender 5.1 embeds Python 3.13, so a zip carrying cp311 wheels must stop before it.
BLENDER_VERSION_MAX = "5.1.0"

# pip --platform tags per Blender platform. pip widens macOS tags to older releases itself but not
# manylinux_2_x ones, hence the explicit list (Blender 4.2+ needs glibc 2.28 on Linux).
PLATFORM_TAGS = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_14_0_arm64",),  # torch 2.13's macOS wheels require macOS 14
}
NOT_BUILDABLE = {
    "macos-x64": "torch 2.13 publishes no macOS x86_64 wheel (the last one is torch 2.2.2)",
}

# Top-level folders of the checkout that never belong in the staged add-on (the manifest's
# [build] paths_exclude_pattern removes the remaining development files from the zip).
STAGE_SKIP = {".git", ".venv", ".cache", ".pytest_cache", "build", "dist", "out", "wheels"}

_PIP_FILE_LINE = re.compile(r"^\s*(?:Saved|File was already downloaded)\s+(\S+\.whl)\s*$")


def canonical_name(name: str) -> str:
    """Distribution name as wheel file names spell it (PEP 503 normalised, underscores)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file; anything looser is refused."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version.strip() or any(c in version for c in "<>=!~;, "):
            sys.exit(f"{path}:{number}: expected an exact pin 'name==version', found '{line}'")
        pins[canonical_name(name)] = version.strip()
    return pins


def download_wheels(platform: str, wheels_dir: Path, pins: dict[str, str]) -> list[Path]:
    """Download the pinned wheels for one platform into wheels_dir/platform; drop stale files there."""
    target = wheels_dir / platform
    target.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", PYTHON_VERSION, "--implementation", "cp",
        *(arg for tag in PLATFORM_TAGS[platform] for arg in ("--platform", tag)),
        "--progress-bar", "off", "--dest", str(target), "-r", str(REQUIREMENTS),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"pip could not download the wheels for {platform}:\n{result.stdout}{result.stderr}")
    chosen = sorted({target / Path(m.group(1)).name for line in result.stdout.splitlines()
                     if (m := _PIP_FILE_LINE.match(line))})
    found = {canonical_name(p.name.split("-")[0]) for p in chosen}
    if found != set(pins):
        sys.exit(f"pip's report for {platform} does not match {REQUIREMENTS.name}: "
                 f"missing {sorted(set(pins) - found)}, unexpected {sorted(found - set(pins))}")
    if platform == "linux-x64":
        torch = next(p for p in chosen if p.name.startswith("torch-"))
        if "+cpu" not in torch.name:
            sys.exit(f"{torch.name} is the CUDA build of torch, which needs several GB of nvidia-* wheels; "
                     "put the CPU wheel (torch-2.13.0+cpu-...-manylinux_2_28_x86_64.whl) in pip's find-links")
    for stale in set(target.glob("*.whl")) - set(chosen):
        stale.unlink()
    return chosen


def staged_manifest(text: str, wheel_names: list[str], platforms: list[str]) -> str:
    """The repository's manifest plus ``wheels``, the built platforms and the Python 3.11 ceiling."""
    data = tomllib.loads(text)
    for key in ("wheels", "blender_version_max"):
        if key in data:
            sys.exit(f"{MANIFEST} must not set '{key}': the build writes it into the staged copy")
    platform_line = re.compile(r"(?m)^platforms = \[.*\]\n")
    if not platform_line.search(text):
        sys.exit(f"{MANIFEST} has no one-line 'platforms = [...]' entry")
    if wheel_names:
        text = platform_line.sub("platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]\n", text)
        generated = ["# Written by tools/build_extension.py.",
                     f'blender_version_max = "{BLENDER_VERSION_MAX}"',
                     "wheels = [", *(f'  "./wheels/{name}",' for name in wheel_names), "]", ""]
        first_table = re.search(r"(?m)^\[", text).start()
        text = text[:first_table] + "\n".join(generated) + "\n" + text[first_table:]
    else:
        text = platform_line.sub("", text)
    staged = tomllib.loads(text)
    assert staged.get("wheels", []) == [f"./wheels/{name}" for name in wheel_names]
    return text


def _stage_ignore(folder: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n == "__pycache__"}
    if Path(folder) == ROOT:
        skip |= STAGE_SKIP & set(names)
    return skip


def stage(build_dir: Path, wheels: list[Path], platforms: list[str]) -> Path:
    """Copy the add-on and its wheels into build_dir/avatar_capture with a completed manifest."""
    source = build_dir / "avatar_capture"
    shutil.rmtree(build_dir, ignore_errors=True)
    shutil.copytree(ROOT, source, ignore=_stage_ignore)
    names = sorted({wheel.name for wheel in wheels})
    if names:
        (source / "wheels").mkdir()
    for wheel in {w.name: w for w in wheels}.values():
        try:
            os.link(wheel, source / "wheels" / wheel.name)
        except OSError:
            shutil.copy2(wheel, source / "wheels" / wheel.name)
    text = (ROOT / MANIFEST).read_text(encoding="utf-8")
    (source / MANIFEST).write_text(staged_manifest(text, names, platforms), encoding="utf-8")
    return source


def bl_pkg(args: list[str]) -> None:
    """Run Blender's extension command line (``blender --command extension ...``) in this process."""
    import bpy  # noqa: F401  (importing the module puts Blender's add-ons, bl_pkg among them, on sys.path)
    from bl_pkg import bl_extension_cli

    if bl_extension_cli.cli_extension_handler(args) != 0:
        sys.exit(f"Blender's extension tool failed: {' '.join(args)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=[*PLATFORM_TAGS, *NOT_BUILDABLE],
                        help="Blender platform to bundle wheels for (repeatable; default linux-x64)")
    parser.add_argument("--no-wheels", action="store_true",
                        help="bundle no wheels: the add-on then needs an external compute Python")
    parser.add_argument("--wheels-dir", type=Path, default=ROOT / "wheels", help="download cache (default wheels/)")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "extension", help="staging folder")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default dist/)")
    args = parser.parse_args(argv)
    platforms = list(dict.fromkeys(args.platform or ["linux-x64"]))
    for platform in platforms:
        if platform in NOT_BUILDABLE:
            parser.error(f"{platform} cannot be built: {NOT_BUILDABLE[platform]}")
    if args.no_wheels:
        platforms = []

    started = time.perf_counter()
    pins = read_pins(REQUIREMENTS)
    wheels = [wheel for platform in platforms for wheel in download_wheels(platform, args.wheels_dir, pins)]
    downloaded = time.perf_counter()
    source = stage(args.build_dir.resolve(), wheels, platforms)
    manifest = tomllib.loads((source / MANIFEST).read_text(encoding="utf-8"))
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{manifest['id']}-{manifest['version']}"
    zips = [output_dir / f"{stem}-{p.replace('-', '_')}.zip" for p in platforms] or [output_dir / f"{stem}.zip"]
    for old in zips:
        old.unlink(missing_ok=True)
    staged = time.perf_counter()
    bl_pkg(["build", "--source-dir", str(source), "--output-dir", str(output_dir),
            *(["--split-platforms"] if platforms else [])])
    built = time.perf_counter()
    for zip_path in zips:
        if not zip_path.is_file():
            sys.exit(f"Blender's extension tool did not write {zip_path}")
        bl_pkg(["validate", str(zip_path)])
    validated = time.perf_counter()
    for zip_path in zips:
        print(f"extension: {zip_path} ({zip_path.stat().st_size / 2**20:.1f} MiB)")
    print(f"times: wheels {downloaded - started:.1f} s, staging {staged - downloaded:.1f} s, "
          f"build {built - staged:.1f} s, validate {validated - built:.1f} s, total {validated - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

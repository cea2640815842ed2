"""``avatarcap splat render`` and ``avatarcap splat export``, run as the installed command.

A small synthetic 3DGS PLY (an upright blob of coloured splats with degree-1 SH) is
rendered by both engines: the reference rasterizer and the viewport shaders in headless
Blender must both frame it the same way (same default camera) and agree on the colour at
PSNR >= 30 dB. A camera file is honoured (its size, its view), exports validate with the
Khronos validator, and bad input exits 2 with one line and writes nothing.
"""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from avatar_capture.core.splats import gltf
from avatar_capture.core.splats.camera import camera_from_json
from avatar_capture.core.splats.gaussians import make_gaussians
from avatar_capture.core.splats.ply import read_ply, write_ply
from avatar_capture.core.splats.sh import rgb_to_sh_dc
from test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def cloud_ply(tmp_path_factory):
    """1500 splats filling an upright ellipsoid (0.3 x 0.2 x 0.8 m half-axes, centred 1 m up)."""
    rng = np.random.default_rng(4)
    n = 1500
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    means = directions * rng.random((n, 1)) ** (1 / 3) * [0.3, 0.2, 0.8] + [0.0, 0.0, 1.0]
    rgb = np.clip(0.5 + 0.4 * np.stack([means[:, 2] - 1.0, means[:, 0], -means[:, 1]], axis=1) / 0.5, 0.05, 0.95)
    sh = np.zeros((n, 4, 3))
    sh[:, 0] = rgb_to_sh_dc(rgb)
    sh[:, 1:] = rng.normal(0, 0.05, size=(n, 3, 3))
    g = make_gaussians(means, rng.normal(size=(n, 4)), rng.normal(math.log(0.03), 0.3, size=(n, 3)),
                       rng.normal(1.5, 0.5, size=n), sh)
    path = tmp_path_factory.mktemp("splats") / "blob.ply"
    write_ply(g, path)
    return path


def read_png(path) -> np.ndarray:
    """RGBA float (H, W, 4) in 0..1, straight alpha, as the file stores it."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8 and image.shape[2] == 4
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA).astype(np.float64) / 255.0


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., :3] * rgba[..., 3:]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def render_cli(ply, png, *args: str) -> np.ndarray:
    result = run("splat", "render", str(ply), "-o", str(png), *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {png}"
    return read_png(png)


def test_both_engines_frame_the_cloud_and_agree(tmp_path, cloud_ply):
    images = {engine: render_cli(cloud_ply, tmp_path / f"{engine}.png", "--width", "160", "--height", "120",
                                 "--engine", engine) for engine in ("reference", "viewport")}
    for engine, image in images.items():
        assert image.shape == (120, 160, 4), engine
        alpha = image[..., 3]
        assert alpha[50:70, 70:90].min() > 0.9, engine  # the blob covers the centre
        rows, cols = np.nonzero(alpha > 0.5)
        assert abs(rows.mean() - 60) < 6 and abs(cols.mean() - 80) < 6, engine  # centred
        assert rows.ptp() > 1.8 * cols.ptp() and rows.ptp() > 90, engine  # upright and filling the height
        # The default camera frames the 1st-99th percentile box of the means, so only the
        # blob's very tips may touch the frame: no column or side is covered.
        assert alpha[:, :5].max() < 0.05 and alpha[:, -5:].max() < 0.05, engine
        assert (alpha[:2] > 0.5).mean() < 0.15 and (alpha[-2:] > 0.5).mean() < 0.15, engine
    colour_psnr = psnr(premultiplied(images["reference"]), premultiplied(images["viewport"]))
    alpha_psnr = psnr(images["reference"][..., 3], images["viewport"][..., 3])
    print(f"\nsplat render reference vs viewport: colour PSNR {colour_psnr:.1f} dB, alpha {alpha_psnr:.1f} dB")
    assert colour_psnr >= 30.0 and alpha_psnr >= 30.0


def test_a_camera_file_is_honoured(tmp_path, cloud_ply):
    from avatar_capture.core.splats.ply import read_splats
    from avatar_capture.core.splats.render import render

    side = tmp_path / "side.json"  # from +X, 2.5 m away, at the blob's height
    side.write_text(json.dumps({"width": 96, "height": 64, "fov_deg": 50, "eye": [2.5, 0, 1], "target": [0, 0, 1]}))
    image = render_cli(cloud_ply, tmp_path / "side.png", "--camera", str(side))
    assert image.shape == (64, 96, 4)
    expected = render(read_splats(cloud_ply), camera_from_json(side))
    assert psnr(image[..., 3], expected.alpha) > 40.0
    assert psnr(premultiplied(image), expected.colour) > 40.0

    bigger = render_cli(cloud_ply, tmp_path / "bigger.png", "--camera", str(side), "--width", "192",
                        "--height", "128", "--engine", "viewport")
    assert bigger.shape == (128, 192, 4)  # same view, twice the pixels, the other engine
    assert psnr(cv2.resize(bigger[..., 3], (96, 64), interpolation=cv2.INTER_AREA), image[..., 3]) > 25.0

    away = tmp_path / "away.json"
    away.write_text(json.dumps({"width": 32, "height": 32, "fov_deg": 40, "eye": [0, -3, 1], "target": [0, -6, 1]}))
    assert render_cli(cloud_ply, tmp_path / "away.png", "--camera", str(away), "--engine", "viewport")[..., 3].max() \
        == 0.0


def test_sh_degree_caps_the_view_dependent_colour(tmp_path, cloud_ply):
    size = ("--width", "64", "--height", "64", "--engine", "viewport")
    full = render_cli(cloud_ply, tmp_path / "full.png", *size)
    flat = render_cli(cloud_ply, tmp_path / "flat.png", *size, "--sh-degree", "0")
    assert np.array_equal(full[..., 3], flat[..., 3])  # same splats, same coverage
    assert 25.0 < psnr(premultiplied(full), premultiplied(flat)) < 60.0  # band 1 adds a little colour


def test_export_writes_a_glb_that_validates_and_a_ply(tmp_path, cloud_ply):
    glb, ply = tmp_path / "blob.glb", tmp_path / "copy.ply"
    result = run("splat", "export", str(cloud_ply), "--glb", str(glb), "--ply", str(ply))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wrote", str(glb), "wrote", str(ply)]
    assert gltf.validator_errors(gltf.validate_gltf(glb)) == []
    issues = gltf.validate_gltf(glb, extension_attributes_as_application=True)["issues"]
    assert (issues["numErrors"], issues["numWarnings"]) == (0, 0)
    source, back, copy = read_ply(cloud_ply), gltf.read_glb(glb), read_ply(ply)
    assert back.count == source.count and np.array_equal(back.sh, source.sh)
    assert np.array_equal(back.means, source.means)
    assert np.array_equal(copy.sh, source.sh) and np.array_equal(copy.rotations, source.rotations)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.glb", "copy.ply"]


def write_mesh_ply(path) -> None:
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                    "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                    "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")


@pytest.mark.parametrize("case", ["missing", "mesh", "camera", "folder", "proc", "suffix", "export-nothing"])
def test_bad_input_exits_2_with_one_line_and_no_file(tmp_path, cloud_ply, case):
    out = tmp_path / "out.png"
    args = ["splat", "render", str(cloud_ply), "-o", str(out)]
    if case == "missing":
        args[2], words = str(tmp_path / "nothere.ply"), [str(tmp_path / "nothere.ply"), "not found"]
    elif case == "mesh":
        write_mesh_ply(tmp_path / "mesh.ply")
        args[2], words = str(tmp_path / "mesh.ply"), [str(tmp_path / "mesh.ply")]
    elif case == "camera":
        (tmp_path / "cam.json").write_text('{"width": 64, "height": ')
        args += ["--camera", str(tmp_path / "cam.json")]
        words = [str(tmp_path / "cam.json"), "JSON"]
    elif case == "folder":
        args[4] = str(tmp_path / "no" / "such" / "out.png")
        words = [args[4], "does not exist"]
    elif case == "proc":
        args[4] = "/proc/avatarcap-splat.png"
        words = [args[4], "not writable"]
    elif case == "suffix":
        args[4] = str(tmp_path / "out.jpg")
        words = [args[4], ".png"]
    else:
        args, words = ["splat", "export", str(cloud_ply)], ["--glb"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_one_line_error(run(*args), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before

"""The splat container's own checks: every malformed field is refused with a message naming it."""
from __future__ import annotations

import numpy as np
import pytest

from avatar_capture.core.splats.gaussians import InvalidGaussians, SplatSkin, make_gaussians
from avatar_capture.core.splats.sh import rgb_to_sh_dc, sh_to_colour


def cloud(n: int = 6, degree: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    return dict(means=rng.normal(size=(n, 3)), rotations=rng.normal(size=(n, 4)),
                log_scales=rng.normal(-3, 0.5, size=(n, 3)), logit_opacities=rng.normal(size=n),
                sh=rng.normal(0, 0.3, size=(n, (degree + 1) ** 2, 3)))


def skin(n: int = 6):
    weights = np.zeros((n, 4))
    weights[:, 0] = 0.75
    weights[:, 1] = 0.25
    return SplatSkin(("root", "arm"), np.array([-1, 0]), np.stack([np.eye(4)] * 2),
                     np.tile([0, 1, 0, 0], (n, 1)), weights)


def test_a_valid_cloud_is_converted_to_float32_and_reports_its_degree() -> None:
    g = make_gaussians(**cloud(degree=2), skin=skin())
    assert g.count == 6 and g.sh_degree == 2
    assert g.means.dtype == np.float32 and g.skin.bone_indices.dtype == np.int32
    assert np.allclose(g.opacities, 1 / (1 + np.exp(-g.logit_opacities)))


@pytest.mark.parametrize("field, value, words", [
    ("means", np.full((6, 3), np.nan), "means holds NaN"),
    ("rotations", np.zeros((6, 4)), "quaternions are zero"),
    ("log_scales", np.zeros((6, 2)), "log_scales has shape"),
    ("sh", np.zeros((6, 5, 3)), "sh has shape"),
    ("logit_opacities", np.zeros(5), "logit_opacities has shape"),
])
def test_each_malformed_field_is_named(field, value, words) -> None:
    arrays = cloud()
    arrays[field] = value
    with pytest.raises(InvalidGaussians, match=words):
        make_gaussians(**arrays)


def test_an_empty_cloud_is_refused() -> None:
    with pytest.raises(InvalidGaussians, match="0 splats"):
        make_gaussians(**cloud(n=0))


def test_skin_weights_and_indices_are_checked() -> None:
    bad = skin()
    with pytest.raises(InvalidGaussians, match="sum to 1"):
        make_gaussians(**cloud(), skin=SplatSkin(bad.bone_names, bad.bone_parents, bad.rest_bone_to_object,
                                                  bad.bone_indices, bad.bone_weights * 2))
    with pytest.raises(InvalidGaussians, match="bone_indices"):
        make_gaussians(**cloud(), skin=SplatSkin(bad.bone_names, bad.bone_parents, bad.rest_bone_to_object,
                                                  bad.bone_indices + 5, bad.bone_weights))


def test_subset_and_sh_degree_change_keep_the_bindings_aligned() -> None:
    g = make_gaussians(**cloud(degree=1), skin=skin())
    part = g.subset(np.array([True, False, True, False, False, True]))
    assert part.count == 3 and part.skin.bone_weights.shape == (3, 4)
    assert np.array_equal(part.means, g.means[[0, 2, 5]])
    up, down = g.with_sh_degree(3), g.with_sh_degree(0)
    assert up.sh.shape == (6, 16, 3) and np.array_equal(up.sh[:, :4], g.sh) and not up.sh[:, 4:].any()
    assert down.sh.shape == (6, 1, 3)


def test_band_zero_gives_the_same_colour_from_every_direction() -> None:
    rgb = np.array([[0.2, 0.5, 0.9]])
    sh = np.zeros((1, 16, 3))
    sh[:, 0] = rgb_to_sh_dc(rgb)
    dirs = np.random.default_rng(1).normal(size=(5, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    assert np.allclose(sh_to_colour(np.repeat(sh, 5, 0), dirs, 3), rgb)

"""The robustness benchmark's corruptions: deterministic, and each changes the picture the way its name says, more
at every severity."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.corruptions import BY_NAME, CORRUPTIONS, corrupt
from tests.synthetic import class_image

NAMES = [corruption.name for corruption in CORRUPTIONS]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.stack([class_image(index % 10, rng) for index in range(12)])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_the_benchmark_has_every_kind_the_issue_asks_for_at_three_or_more_severities():
    assert set(NAMES) >= {
        "gaussian_noise", "gaussian_blur", "jpeg", "brighter", "darker", "contrast", "pixelate", "grayscale", "rotate",
    }  # fmt: skip
    assert all(len(corruption.levels) >= 3 for corruption in CORRUPTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_a_corruption_is_deterministic_and_keeps_shape_and_dtype(images, name):
    for level in range(len(BY_NAME[name].levels)):
        once = corrupt(images, name, level, seed=0)
        assert once.shape == images.shape
        assert once.dtype == np.uint8
        assert np.array_equal(once, corrupt(images, name, level, seed=0))


@pytest.mark.parametrize("name", ["gaussian_noise", "rotate"])
def test_the_seed_changes_only_the_random_draws(images, name):
    assert not np.array_equal(corrupt(images, name, 1, seed=0), corrupt(images, name, 1, seed=1))


@pytest.mark.parametrize("name", NAMES)
def test_every_severity_changes_the_picture_more_than_the_one_before(images, name):
    distances = [distance(corrupt(images, name, level), images) for level in range(len(BY_NAME[name].levels))]
    assert distances[0] > 0
    assert distances == sorted(distances), distances
    assert len(set(distances)) == len(distances)


def test_full_grayscale_has_equal_channels_and_half_grayscale_keeps_colour(images):
    gray = corrupt(images, "grayscale", BY_NAME["grayscale"].levels.index(1.0)).astype(int)
    assert np.array_equal(gray[..., 0], gray[..., 1])
    assert np.array_equal(gray[..., 1], gray[..., 2])
    half = corrupt(images, "grayscale", 0).astype(int)
    assert np.abs(half[..., 0] - half[..., 2]).max() > 10


@pytest.mark.parametrize("name", ["darker", "brighter"])
def test_brightness_scales_every_value_by_its_factor_and_clips(images, name):
    for level, factor in enumerate(BY_NAME[name].levels):
        expected = np.clip(images.astype(np.float64) * factor, 0, 255)
        assert np.abs(corrupt(images, name, level) - expected).max() <= 0.5
    assert corrupt(images, "brighter", 2).max() == 255  # over-exposed highlights saturate


def test_contrast_keeps_the_mean_and_shrinks_the_spread_by_its_factor(images):
    for level, factor in enumerate(BY_NAME["contrast"].levels):
        low = corrupt(images, "contrast", level).astype(np.float64)
        assert np.allclose(low.mean(axis=(1, 2, 3)), images.mean(axis=(1, 2, 3)), atol=0.5)
        assert np.allclose(low.std(axis=(1, 2, 3)), images.std(axis=(1, 2, 3)) * factor, atol=0.5)


def test_pixelation_leaves_blocks_of_one_colour(images):
    level = BY_NAME["pixelate"].levels.index(16)  # 32 -> 16 -> 32: blocks of 2x2
    blocks = corrupt(images, "pixelate", level).reshape(len(images), 16, 2, 16, 2, 3)
    assert (blocks == blocks[:, :, :1, :, :1]).all()


def test_noise_has_the_standard_deviation_of_its_level():
    grey = np.full((4, 32, 32, 3), 128, np.uint8)
    for level, sigma in enumerate(BY_NAME["gaussian_noise"].levels):
        noise = corrupt(grey, "gaussian_noise", level).astype(np.float64) - 128
        assert abs(noise.std() - sigma * 255) < 0.05 * sigma * 255


def test_rotation_turns_the_picture_without_black_corners():
    stripes = np.zeros((2, 32, 32, 3), np.uint8)
    stripes[:, :, ::4] = 255  # vertical lines: a turned picture has slanted ones
    turned = corrupt(stripes, "rotate", 2).astype(int)
    assert not np.array_equal(turned, stripes)
    assert turned[:, :, ::4].mean() < 200  # the lines left their columns
    bright = np.full((2, 32, 32, 3), 200, np.uint8)
    assert corrupt(bright, "rotate", 2).min() >= 199  # mirrored padding, no black wedges

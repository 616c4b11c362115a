"""JPEGs of exactly the input size skip Pillow (serve/jpeg_fast_path.py) with the same pixels; anything that could
decode differently, or fail, still goes through Pillow, with the same answer or refusal as before."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from contract.model_file import RESIZE_CENTER_CROP
from serve.imaging import CorruptImage, decode_if_cheap, to_model_input
from serve.jpeg_fast_path import decode_exact_size

SIZE = (32, 32)
OPTIONS = {"size": SIZE, "policy": RESIZE_CENTER_CROP, "max_pixels": 10**7}


def jpeg(pixels: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    mode = "L" if pixels.ndim == 2 else "RGB"
    Image.fromarray(pixels, mode).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def noisy(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (shape[0] // 4, shape[1] // 4, *shape[2:]), dtype=np.uint8)
    return np.repeat(np.repeat(smooth, 4, axis=0), 4, axis=1) ^ rng.integers(0, 24, shape, dtype=np.uint8)


@pytest.mark.parametrize(
    "save",
    [{"quality": 75}, {"quality": 95, "subsampling": 0}, {"quality": 50, "subsampling": 1}, {"quality": 90}],
    ids=["q75-420", "q95-444", "q50-422", "q90"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fast_path_gives_pillows_pixels(save, seed):
    data = jpeg(noisy((32, 32, 3), seed), **save)
    fast = decode_exact_size(data, SIZE)
    assert fast is not None, "a plain JPEG of the input size takes the fast path"
    np.testing.assert_array_equal(fast, to_model_input(data, **OPTIONS))
    picture = decode_if_cheap(data, **OPTIONS)
    np.testing.assert_array_equal(picture.pixels, fast)
    assert picture.upload == {"format": "JPEG", "width": 32, "height": 32}


def test_a_grey_jpeg_gives_pillows_pixels():
    data = jpeg(noisy((32, 32)), quality=80)
    fast = decode_exact_size(data, SIZE)
    assert fast is not None
    assert fast.shape == (32, 32, 3)
    np.testing.assert_array_equal(fast, to_model_input(data, **OPTIONS))


def with_exif(data: bytes, orientation: int | None = 6) -> bytes:
    """`data` saved again with an EXIF block; orientation 6: turn 90 degrees to be upright; None: no such tag."""
    image = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x010F] = "a phone"  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [None, 1], ids=["no-orientation", "upright"])
def test_exif_that_turns_nothing_keeps_the_fast_path(orientation):
    data = with_exif(jpeg(noisy((32, 32, 3))), orientation)
    fast = decode_exact_size(data, SIZE)
    assert fast is not None
    np.testing.assert_array_equal(fast, to_model_input(data, **OPTIONS))


def cmyk(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert("CMYK").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda: with_exif(jpeg(noisy((32, 32, 3))), 6),  # EXIF orientation: Pillow turns it upright
        lambda: with_exif(jpeg(noisy((32, 32, 3))), 3),  # upside down
        lambda: cmyk(noisy((32, 32, 3))),  # four components (Adobe marker)
        lambda: jpeg(noisy((32, 48, 3))),  # another size: cropped and resized
        lambda: jpeg(noisy((32, 32, 3)), progressive=True),  # not sequential
    ],
    ids=["exif-orientation-6", "exif-orientation-3", "cmyk", "other-size", "progressive"],
)
def test_what_could_decode_differently_goes_through_pillow(make):
    data = make()
    assert decode_exact_size(data, SIZE) is None
    picture = decode_if_cheap(data, **OPTIONS)
    expected = to_model_input(data, **OPTIONS)
    if picture is not None:  # still decoded inline, by Pillow
        np.testing.assert_array_equal(picture.pixels, expected)


def test_a_truncated_jpeg_is_refused_as_before():
    data = jpeg(noisy((32, 32, 3)), quality=90)
    broken = data[: len(data) // 2]
    assert decode_exact_size(broken, SIZE) is None
    with pytest.raises(CorruptImage, match="could not be decoded"):
        decode_if_cheap(broken, **OPTIONS)

"""Decoding: EXIF orientation, every mode to RGB, JPEG draft for big photos, and the resize policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from serve.imaging import (
    INLINE_MAX_BYTES,
    CorruptImage,
    ImageRejected,
    NotAnImage,
    center_crop_resize,
    decode_if_cheap,
    load,
    open_image,
    prepare,
    to_model_input,
    to_rgb,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def decode(data: bytes, *, min_side: int, max_pixels: int) -> Image.Image:
    """Bytes -> an upright image, as the service decodes an upload before preparing it."""
    return load(open_image(data, max_pixels=max_pixels), min_side=min_side)


def with_orientation(image: Image.Image, fmt: str, orientation: int, encode) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "TIFF"])
def test_exif_orientation_is_applied(client, encode, two_tone, fmt):
    # Stored upside down (blue on top) with orientation 3 (rotate 180): upright, red is on top.
    stored = two_tone(top=BLUE, bottom=RED)
    plain = encode(stored, fmt)
    rotated = with_orientation(stored, fmt, 3, encode)
    assert client.post("/classify", content=plain).json()["label"] == "bird"  # blue top, as stored
    assert client.post("/classify", content=rotated).json()["label"] == "airplane"  # red top, as shown


def test_exif_rotation_90_swaps_the_axes(encode, two_tone):
    # 64x48 stored, orientation 6 (rotate 90 clockwise to display): displayed 48x64
    data = with_orientation(two_tone(size=(64, 48)), "JPEG", 6, encode)
    assert decode(data, min_side=32, max_pixels=10**8).size == (48, 64)


def pixels(data: bytes) -> np.ndarray:
    """The model input for a square upload, at the upload's own size (so no resampling blurs the check)."""
    image = decode(data, min_side=8, max_pixels=10**8)
    assert image.width == image.height
    return prepare(image, size=image.size, policy="center-crop-resize")


def test_rgba_alpha_is_composited_on_white(encode):
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 4, 8))  # left half fully transparent black
    out = pixels(encode(image, "PNG"))
    assert out.shape == (8, 8, 3)
    assert (out[:, :4] == WHITE).all()  # not black: transparent means background
    assert (out[:, 4:] == RED).all()


def test_half_transparent_blends_with_white(encode):
    out = pixels(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), "PNG"))
    assert np.allclose(out, 127, atol=1)


def test_la_mode(encode):
    out = pixels(encode(Image.new("LA", (4, 4), (0, 0)), "PNG"))
    assert (out == 255).all()


def test_palette_with_transparency(encode):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 2, 4))
    data = encode(image, "GIF", transparency=0)
    out = pixels(data)
    assert (out[:, :2] == WHITE).all()
    assert (out[:, 2:] == RED).all()


def test_palette_without_transparency(encode):
    image = Image.new("RGB", (4, 4), BLUE).convert("P")
    assert (pixels(encode(image, "PNG")) == BLUE).all()


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(encode, fmt):
    out = pixels(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), fmt))  # pure red in CMYK
    assert np.allclose(out.reshape(-1, 3).mean(0), RED, atol=3)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(encode, fmt):
    values = np.array([[0, 257 * 64, 257 * 128, 65535]] * 4, dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    out = pixels(encode(image, fmt))
    assert out[0, :, 0].tolist() == [0, 64, 128, 255]  # a plain convert would clip all but 0 to 255
    assert (out[..., 0] == out[..., 2]).all()


MODES = [
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "F",
    "I;16",
    "I;16B",
    "I;16L",
]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_rgb(mode):
    assert to_rgb(Image.new(mode, (4, 3))).mode == "RGB"
    out = prepare(Image.new(mode, (40, 30)), size=(8, 8), policy="center-crop-resize")
    assert out.shape == (8, 8, 3)
    assert out.dtype == np.uint8


def test_resizing_before_conversion_keeps_alpha_right():
    # Red with a transparent left half, downscaled: the edge blends towards white, never towards black.
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 32, 64))
    out = prepare(image, size=(4, 4), policy="center-crop-resize").astype(int)
    assert (out[:, :, 0] >= 254).all()  # red channel: white or red everywhere, no dark fringe
    assert (out[:, 0] == 255).all()
    assert (out[:, 3] == RED).all()


def test_large_jpeg_decodes_at_reduced_scale(encode):
    photo = Image.new("RGB", (4000, 3000), (0, 128, 255))  # 12 MP
    data = encode(photo, "JPEG", quality=80)
    image = decode(data, min_side=32, max_pixels=50_000_000)
    assert image.size == (500, 375)  # 1/8 DCT scale: 64x fewer pixels decoded, still >= 32 a side
    assert min(decode(data, min_side=400, max_pixels=50_000_000).size) >= 400  # never below what is needed


def test_large_jpeg_end_to_end(client, encode):
    photo = Image.new("RGB", (4000, 3000), RED)
    response = client.post("/classify", content=encode(photo, "JPEG", quality=80))
    assert response.status_code == 200
    assert response.json()["label"] == "airplane"


def test_center_crop_resize_policy():
    image = Image.new("RGB", (300, 100), BLUE)
    image.paste(RED, (100, 0, 200, 100))
    out = center_crop_resize(image, (32, 16))  # (H, W)
    assert out.size == (16, 32)
    assert (np.asarray(out) == RED).all()


def test_model_input_shape_and_type(encode):
    out = to_model_input(
        encode(Image.new("RGB", (640, 480), RED), "PNG"), size=(32, 32), policy="center-crop-resize", max_pixels=10**8
    )
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.uint8
    assert (out == RED).all()


def test_animated_gif_uses_the_first_frame(encode):
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert (pixels(data) == RED).all()


def test_unreadable_exif_only_loses_the_orientation(encode, monkeypatch):
    def broken(image, *, in_place=False):
        raise SyntaxError("bad EXIF")

    monkeypatch.setattr("serve.imaging.ImageOps.exif_transpose", broken)
    data = with_orientation(Image.new("RGB", (16, 12), RED), "JPEG", 6, encode)
    assert decode(data, min_side=16, max_pixels=10**8).size == (16, 12)  # as stored, not rotated


def test_zero_pixels_wanted_is_the_uploads_fault():
    with pytest.raises(ImageRejected) as error:
        decode(b"GIF89a" + b"\0" * 20, min_side=8, max_pixels=10**8)
    assert type(error.value) in (NotAnImage, CorruptImage)  # answered 415 or 422


@pytest.mark.parametrize(
    ("size", "fmt", "save", "inline"),
    [
        ((32, 32), "JPEG", {}, True),  # a CIFAR-size upload
        ((128, 128), "PNG", {}, True),
        ((129, 128), "PNG", {}, False),  # over INLINE_MAX_PIXELS
        ((64, 64), "JPEG", {"progressive": True}, False),  # scans a crafted file can multiply
        ((32, 32), "AVIF", {}, False),  # an AV1 decoder starts threads per image
        ((640, 480), "JPEG", {}, False),
    ],
)
def test_only_cheap_uploads_are_decoded_inline_and_to_the_same_pixels(encode, two_tone, size, fmt, save, inline):
    data = encode(two_tone(size=size), fmt, **save)
    options = {"size": (32, 32), "policy": "center-crop-resize", "max_pixels": 10**8}
    cheap = decode_if_cheap(data, **options)
    assert (cheap is not None) == inline
    if inline:
        np.testing.assert_array_equal(cheap.pixels, to_model_input(data, **options))


def test_a_big_body_is_not_even_opened_inline(encode):
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 4), dtype=np.uint8)
    data = encode(Image.fromarray(noise, "RGBA"), "PNG")  # 128x128 but its bytes are over INLINE_MAX_BYTES
    assert len(data) > INLINE_MAX_BYTES
    assert decode_if_cheap(data, size=(32, 32), policy="center-crop-resize", max_pixels=10**8) is None


def test_inline_decoding_fails_like_the_threaded_one():
    with pytest.raises(NotAnImage):  # answered 415
        decode_if_cheap(b"not an image", size=(32, 32), policy="center-crop-resize", max_pixels=10**8)

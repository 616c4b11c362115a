"""Untrusted bytes -> the model's uint8 [H, W, 3] input: decode safely, orient, make RGB, apply the resize policy."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from contract.model_file import RESIZE_CENTER_CROP
from serve.formats import DECODE_BYTES_PER_PIXEL, DECODE_FIXED_BYTES, PILLOW_FORMATS
from serve.inline_decode import INLINE_MAX_BYTES, INLINE_MAX_PIXELS, PLAIN_CHECKS, plain_enough
from serve.jpeg_fast_path import decode_exact_size

# Only the decoders of serve.formats see untrusted bytes. (The JPEG opener also returns "MPO", the multi-picture
# JPEGs many phones write.)
FORMATS = PILLOW_FORMATS
JPEG_FORMATS = ("JPEG", "MPO")
PILLOW_NAME = {"MPO": "JPEG"}  # the format of serve.formats that each other name Pillow reports belongs to
# AVIF decodes through YUV planes of up to 16 bits a sample before Pillow gets RGB(A): 610 MB at the peak for an
# 8-bit 48-MP RGBA AVIF against 460 MB as a PNG, and about 17 bytes a pixel at 12 bits. Half the pixel budget keeps
# its worst case under the other formats' (docs/serving.md, how a picture is handled).
PIXEL_BUDGET_DIVISOR = {"AVIF": 2}
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Modes that Pillow's bilinear resize filters linearly (RGBA and LA with premultiplied alpha).
RESIZABLE_MODES = ("RGB", "RGBA", "L", "LA", "F", *SIXTEEN_BIT_MODES)

# Our own MAX_PIXELS check runs before any pixel is decoded; Pillow's warning would only add noise.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class ImageRejected(Exception):
    """Bytes that do not make a picture the model can see: the upload's fault, never the server's. The message is
    the one-line detail a client reads; serve.routes answers each kind with its status and error code."""


class NotAnImage(ImageRejected):
    """Not an image, or a format the service does not read."""


class CorruptImage(ImageRejected):
    """A format the service reads, but corrupt or truncated."""


class TooManyPixels(ImageRejected):
    """More pixels than the budget (a decompression bomb), refused before they are decoded."""


def center_crop_resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop to a square, then resize bilinearly to size (H, W)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop first: resize(box=...) would let the filter reach pixels outside the square.
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size[1], size[0]), Image.Resampling.BILINEAR)


RESIZE_POLICIES: dict[str, Callable[[Image.Image, tuple[int, int]], Image.Image]] = {
    RESIZE_CENTER_CROP: center_crop_resize,
}


class Picture(NamedTuple):
    """A decoded upload: what the model sees, and what the upload was (for the prediction log)."""

    pixels: np.ndarray  # the model's uint8 [H, W, 3] input
    upload: dict[str, Any]  # the format and the width and height its header declares (upload_facts)


def to_model_input(data: bytes, *, size: tuple[int, int], policy: str, max_pixels: int) -> np.ndarray:
    return model_input(open_image(data, max_pixels=max_pixels), size=size, policy=policy)


def picture(image: Image.Image, *, size: tuple[int, int], policy: str) -> Picture:
    """An opened (header-only) image -> its Picture: the header's facts first, before decoding changes its size."""
    facts = upload_facts(image)
    return Picture(model_input(image, size=size, policy=policy), facts)


def model_input(image: Image.Image, *, size: tuple[int, int], policy: str) -> np.ndarray:
    """An opened (header-only) image -> the model's uint8 [H, W, 3]: decode the pixels, then prepare them."""
    image = load(image, min_side=max(size))
    try:
        return prepare(image, size=size, policy=policy)
    except Exception as exc:  # a decoded mode Pillow cannot convert is the upload's problem, not a server fault
        raise _corrupt(exc) from None


def upload_facts(image: Image.Image) -> dict[str, Any]:
    """The format (serve.formats' name) and the width and height its header declares, before any draft or turn."""
    width, height = image.size
    return {"format": PILLOW_NAME.get(image.format, image.format), "width": width, "height": height}


def prepare(image: Image.Image, *, size: tuple[int, int], policy: str) -> np.ndarray:
    """An upright image in any mode -> the model's uint8 [H, W, 3]."""
    # Resize before converting to RGB: the conversions then run on a few thousand pixels, not on the full
    # upload (for a 48-MP PNG with alpha that halves the peak memory). _resizable() leaves only modes that
    # Pillow filters linearly (alpha premultiplied), so the order changes nothing beyond rounding.
    small = RESIZE_POLICIES[policy](_resizable(image), size)
    return np.asarray(to_rgb(small), dtype=np.uint8)


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Read the header only: a format we decode, and at most max_pixels declared. No pixel is decoded yet.
    Every failure here and in load() is an ImageRejected: TooManyPixels, NotAnImage or CorruptImage."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(str(exc)) from None
    except UnidentifiedImageError:
        signature = _signature(data)
        if signature is not None:  # the right magic bytes, then an unreadable header: a broken file, not another kind
            raise CorruptImage(f"the {signature} image's header could not be read") from None
        raise NotAnImage(f"not a readable image; send one of {', '.join(FORMATS)}") from None
    except Exception as exc:  # Pillow's plugins raise many types for a malformed header
        raise _corrupt(exc) from None

    width, height = image.size
    limit = max_pixels // PIXEL_BUDGET_DIVISOR.get(image.format, 1)
    if width * height > limit:
        image.close()
        scope = f" for {image.format}" if limit != max_pixels else ""
        raise _too_many_pixels(f"{width}x{height} is {width * height} pixels, the limit{scope} is {limit}")
    return image


def _signature(data: bytes) -> str | None:
    """The format whose magic bytes `data` starts with (Pillow's own checks), if it is one we read."""
    prefix = data[:16]  # what Image.open hands the checks
    for name in FORMATS:
        accept = Image.OPEN.get(name, (None, None))[1]
        if accept is not None and accept(prefix) is True:  # a string means "recognised, but no decoder here"
            return name
    return None


def decode_if_cheap(data: bytes, *, size: tuple[int, int], policy: str, max_pixels: int) -> Picture | None:
    """The Picture when decoding `data` costs less than handing it to a worker thread, else None: a small body
    whose structure is plain (serve.inline_decode) and whose header declares a thumbnail. Bytes of no format we
    read are refused right here, which costs nothing."""
    if len(data) > INLINE_MAX_BYTES:
        return None
    signature = _signature(data)
    if signature is not None and not plain_enough(signature, data):
        return None
    if signature == "JPEG" and (pixels := decode_exact_size(data, size)) is not None:
        # Exactly the input size: the centre crop and resize would change nothing (benchmarks/request-path/).
        return Picture(pixels, {"format": "JPEG", "width": size[1], "height": size[0]})
    image = open_image(data, max_pixels=max_pixels)
    width, height = image.size
    if width * height > INLINE_MAX_PIXELS or image.format not in PLAIN_CHECKS:  # an MPO, say
        image.close()
        return None
    return picture(image, size=size, policy=policy)


def decode_cost(image: Image.Image) -> int:
    """The most bytes decoding this opened image takes at the peak: its format's measured cost per declared pixel
    (serve.formats) times its pixels, plus the fixed part every decode has."""
    width, height = image.size
    per_pixel = DECODE_BYTES_PER_PIXEL[PILLOW_NAME.get(image.format, image.format)]
    return int(per_pixel * width * height) + DECODE_FIXED_BYTES


def load(image: Image.Image, *, min_side: int) -> Image.Image:
    """Decode an opened image's pixels and make it upright; its shorter side stays at least min_side (when the
    source's was): a JPEG decodes at the smallest DCT scale that keeps it."""
    try:
        if image.format in JPEG_FORMATS:
            # DCT scaling: a 12-MP photo decodes at 1/2..1/8 scale, never below what the model needs.
            image.draft("RGB", (min_side, min_side))
        image.load()
        _make_upright(image)
        return image
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(str(exc)) from None
    except Exception as exc:  # truncated or corrupt pixel data surfaces as many exception types
        raise _corrupt(exc) from None


def _make_upright(image: Image.Image) -> None:
    # Unreadable EXIF only loses the orientation; the pixels are fine.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of a possibly huge image


def _resizable(image: Image.Image) -> Image.Image:
    """Modes Pillow resizes only with NEAREST (palette, 1-bit) or in non-linear colour spaces -> RGB(A)/L/LA."""
    if image.mode in RESIZABLE_MODES:
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "La":  # premultiplied alpha, which Pillow converts only to LA
        return image.convert("LA")
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: 16-bit scaled down (not clipped), floating point read as 0-1 (or 0-255),
    transparency composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode == "F":
        image = _float_to_grey(image)
    if image.mode == "La":  # premultiplied alpha, which Pillow converts only to LA
        image = image.convert("LA")
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.uint32)
        image = Image.fromarray(((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8), "L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _float_to_grey(image: Image.Image) -> Image.Image:
    """A floating-point picture (a float TIFF; Pillow's mode F) -> L. Pillow's own conversion clips at 255, so a
    picture of values 0-1, the usual convention, came out black. 0-1 is scaled up, 0-255 kept; the resize may
    overshoot either range a little. Anything else cannot be told apart from data that is not a picture: refused."""
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not np.isfinite(values).all() or low < -0.05 * 255 or high > 1.05 * 255:
        raise CorruptImage("a floating-point picture must hold values from 0 to 1 (or 0 to 255); this one does not")
    scale = 255.0 if low >= -0.05 and high <= 1.05 else 1.0
    return Image.fromarray(np.clip(np.round(values * scale), 0, 255).astype(np.uint8), "L")


def _too_many_pixels(detail: str) -> TooManyPixels:
    return TooManyPixels(f"image too large to decode: {detail}")


def _corrupt(exc: Exception) -> CorruptImage:
    return CorruptImage(f"the image could not be decoded ({type(exc).__name__}: {exc})")

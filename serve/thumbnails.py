"""The thumbnail: the model's exact input (uint8 [H, W, 3], 32x32 for CIFAR-10) as a small PNG in base64, which the
answer's fragment shows (so a person sees what the model saw) and which feedback may carry back, with consent.

What comes back is untrusted: base64 of at most THUMBNAIL_MAX_CHARS, a PNG made only of pixel chunks (the plain
structure of serve/inline_decode.py: no text, ICC or EXIF chunk to inflate or parse), exactly the model's input
size, and re-encoded here so nothing of it but the pixels reaches the log.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image

from contract.prediction_log import THUMBNAIL_MAX_CHARS
from serve.inline_decode import plain_enough

DATA_URL_PREFIX = "data:image/png;base64,"


class BadThumbnail(ValueError):
    """Not a PNG of the model's input size; the message says what it is instead."""


def thumbnail_base64(pixels: np.ndarray) -> str:
    """uint8 [H, W, 3] -> base64 PNG (about 3 KB for 32x32; encoded in a few hundred microseconds)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB").save(buffer, "PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def checked_thumbnail(text: object, size: tuple[int, int]) -> np.ndarray:
    """A thumbnail from a client -> its pixels (uint8 [H, W, 3]), or BadThumbnail. `size` is (H, W). Log them only
    re-encoded (thumbnail_base64), so nothing of the client's file but the pixels reaches the log."""
    if not isinstance(text, str):
        raise BadThumbnail("`thumbnail` must be a string: the base64 PNG of the picture the model saw")
    if text.startswith(DATA_URL_PREFIX):
        text = text[len(DATA_URL_PREFIX) :]
    if not 0 < len(text) <= THUMBNAIL_MAX_CHARS:
        raise BadThumbnail(f"`thumbnail` must be 1 to {THUMBNAIL_MAX_CHARS} characters of base64")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadThumbnail("`thumbnail` is not base64") from None
    if not plain_enough("PNG", data):
        raise BadThumbnail("`thumbnail` is not a PNG of pixels only")
    height, width = size
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if image.size != (width, height):
                raise BadThumbnail(f"`thumbnail` is {image.size[0]}x{image.size[1]}, the model saw {width}x{height}")
            image.load()
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except BadThumbnail:
        raise
    except Exception as exc:  # Pillow raises many types for a broken PNG
        raise BadThumbnail(f"`thumbnail` could not be decoded ({type(exc).__name__})") from None
    return pixels

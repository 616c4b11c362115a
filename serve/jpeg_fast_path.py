"""JPEG thumbnails of exactly the model's input size decoded by libjpeg-turbo through simplejpeg, without Pillow: the
same pixels as Pillow's path (the same library, with the exact integer IDCT and fancy upsampling in both; a test holds
every one of the 10,000 test JPEGs to it), in about a tenth of the time (benchmarks/request-path/README.md). Only
the plainest files take it: sequential, one scan, JFIF or comments as their only metadata (no EXIF orientation, no
colour profile, no Adobe transform), grey or three components. Everything else, a damaged file included, goes the
way it always went, so refusals keep their words."""

from __future__ import annotations

import struct

import numpy as np
import simplejpeg

from serve.inline_decode import jpeg_layout

PLAIN_MARKERS = frozenset({0xE0, 0xFE})  # APP0 (JFIF) and COM: nothing that turns, tags or colour-manages pixels


def decode_exact_size(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """uint8 [H, W, 3] when `data` is a plain JPEG of exactly `size` (H, W), else None."""
    try:
        layout = jpeg_layout(data)
    except (IndexError, struct.error):  # truncated before its scan
        return None
    if layout is None or (layout.height, layout.width) != size or layout.components not in (1, 3):
        return None
    if not layout.markers <= PLAIN_MARKERS:
        return None
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False, strict=True)
    except ValueError:  # corrupt or truncated data: Pillow's path says what is wrong with it
        return None
    return pixels if pixels.shape == (*size, 3) else None

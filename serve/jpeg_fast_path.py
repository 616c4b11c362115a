"""JPEG thumbnails of exactly the model's input size decoded by libjpeg-turbo through simplejpeg, without Pillow: the
same pixels as Pillow's path (the same library, with the exact integer IDCT and fancy upsampling in both; a test holds
every one of the 10,000 test JPEGs to it), in about a tenth of the time (benchmarks/request-path/README.md). Only
the plainest files take it: sequential, one scan, grey or three components, with JFIF, comments or EXIF as their only
metadata, and an EXIF orientation, if any, of 1 (upright: Pillow would not turn it); no colour profile, no Adobe
transform. Everything else, a damaged file included, goes the way it always went, so refusals keep their words."""

from __future__ import annotations

import struct

import numpy as np
import simplejpeg

from serve.inline_decode import jpeg_layout

PLAIN_MARKERS = frozenset({0xE0, 0xE1, 0xFE})  # APP0 (JFIF), APP1 (EXIF, XMP) and COM
ORIENTATION = 0x0112  # EXIF's orientation tag, in the first IFD
UPRIGHT = 1


def exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of EXIF's first IFD (the one Pillow's exif_transpose reads), None when absent; raises
    struct.error or ValueError for a structure it cannot read."""
    order = {b"II": "<", b"MM": ">"}[tiff[:2]]
    (offset,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    for index in range(count):
        tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, offset + 2 + 12 * index)
        if tag == ORIENTATION:
            if kind != 3:  # SHORT, as the standard has it; any other type is Pillow's to read
                raise ValueError(f"orientation of type {kind}")
            return struct.unpack_from(order + "H", value)[0]
    return None


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
        if layout.exif is not None and exif_orientation(layout.exif) not in (None, UPRIGHT):
            return None  # Pillow turns it upright
    except (KeyError, IndexError, ValueError, struct.error):  # an EXIF block it cannot read: Pillow decides
        return None
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False, strict=True)
    except ValueError:  # corrupt or truncated data: Pillow's path says what is wrong with it
        return None
    return pixels if pixels.shape == (*size, 3) else None

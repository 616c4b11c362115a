"""Which uploads are cheap enough to decode right on the event loop: small, and plain in what they contain.

A file's size says little about its decoding cost: a 63-KB PNG can carry 60 zTXt chunks that inflate to 1 MB each,
a small JPEG hundreds of progressive scans or a 64-KB EXIF block that Pillow parses in Python, a GIF thousands of
frames or sub-blocks. So the rule reads the file's structure first (lengths and types only, from the bytes, never
decompressing anything) and lets through only what the decoder turns into pixels with no other work: anything else
goes to a decode thread. Every walk below is capped in steps: 2-130 us for a 64-KB file (GIF's sub-blocks the most),
against 0.8 s for decoding the 63-KB zTXt PNG (measured on a loaded 2-core machine).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# Small enough to decode on the event loop, where a round trip to a decode thread costs about as much (measured,
# 128x128 images: 0.3-1.1 ms, noisy lossy WebP the slowest).
INLINE_MAX_PIXELS = 128 * 128
INLINE_MAX_BYTES = 64 * 1024

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a plain PNG is made of; each step of the walk reads one chunk header.
PNG_PIXEL_CHUNKS = frozenset((b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"))
# Ancillary chunks Pillow reads as a few fixed fields, by their largest valid length. Text (tEXt/zTXt/iTXt), ICC
# profiles (iCCP, compressed), EXIF (eXIf, parsed in Python) and animation (acTL/fcTL/fdAT) are not among them.
PNG_SMALL_CHUNKS = {b"sRGB": 1, b"gAMA": 4, b"pHYs": 9, b"cHRM": 32, b"bKGD": 6, b"sBIT": 4}
PNG_MAX_CHUNKS = 64  # an encoder's IDATs are 8-64 KB each; thousands of tiny ones each cost a Python call

JPEG_SEQUENTIAL_FRAMES = frozenset((0xC0, 0xC1))  # baseline and extended sequential, Huffman-coded
JPEG_TABLES = frozenset((0xC4, 0xDB, 0xDD))  # DHT, DQT, DRI
JPEG_START_OF_SCAN = 0xDA
JPEG_MAX_SEGMENTS = 32  # a camera writes about 10 before the scan
# APPn and COM bytes in all: Pillow parses EXIF (APP1) and MPF (APP2) in Python, tag by tag, about 1 us a byte
# (a 3.6-KB EXIF of 300 tags added 3.7 ms on a loaded machine). JFIF's APP0 is 16 bytes; ICC profiles go to a thread.
JPEG_MAX_METADATA_BYTES = 1024

GIF_MAX_EXTENSIONS = 8
GIF_MAX_SUB_BLOCKS = 512  # 64 KiB of image data in the usual 255-byte sub-blocks is 257

WEBP_SIMPLE = frozenset((b"VP8 ", b"VP8L"))
WEBP_ALPHA_FLAG = 0x10  # the only VP8X feature allowed: no animation, ICC, EXIF or XMP
WEBP_STILL_CHUNKS = frozenset((b"ALPH", b"VP8 ", b"VP8L"))


def plain_enough(pillow_format: str, data: bytes) -> bool:
    """True when `data` (already known to be at most INLINE_MAX_BYTES, with the magic bytes of `pillow_format`)
    holds nothing but what its decoder turns into pixels. BMP, TIFF and AVIF never do: BMP's RLE decoder and
    TIFF's tag reader run in Python, and the AV1 decoder starts threads per image (0.9 ms for 32x32)."""
    check = PLAIN_CHECKS.get(pillow_format)
    try:
        return check is not None and check(data)
    except (IndexError, struct.error):  # truncated: the decode thread says why
        return False


def png_is_plain(data: bytes) -> bool:
    if not data.startswith(PNG_SIGNATURE):
        return False
    position = len(PNG_SIGNATURE)
    for index in range(PNG_MAX_CHUNKS):
        length, kind = struct.unpack_from(">I4s", data, position)
        if index == 0 and kind != b"IHDR":
            return False
        if kind not in PNG_PIXEL_CHUNKS and length > PNG_SMALL_CHUNKS.get(kind, -1):
            return False
        if kind == b"IEND":
            return True
        position += 12 + length  # length, type, data, CRC
    return False


class JpegLayout(NamedTuple):
    """What a plain JPEG's segments say before its scan."""

    height: int
    width: int
    components: int
    markers: frozenset[int]  # the APPn and COM markers it carries
    exif: bytes | None  # the first APP1 segment's payload that is EXIF (b"Exif\0\0" and a TIFF structure)


def jpeg_is_plain(data: bytes) -> bool:
    return jpeg_layout(data) is not None


def jpeg_layout(data: bytes) -> JpegLayout | None:
    """The layout of a sequential JPEG (not progressive, lossless or arithmetic) with one scan holding every
    component, few segments and little metadata; None for any other. A first scan without every component means more
    scans follow, which libjpeg buffers for the whole image, as it does for a progressive one."""
    if data[:2] != b"\xff\xd8":
        return None
    position, frame, metadata, markers, exif = 2, None, 0, set(), None
    for _ in range(JPEG_MAX_SEGMENTS):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker in JPEG_SEQUENTIAL_FRAMES:
            frame = struct.unpack_from(">HHB", data, position + 5)  # after length and precision
        elif marker == JPEG_START_OF_SCAN:
            if frame is None or data[position + 4] != frame[2]:
                return None
            return JpegLayout(*frame, frozenset(markers), exif)
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            metadata += length
            markers.add(marker)
            payload = data[position + 4 : position + 2 + length]
            if marker == 0xE1 and exif is None and payload.startswith(b"Exif\0\0"):
                exif = payload[6:]
            if metadata > JPEG_MAX_METADATA_BYTES:
                return None
        elif marker not in JPEG_TABLES:  # another frame type, or a marker out of place
            return None
        position += 2 + length
    return None


def gif_is_plain(data: bytes) -> bool:
    """One frame and a few extensions."""
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return False
    position = 13 + _gif_colour_table(data[10])
    frames, extensions, budget = 0, 0, [GIF_MAX_SUB_BLOCKS]
    while True:
        introducer = data[position]
        if introducer == 0x3B:  # trailer
            return frames == 1
        if introducer == 0x21:
            extensions += 1
            if extensions > GIF_MAX_EXTENSIONS:
                return False
            position = _skip_gif_sub_blocks(data, position + 2, budget)
        elif introducer == 0x2C and frames == 0:
            frames = 1
            position += 10 + _gif_colour_table(data[position + 9]) + 1  # descriptor, local table, LZW code size
            position = _skip_gif_sub_blocks(data, position, budget)
        else:  # a second frame, or not GIF structure
            return False
        if position < 0:
            return False


def _gif_colour_table(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _skip_gif_sub_blocks(data: bytes, position: int, budget: list[int]) -> int:
    """The position after a run of sub-blocks, or -1 once the walk has taken too many steps."""
    while (size := data[position]) != 0:
        budget[0] -= 1
        if budget[0] < 0:
            return -1
        position += 1 + size
    return position + 1


def webp_is_plain(data: bytes) -> bool:
    """A still image: simple lossy or lossless, or extended with nothing but alpha."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    first = data[12:16]
    if first in WEBP_SIMPLE:
        return True
    if first != b"VP8X" or data[20] & ~WEBP_ALPHA_FLAG:
        return False
    position = 12 + 8 + 10  # the VP8X chunk: header and 10 bytes of flags and canvas size
    for _ in range(2):  # ALPH then VP8, or VP8L alone
        kind = data[position : position + 4]
        if kind not in WEBP_STILL_CHUNKS:
            return False
        if kind != b"ALPH":
            return True
        (length,) = struct.unpack_from("<I", data, position + 4)
        position += 8 + length + (length & 1)  # chunks are padded to an even length
    return False


PLAIN_CHECKS = {"PNG": png_is_plain, "JPEG": jpeg_is_plain, "GIF": gif_is_plain, "WEBP": webp_is_plain}

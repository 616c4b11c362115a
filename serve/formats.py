"""The picture formats the service reads: one table for the decoder (serve.imaging), the API description
(serve.openapi) and the page (GET /site-config: its file input's accept list and the hint under it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFormat:
    pillow: str  # Pillow's name for it, as Image.open(formats=...) takes it
    name: str  # as people write it
    media_type: str
    extensions: tuple[str, ...]  # what a file picker should offer
    # The peak memory of decoding one through serve.imaging (open, load, orient, crop, resize) in bytes per pixel the
    # header declares, beyond DECODE_FIXED_BYTES: the worst of its modes, the peak resident set measured at 4, 8 and
    # 16 MP (tests/serve/decode_memory_probe.py), rounded up. serve.decode_budget reserves it before decoding.
    decode_bytes_per_pixel: float


# The decoders we expose to untrusted bytes; Pillow's many others stay unreachable. AVIF and WebP are what browsers
# save from the web; .jfif is how Windows names some of the JPEGs saved from a browser.
ACCEPTED_FORMATS = (
    # Progressive (or multi-scan) CMYK, where libjpeg keeps every coefficient: 8.1 at 16 MP; 4:2:0 RGB 3.1. A
    # baseline JPEG decodes drafted: 2 MB for 16 MP.
    ImageFormat("JPEG", "JPEG", "image/jpeg", (".jpg", ".jpeg", ".jfif"), 9),
    # RGBA, LA or a palette with transparency, EXIF-rotated: 11.3-11.6 above the fixed part (12.9-13.1 in all at
    # 16 MP): the image, its upright copy, the crop, the premultiplied crop. RGB 8.9, 16-bit RGBA 12.0.
    ImageFormat("PNG", "PNG", "image/png", (".png",), 13),
    # RGBA or RGB, lossy or lossless alike, EXIF-rotated: 18.8 above the fixed part (20.0 in all at 16 MP, 21.9 at
    # 8, 24.0 at 4): libwebp's two canvas buffers, a bytes copy of the frame, the image, its upright copy.
    ImageFormat("WEBP", "WebP", "image/webp", (".webp",), 20),
    # 8-bit RGBA, EXIF-rotated: 14.2 above the fixed part (15.8 in all at 16 MP). Deeper AVIFs decode through YUV
    # planes of 16 bits a sample, 4 more bytes a pixel with alpha, which Pillow cannot write to measure: the rest.
    ImageFormat("AVIF", "AVIF", "image/avif", (".avif",), 20),
    # A colour palette with transparency, made RGBA before the crop: 11.5 above the fixed part (13.0 at 16 MP).
    ImageFormat("GIF", "GIF", "image/gif", (".gif",), 13),
    # 8-bit RLE (a palette, made RGB before the crop): 7.5 above the fixed part (9.0 at 16 MP); 24/32-bit 6.5.
    ImageFormat("BMP", "BMP", "image/bmp", (".bmp",), 10),
    # RGBA or CMYK, EXIF-rotated: 10.5 above the fixed part (12.0 at 16 MP); a palette with alpha as PNG's.
    ImageFormat("TIFF", "TIFF", "image/tiff", (".tif", ".tiff"), 13),
)
# On top of every decode, whatever its size: the decoders' own state and the allocator's rounding (WebP at 4 MP
# needed 21 MB beyond its cost per pixel, PNG 16 MB).
DECODE_FIXED_BYTES = 24 * 1024 * 1024
PILLOW_FORMATS = tuple(fmt.pillow for fmt in ACCEPTED_FORMATS)
DECODE_BYTES_PER_PIXEL = {fmt.pillow: fmt.decode_bytes_per_pixel for fmt in ACCEPTED_FORMATS}


def describe_formats() -> list[dict[str, object]]:
    """The table as GET /site-config answers it."""
    return [
        {"name": fmt.name, "media_type": fmt.media_type, "extensions": list(fmt.extensions)} for fmt in ACCEPTED_FORMATS
    ]

"""The "cheap to decode inline" rule: only small files whose structure is plain are decoded on the event loop."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import anyio
import numpy as np
import pytest
from PIL import Image

from serve.app import create_app
from serve.imaging import decode_if_cheap, to_model_input
from serve.inline_decode import INLINE_MAX_BYTES, JPEG_MAX_METADATA_BYTES, PNG_MAX_CHUNKS, plain_enough
from tests.serve.asgi_scope import classify_scope

OPTIONS = {"size": (32, 32), "policy": "center-crop-resize", "max_pixels": 10**8}
RED = (255, 0, 0)


def chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_png_chunks(png: bytes, *extra: bytes) -> bytes:
    """The PNG with chunks inserted right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + b"".join(extra) + png[33:]


def text_bomb(png: bytes, chunks: int = 60, inflated: int = 1 << 20) -> bytes:
    """The issue's PNG: zTXt chunks that each inflate to `inflated` bytes (1 MB: 60 of them fit in 63 KB)."""
    ztxt = chunk(b"zTXt", b"k\0\0" + zlib.compress(b"\0" * inflated, 9))
    return with_png_chunks(png, *[ztxt] * chunks)


@pytest.fixture
def red_thumbnail(encode) -> bytes:
    return encode(Image.new("RGB", (32, 32), RED), "PNG")


def test_the_text_bomb_goes_to_a_thread(red_thumbnail):
    bomb = text_bomb(red_thumbnail)
    assert len(bomb) <= INLINE_MAX_BYTES  # its size alone would have let it through
    assert not plain_enough("PNG", bomb)
    assert decode_if_cheap(bomb, **OPTIONS) is None
    assert (to_model_input(bomb, **OPTIONS) == RED).all()  # still a valid picture, decoded in a thread


def noise(mode: str, side: int = 96) -> Image.Image:
    channels = len(mode)
    values = np.random.default_rng(0).integers(0, 256, (side, side, channels), dtype=np.uint8)
    return Image.fromarray(values if channels > 1 else values[..., 0], mode)


ORDINARY = [
    ("JPEG", "RGB", {}),
    ("JPEG", "L", {}),
    ("JPEG", "RGB", {"exif": Image.Exif()}),
    ("PNG", "RGB", {}),
    ("PNG", "RGBA", {}),
    ("PNG", "P", {}),
    ("PNG", "RGB", {"dpi": (72, 72)}),  # pHYs
    ("GIF", "P", {}),
    ("WEBP", "RGB", {"quality": 80}),
    ("WEBP", "RGBA", {"quality": 80}),  # extended: VP8X + ALPH + VP8
    ("WEBP", "RGB", {"lossless": True}),
    ("WEBP", "RGBA", {"lossless": True}),
]


@pytest.mark.parametrize(("fmt", "mode", "save"), ORDINARY)
def test_ordinary_thumbnails_still_decode_inline(encode, fmt, mode, save):
    image = noise("RGB").convert(mode) if mode == "P" else noise(mode)
    data = encode(image, fmt, **save)
    assert len(data) <= INLINE_MAX_BYTES
    cheap = decode_if_cheap(data, **OPTIONS)
    assert cheap is not None
    np.testing.assert_array_equal(cheap.pixels, to_model_input(data, **OPTIONS))


def webp_with_exif(encode) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 1
    return encode(noise("RGB", 32), "WEBP", exif=exif)


def animated(encode, fmt: str) -> bytes:
    return encode(noise("L", 16), fmt, save_all=True, append_images=[Image.new("L", (16, 16))])


def many_idat(png_rgb: bytes) -> bytes:
    """The same pixels, their zlib stream cut into more IDAT chunks than the rule walks."""
    start = png_rgb.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png_rgb[start : start + 4])
    stream = png_rgb[start + 8 : start + 8 + length]
    pieces = [stream[i : i + 8] for i in range(0, len(stream), 8)]
    assert len(pieces) > PNG_MAX_CHUNKS
    return png_rgb[:start] + b"".join(chunk(b"IDAT", p) for p in pieces) + chunk(b"IEND")


THREADED = {
    "PNG text": lambda png, encode: with_png_chunks(png, chunk(b"tEXt", b"Comment\0hello")),
    "PNG ICC profile": lambda png, encode: with_png_chunks(png, chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"x" * 999))),
    "PNG EXIF": lambda png, encode: with_png_chunks(png, chunk(b"eXIf", Image.Exif().tobytes())),
    "PNG unknown chunk": lambda png, encode: with_png_chunks(png, chunk(b"zzZz", b"!")),
    "PNG oversized pHYs": lambda png, encode: with_png_chunks(png, chunk(b"pHYs", b"\0" * 10)),
    "PNG in many IDATs": lambda png, encode: many_idat(png),
    "PNG truncated": lambda png, encode: png[:-20],
    "APNG": lambda png, encode: encode(noise("RGB", 16), "PNG", save_all=True, append_images=[noise("L", 16)]),
    "progressive JPEG": lambda png, encode: encode(noise("RGB", 32), "JPEG", progressive=True),
    "JPEG, big EXIF": lambda png, encode: encode(
        noise("RGB", 32), "JPEG", exif=b"Exif\0\0" + b"\0" * (JPEG_MAX_METADATA_BYTES + 1)
    ),
    "JPEG, many comments": lambda png, encode: b"\xff\xd8" + b"\xff\xfe\0\3x" * 40 + encode(noise("L", 8), "JPEG")[2:],
    "animated GIF": lambda png, encode: animated(encode, "GIF"),
    "animated WebP": lambda png, encode: animated(encode, "WEBP"),
    "WebP with EXIF": lambda png, encode: webp_with_exif(encode),
    "BMP": lambda png, encode: encode(noise("RGB", 32), "BMP"),
    "TIFF": lambda png, encode: encode(noise("RGB", 32), "TIFF"),
    "AVIF": lambda png, encode: encode(noise("RGB", 32), "AVIF"),
}


@pytest.mark.parametrize("kind", THREADED)
def test_anything_but_plain_structure_goes_to_a_thread(encode, kind):
    data = THREADED[kind](encode(noise("RGB", 32), "PNG"), encode)
    assert len(data) <= INLINE_MAX_BYTES
    assert decode_if_cheap(data, **OPTIONS) is None


# ---- through the app: a normal request is not held behind uploads that are dear to decode ----


async def post(app: Any, body: bytes) -> int:
    """One POST /classify straight through the ASGI interface; its status."""
    headers = [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())]
    scope = classify_scope(headers, state={})
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await anyio.sleep_forever()
        raise AssertionError  # unreachable

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_normal_request_is_not_held_behind_64_text_bombs(make_settings, red_thumbnail, anyio_backend):
    # 64 bombs each inflating 60 x 256 KB: decoded on the event loop, they ran one after another ahead of the
    # normal request (it finished after all of them); in decode threads, two at a time, it finishes among the first.
    bomb = text_bomb(red_thumbnail, inflated=256 * 1024)
    app = create_app(make_settings(queue_size=128, decode_concurrency=2))
    finished: list[str] = []

    async def send_bomb() -> None:
        assert await post(app, bomb) == 200
        finished.append("bomb")

    async def send_normal() -> None:
        assert await post(app, red_thumbnail) == 200
        finished.append("normal")

    with anyio.fail_after(120):
        async with app.router.lifespan_context(app), anyio.create_task_group() as group:
            for _ in range(64):
                group.start_soon(send_bomb)
            await anyio.sleep(0)  # every bomb has started before the normal request
            group.start_soon(send_normal)
    assert len(finished) == 65
    assert finished.index("normal") < 16, f"the normal request finished after {finished.index('normal')} bombs"

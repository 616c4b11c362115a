"""Peak memory of decoding one upload through the service's own path, in a process of its own.

    python -m tests.serve.decode_memory_probe webp-rgba-lossy 16        # case, megapixels -> one JSON line
    python -m tests.serve.decode_memory_probe webp-rgba-lossy 8 --app 256  # two at once through the app, 256-MiB budget

The child builds the file, frees everything it used to build it, resets the kernel's peak-RSS mark
(/proc/self/clear_refs) and then decodes the bytes as serve/ does (open + pixel check + load + orient + resize,
in a worker thread). The figure is the peak resident set above what the process held just before: it counts the
C decoders' allocations, which tracemalloc cannot see. The worst cases carry an EXIF orientation wherever the format
has one, since turning the picture upright copies it."""

from __future__ import annotations

import ctypes
import gc
import io
import json
import struct
import sys
import threading
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

ROTATE = 6  # EXIF orientation "rotate 90": exif_transpose makes a second full-size image


def _pattern(side: int, channels: int) -> np.ndarray:
    """A smooth, not constant picture: encoders stay fast, decoders do their full work."""
    ramp = np.arange(side, dtype=np.uint16)
    plane = ((ramp[:, None] + ramp[None, :]) // 8).astype(np.uint8)
    return np.repeat(plane[:, :, None], channels, axis=2) if channels > 1 else plane


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _pillow(mode: str, fmt: str, **options: object) -> Callable[[int], bytes]:
    def build(side: int) -> bytes:
        channels = {"L": 1, "P": 1, "1": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        array = _pattern(side, channels)
        if mode == "1":
            image = Image.fromarray(array).convert("1")
        elif mode == "P":
            image = Image.fromarray(array, "L").convert("P")
        else:
            image = Image.fromarray(array, mode if channels > 1 else "L")
        return _save(image, fmt, **options)

    return build


def _palette_with_alpha(fmt: str) -> Callable[[int], bytes]:
    """A colour palette with one transparent entry: decoded to RGBA, the dearest a palette gets."""

    def build(side: int) -> bytes:
        image = Image.fromarray(_pattern(side, 1), "L").convert("P")
        image.putpalette([channel for i in range(256) for channel in (i, 255 - i, (7 * i) % 256)])
        return _save(image, fmt, transparency=0, **({"exif": _exif(ROTATE)} if fmt == "PNG" else {}))

    return build


def _png16(channels: int) -> Callable[[int], bytes]:
    """A 16-bit-per-sample PNG, written by hand (Pillow writes 16 bits only for grey)."""

    def build(side: int) -> bytes:
        colour_type = {1: 0, 3: 2, 4: 6}[channels]
        row = (_pattern(side, channels).astype(">u2")[0] * 257).tobytes()
        raw = b"".join(b"\0" + row for _ in range(side))  # filter 0 on every row
        ihdr = struct.pack(">IIBBBBB", side, side, 16, colour_type, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 1)) + _chunk(b"IEND")

    return build


def _chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bmp_rle8(side: int) -> bytes:
    """An 8-bit RLE BMP (Pillow cannot write one): runs of 255 pixels, two bytes each."""
    rows = []
    for y in range(side):
        runs = b"".join(bytes((min(255, side - x), y % 256)) for x in range(0, side, 255))
        rows.append(runs + b"\0\0")  # end of line
    pixels = b"".join(rows) + b"\0\1"  # end of bitmap
    palette = b"".join(bytes((i, i, 255 - i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


ROTATED = {"exif": _exif(ROTATE)}
CASES: dict[str, Callable[[int], bytes]] = {
    "jpeg-baseline": _pillow("RGB", "JPEG", quality=90, **ROTATED),
    "jpeg-baseline-444": _pillow("RGB", "JPEG", quality=90, subsampling=0, **ROTATED),
    "jpeg-progressive": _pillow("RGB", "JPEG", quality=90, progressive=True, **ROTATED),
    "jpeg-progressive-444": _pillow("RGB", "JPEG", quality=90, progressive=True, subsampling=0, **ROTATED),
    "jpeg-progressive-cmyk": _pillow("CMYK", "JPEG", quality=90, progressive=True, **ROTATED),
    "png-rgb": _pillow("RGB", "PNG", compress_level=1, **ROTATED),
    "png-rgba": _pillow("RGBA", "PNG", compress_level=1, **ROTATED),
    "png-palette": _pillow("P", "PNG", compress_level=1, **ROTATED),
    "png-palette-alpha": _palette_with_alpha("PNG"),
    "png-la": _pillow("LA", "PNG", compress_level=1, **ROTATED),
    "png-rgb16": _png16(3),
    "png-rgba16": _png16(4),
    "webp-rgb-lossy": _pillow("RGB", "WEBP", quality=80, method=0, **ROTATED),
    "webp-rgba-lossy": _pillow("RGBA", "WEBP", quality=80, method=0, **ROTATED),
    "webp-rgb-lossless": _pillow("RGB", "WEBP", lossless=True, quality=0, method=0, **ROTATED),
    "webp-rgba-lossless": _pillow("RGBA", "WEBP", lossless=True, quality=0, method=0, **ROTATED),
    "avif-rgb": _pillow("RGB", "AVIF", quality=50, speed=10, **ROTATED),
    "avif-rgba": _pillow("RGBA", "AVIF", quality=50, speed=10, **ROTATED),
    "gif": _pillow("P", "GIF"),
    "gif-alpha": _palette_with_alpha("GIF"),
    "bmp-rgb": _pillow("RGB", "BMP"),
    "bmp-rgba": _pillow("RGBA", "BMP"),
    "bmp-rle8": _bmp_rle8,
    "tiff-rgb": _pillow("RGB", "TIFF", compression="tiff_deflate", **ROTATED),
    "tiff-rgba": _pillow("RGBA", "TIFF", compression="tiff_deflate", **ROTATED),
    "tiff-cmyk": _pillow("CMYK", "TIFF", compression="tiff_lzw", **ROTATED),
    "tiff-jpeg": _pillow("RGB", "TIFF", compression="jpeg", **ROTATED),
}


def _resident() -> tuple[int, int]:
    """(current, peak) resident set of this process, in bytes."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def _reset_peak() -> int:
    """Frees what can be freed, resets the peak mark to the current resident set, and returns it."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what building the file freed goes back to the kernel first
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    return _resident()[0]


def measure(data: bytes, *, max_pixels: int = 10**9) -> int:
    """Peak bytes above the current resident set while the service's decode path turns `data` into model input."""
    from serve.imaging import to_model_input

    before = _reset_peak()
    errors: list[BaseException] = []

    def decode() -> None:
        try:
            to_model_input(data, size=(32, 32), policy="center-crop-resize", max_pixels=max_pixels)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    worker = threading.Thread(target=decode)  # a worker thread, as the service decodes
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return _resident()[1] - before


def two_at_once(case: str, megapixels: float, budget_mib: int) -> None:
    """Two uploads of the case posted at once to the app (a tiny model, DECODE_MEMORY_MIB=budget_mib): their
    statuses and the peak resident set above what the started app held."""
    import tempfile
    from pathlib import Path

    from starlette.testclient import TestClient

    from serve.app import create_app
    from serve.settings import Settings
    from tests.serve.tiny_model import build_model

    side = int((megapixels * 1e6) ** 0.5)
    data = CASES[case](side)
    with tempfile.TemporaryDirectory() as folder:
        model = build_model(Path(folder) / "tiny.onnx")
        settings = Settings(model_path=model, ort_threads=1, log_level="warning", decode_memory_mib=budget_mib)
        with TestClient(create_app(settings)) as client:
            client.post("/classify", content=CASES[case](300))  # the decoder's code loaded, threads started
            statuses: list[int] = []

            def post() -> None:
                statuses.append(client.post("/classify", content=data).status_code)

            before = _reset_peak()
            posts = [threading.Thread(target=post) for _ in range(2)]
            for thread in posts:
                thread.start()
            for thread in posts:
                thread.join()
            peak = _resident()[1] - before
    print(json.dumps({"case": case, "pixels": side * side, "statuses": statuses, "peak_bytes": peak}))


def main(case: str, megapixels: float) -> None:
    side = int((megapixels * 1e6) ** 0.5)
    data = CASES[case](side)
    # Load the decoders' code and the service's modules first, so only the decode itself is measured.
    measure(CASES[case](64))
    peak = measure(data)
    print(json.dumps({"case": case, "pixels": side * side, "file_bytes": len(data), "peak_bytes": peak}))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[3] == "--app":
        two_at_once(sys.argv[1], float(sys.argv[2]), int(sys.argv[4]))
    else:
        main(sys.argv[1], float(sys.argv[2]))

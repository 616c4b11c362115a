"""The request bodies, generated deterministically: what the service meets in real use.

- `cifar`: 32x32 JPEGs, real CIFAR-10 test images when data/processed exists (else synthetic look-alikes);
- `photo`: a 640x480 photo-like JPEG (a web image or a screenshot-sized upload);
- `phone`: a 4000x3000 (12-MP) photo-like JPEG with EXIF orientation, a few MB, as a phone uploads it.
Smooth gradients plus grain give JPEG sizes like real photos; flat synthetic images would compress to nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from contract.paths import PROCESSED_DIR

KINDS = ("cifar", "photo", "phone", "mix")
# The mix: mostly small images (thumbnails, the test set, the site's examples), some web photos, a few phone photos.
MIX_WEIGHTS = {"cifar": 0.7, "photo": 0.2, "phone": 0.1}
EXIF_ORIENTATION = 0x0112


def jpeg(array: np.ndarray, quality: int, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    image.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def photo_like(height: int, width: int, seed: int, grain: float) -> np.ndarray:
    """Sky-to-ground gradients, a few soft blobs and sensor grain: compresses like a photo, not like a flat fill."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    top, bottom = rng.uniform(40, 220, 3).astype(np.float32), rng.uniform(40, 220, 3).astype(np.float32)
    image = top * (1 - y) + bottom * y + 30 * np.sin(6 * x + 3 * y)
    for _ in range(6):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.25)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
        image += blob * rng.uniform(-90, 90, 3).astype(np.float32)
    image += rng.normal(0, grain, (height, width, 1)).astype(np.float32)  # luminance grain, like a sensor's
    return np.clip(image, 0, 255).astype(np.uint8)


def cifar_images(count: int, processed_dir: Path = PROCESSED_DIR) -> list[bytes]:
    """`count` test images spread over the test set (all classes), or synthetic look-alikes without the data."""
    path = processed_dir / "test_images.npy"
    if path.is_file():
        images = np.load(path, mmap_mode="r")
        step = max(1, len(images) // count)
        return [jpeg(np.asarray(images[i * step]), 90) for i in range(min(count, len(images)))]
    return [jpeg(photo_like(32, 32, seed, grain=8), 90) for seed in range(count)]


def build(cifar_count: int = 256, processed_dir: Path = PROCESSED_DIR) -> dict[str, list[bytes]]:
    return {
        "cifar": cifar_images(cifar_count, processed_dir),
        "photo": [jpeg(photo_like(480, 640, 1, grain=6), 85)],
        "phone": [jpeg(photo_like(3000, 4000, 2, grain=8), 90, orientation=6)],  # rotated, as phones store it
    }


def source(processed_dir: Path = PROCESSED_DIR) -> str:
    path = processed_dir / "test_images.npy"
    return f"CIFAR-10 test images ({path})" if path.is_file() else "synthetic 32x32 images"


def describe(payloads: dict[str, list[bytes]]) -> dict[str, dict]:
    out = {}
    for kind, bodies in payloads.items():
        with Image.open(io.BytesIO(bodies[0])) as image:
            size = image.size
        out[kind] = {"count": len(bodies), "size": list(size), "mean_bytes": int(np.mean([len(b) for b in bodies]))}
    return out


class Picker:
    """Deterministic body sequence for one scenario: round-robin within a kind, weighted draw for the mix."""

    def __init__(self, payloads: dict[str, list[bytes]], kind: str, seed: int = 0) -> None:
        self._payloads, self._kind, self._n = payloads, kind, 0
        self._rng = np.random.default_rng(seed)
        self._kinds, self._weights = list(MIX_WEIGHTS), np.array(list(MIX_WEIGHTS.values()))

    def __call__(self) -> bytes:
        kind = self._kind if self._kind != "mix" else self._kinds[self._rng.choice(3, p=self._weights)]
        bodies = self._payloads[kind]
        self._n += 1
        return bodies[(self._n - 1) % len(bodies)]

"""A tiny CIFAR-10 look-alike in the real raw layout: gzipped tarballs of `split/<class>/<NNNN>.jpg`.

Each class has its own colour and stripe direction, so a model can learn it in a few steps.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_image(index: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array([(index * 70) % 256, (index * 130 + 60) % 256, (index * 30 + 120) % 256], dtype=np.float64)
    stripes = ((np.arange(32)[:, None] + np.arange(32)[None, :] * (index % 3)) // (2 + index % 4)) % 2
    img = base[None, None, :] * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 12, (32, 32, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def write_split(path: Path, split: str, per_class: int, seed: int, corrupt: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        for index, name in enumerate(CLASSES):
            for n in range(per_class):
                member = f"{split}/{name}/{n:04d}.jpg"
                data = b"not a jpeg" if member == corrupt else jpeg_bytes(class_image(index, rng))
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def write_raw(raw_dir: Path, train_per_class: int = 24, test_per_class: int = 8) -> Path:
    raw_dir.mkdir(parents=True, exist_ok=True)
    write_split(raw_dir / "cifar10-train.tar.gz", "train", train_per_class, seed=1)
    write_split(raw_dir / "cifar10-test.tar.gz", "test", test_per_class, seed=2)
    return raw_dir

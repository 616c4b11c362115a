"""Real pictures for tests that need one: CIFAR-10 test images from data/raw, and a 640x480 photo made from one."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from contract.paths import PROJECT_ROOT, RAW_DIR

ROOT = PROJECT_ROOT  # the name the shipped-model tests import
CIFAR_TEST_TAR = RAW_DIR / "cifar10-test.tar.gz"


def cifar_test_jpeg(member: str) -> bytes:
    """A member of the raw test tarball, e.g. "test/cat/0000.jpg" (needs `dvc pull`)."""
    with tarfile.open(CIFAR_TEST_TAR) as tar:
        data = tar.extractfile(member)
        assert data is not None, f"{member} not in {CIFAR_TEST_TAR}"
        return data.read()


def cifar_test_set(
    labels: list[str] | tuple[str, ...], tarball: Path = CIFAR_TEST_TAR
) -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 test JPEGs of the raw tarball, decoded to uint8 [N, 32, 32, 3], and their classes as indices into
    `labels` (the model's own list), from the folder names (needs `dvc pull`)."""
    images, truth = [], []
    with tarfile.open(tarball) as tar:
        for member in tar:
            if member.isfile():
                images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")))
                truth.append(labels.index(member.name.split("/")[1]))
    return np.stack(images), np.array(truth)


def landscape_photo(square_jpeg: bytes, size: tuple[int, int] = (640, 480)) -> bytes:
    """The picture enlarged into the middle of a landscape frame with blurred sides, like a phone photo of it:
    centre-crop-resize (the model's resize policy) gives back (nearly) the original."""
    picture = Image.open(io.BytesIO(square_jpeg)).convert("RGB")
    width, height = size
    frame = picture.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(24))
    frame.paste(picture.resize((height, height), Image.Resampling.BICUBIC), ((width - height) // 2, 0))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=90)
    return out.getvalue()

"""The upload path as the service runs it: a test image enlarged into a photo-sized JPEG, then decoded and resized by
serve.imaging (JPEG draft mode, EXIF orientation, the model's resize policy), exactly as POST /classify does."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from serve.imaging import to_model_input
from serve.settings import Settings

# What phones send: 4:3 landscape, the camera's 12 MP, and the 640x480 a messaging app scales it to.
PHOTO_SIZES = ((640, 480), (4000, 3000))
PHOTO_QUALITY = 90  # a phone camera's JPEG; Pillow's default 4:2:0 chroma subsampling, as phones use


def photo_name(size: tuple[int, int]) -> str:
    return f"photo_{size[0]}x{size[1]}"


def photo_jpeg(image: np.ndarray, size: tuple[int, int]) -> bytes:
    """The picture enlarged (bicubic) into the middle of a landscape frame, the sides a blurred wash of it, like a
    phone photo of a print. The model's resize policy centre-crops the square back out."""
    width, height = size
    picture = Image.fromarray(image)
    # The sides are blurred by shrinking, not by a Gaussian on 12 MP: the same look for a thousandth of the time.
    frame = picture.resize((8, 6), Image.Resampling.BOX).resize(size, Image.Resampling.BILINEAR)
    frame.paste(picture.resize((height, height), Image.Resampling.BICUBIC), ((width - height) // 2, 0))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=PHOTO_QUALITY)
    return out.getvalue()


def through_service(data: bytes, *, input_size: tuple[int, int], policy: str) -> np.ndarray:
    """Upload bytes -> the model's uint8 [H, W, 3], by the service's own code and its default pixel limit."""
    return to_model_input(data, size=input_size, policy=policy, max_pixels=Settings.max_pixels)


def uploaded(images: np.ndarray, size: tuple[int, int], *, input_size: tuple[int, int], policy: str) -> np.ndarray:
    """Each image as the model sees it after being uploaded as a photo of `size`."""

    def one(image: np.ndarray) -> np.ndarray:
        return through_service(photo_jpeg(image, size), input_size=input_size, policy=policy)

    # Pillow releases the GIL while it resizes and codes: a thread a core makes the 12-MP photos ~2x faster.
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return np.stack(list(pool.map(one, images)))

"""CIFAR-10-C-style corruptions of uint8 [N, H, W, 3] RGB images, three severities each, deterministic.

Each corruption is one named function of the images, a level and a seeded generator (only the noise and the rotation
draw from it), so the same images, level and seed always give the same bytes. The levels are what a phone photo
shrunk to 32x32 goes through: sensor noise, focus blur, web JPEG, over- and under-exposure, haze, a picture that
was already tiny (pixelation), black-and-white photos and a slightly tilted camera. Severities rise with the level;
the strongest are about CIFAR-10-C's severity 5 where that benchmark has the corruption.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

Transform = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    name: str
    parameter: str  # what `levels` measure, for the table
    levels: tuple[float, ...]  # mild -> severe
    apply: Transform


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _per_image(images: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(change(Image.fromarray(image)).convert("RGB")) for image in images])


def gaussian_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive noise, sigma a fraction of the 0..255 range (CIFAR-10-C: 0.04 .. 0.10)."""
    return _to_uint8(images + rng.normal(0.0, sigma * 255.0, images.shape))


def gaussian_blur(images: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Pillow's Gaussian blur, radius (the standard deviation) in pixels of the 32x32 image."""
    return _per_image(images, lambda image: image.filter(ImageFilter.GaussianBlur(radius)))


def jpeg(images: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """Encoded and decoded as a JPEG of this quality (Pillow's default 4:2:0 chroma subsampling)."""

    def round_trip(image: Image.Image) -> Image.Image:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=int(quality))
        return Image.open(out)

    return _per_image(images, round_trip)


def brightness(images: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Every value times factor, clipped: > 1 over-exposes (highlights saturate), < 1 under-exposes."""
    return _to_uint8(images.astype(np.float64) * factor)


def contrast(images: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Pulled towards each image's mean by factor (1 = unchanged, 0 = flat grey), as CIFAR-10-C does."""
    values = images.astype(np.float64)
    means = values.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8((values - means) * factor + means)


def pixelate(images: np.ndarray, side: float, rng: np.random.Generator) -> np.ndarray:
    """Shrunk to side x side (box filter), then blown back up with nearest neighbour: a picture that was smaller."""
    height, width = images.shape[1:3]
    small = (int(side), int(side))
    return _per_image(
        images,
        lambda image: image.resize(small, Image.Resampling.BOX).resize((width, height), Image.Resampling.NEAREST),
    )


def grayscale(images: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Blended towards its luma (ITU-R 601, Pillow's "L") by amount: 1 is a black-and-white picture."""
    values = images.astype(np.float64)
    luma = values @ np.array([0.299, 0.587, 0.114])
    return _to_uint8(values * (1.0 - amount) + luma[..., None] * amount)


def rotate(images: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Turned by degrees, clockwise or anticlockwise at random, bilinear. The image is mirror-padded first, so
    the corners show the scene continuing rather than black wedges (a tilted camera still sees something there)."""
    height, width = images.shape[1:3]
    pad = max(height, width) // 2
    signs = rng.choice((-1.0, 1.0), size=len(images))
    turned = []
    for image, sign in zip(images, signs, strict=True):
        padded = Image.fromarray(np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
        big = padded.rotate(sign * degrees, resample=Image.Resampling.BILINEAR)
        turned.append(np.asarray(big)[pad : pad + height, pad : pad + width])
    return np.stack(turned)


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("gaussian_noise", "sigma (fraction of 0..255)", (0.04, 0.07, 0.10), gaussian_noise),
    Corruption("gaussian_blur", "radius (pixels)", (0.5, 1.0, 1.5), gaussian_blur),
    Corruption("jpeg", "quality", (50, 25, 10), jpeg),
    Corruption("brighter", "factor", (1.3, 1.6, 2.0), brightness),
    Corruption("darker", "factor", (0.7, 0.5, 0.3), brightness),
    Corruption("contrast", "factor", (0.6, 0.4, 0.2), contrast),
    Corruption("pixelate", "side (pixels) before upscaling", (24, 16, 12), pixelate),
    Corruption("grayscale", "amount", (0.5, 0.75, 1.0), grayscale),
    Corruption("rotate", "degrees", (5, 10, 15), rotate),
)
BY_NAME = {corruption.name: corruption for corruption in CORRUPTIONS}


def generator(name: str, level_index: int, seed: int) -> np.random.Generator:
    """The draws of one corruption at one level: seeded by its name, so adding a corruption changes no other one."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), level_index])


def corrupt(images: np.ndarray, name: str, level_index: int, seed: int = 0) -> np.ndarray:
    """The images under corruption `name` at its level_index-th level (0 = mildest)."""
    corruption = BY_NAME[name]
    return corruption.apply(images, corruption.levels[level_index], generator(name, level_index, seed))

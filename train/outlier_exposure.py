"""Generated pictures that are none of the ten classes, for outlier exposure during training.

Outlier exposure trains the network to give a flat answer (a uniform target) on pictures that hold no object, so
its scores and features separate "none of the ten" from the classes. The pictures here are made from the batch
itself and random numbers, on the batch's device, and are on purpose *not* the families the outlier benchmark
generates (evaluation/outlier_pictures.py: noise, flat colours, text, shapes, Julia fractals, 4-pixel shuffled
patches): the benchmark's package groups (real photos, faces, digits) stay the honest measure.
"""

from __future__ import annotations

import torch


def spectral_noise(count: int, side: int = 32, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:  # fmt: skip
    """uint8 [count, side, side, 3] noise with a natural picture's 1/f^a power spectrum (a in 1-3): textures and
    blotches at every scale, with nothing in them. Each picture gets its own exponent, colour mix and brightness."""
    fy = torch.fft.fftfreq(side, device=device).view(side, 1)
    fx = torch.fft.rfftfreq(side, device=device).view(1, -1)
    radius = torch.sqrt(fy * fy + fx * fx).clamp_min(1.0 / side)
    exponent = 1.0 + 2.0 * torch.rand(count, 1, 1, 1, generator=generator).to(device)
    shape = (count, 3, *radius.shape)
    phase = 2 * torch.pi * torch.rand(shape, generator=generator).to(device)
    amplitude = torch.randn(shape, generator=generator).to(device).abs() * radius.pow(-exponent)
    planes = torch.fft.irfft2(torch.polar(amplitude, phase), s=(side, side))
    # Correlated channels, as in photos: each colour a random mix of one shared plane and its own.
    shared = torch.rand(count, 1, 1, 1, generator=generator).to(device)
    planes = shared * planes[:, :1] + (1 - shared) * planes
    planes = planes - planes.mean(dim=(2, 3), keepdim=True)
    planes = planes / planes.flatten(1).std(dim=1).view(count, 1, 1, 1).clamp_min(1e-8)
    contrast = 20 + 60 * torch.rand(count, 1, 1, 1, generator=generator).to(device)
    brightness = 40 + 170 * torch.rand(count, 3, 1, 1, generator=generator).to(device)
    pictures = (planes * contrast + brightness).round().clamp(0, 255).to(torch.uint8)
    return pictures.permute(0, 2, 3, 1).contiguous()


def shuffled_tiles(images: torch.Tensor, tile: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each uint8 NHWC picture cut into tile x tile squares put back in a random order: the colours and textures of
    real pictures without the object. (The benchmark's shuffled group uses 4-pixel squares of other pictures.)"""
    n, h, w, c = images.shape
    rows, cols = h // tile, w // tile
    tiles = images[:, : rows * tile, : cols * tile].reshape(n, rows, tile, cols, tile, c).transpose(2, 3)
    tiles = tiles.reshape(n, rows * cols, tile, tile, c)
    order = torch.argsort(torch.rand(n, rows * cols, generator=generator).to(images.device), dim=1)
    tiles = torch.gather(tiles, 1, order.view(n, -1, 1, 1, 1).expand_as(tiles))
    return tiles.reshape(n, rows, cols, tile, tile, c).transpose(2, 3).reshape(n, rows * tile, cols * tile, c)


def outlier_batch(images: torch.Tensor, count: int, generator: torch.Generator | None = None,
                  photos: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """`count` outlier pictures shaped like `images`: half spectral noise, half shuffled tiles of the batch; with a
    bank of real `photos` (train/outlier_photos.py, same shape per picture), half of them drawn from it instead."""
    photo_count = count // 2 if photos is not None else 0
    noise_count = (count - photo_count) // 2
    _, side, _, _ = images.shape
    chosen = torch.randperm(len(images), generator=generator)[: count - photo_count - noise_count].to(images.device)
    parts = [
        spectral_noise(noise_count, side, generator, images.device),
        shuffled_tiles(images[chosen], generator=generator),
    ]
    if photo_count:
        drawn = torch.randint(len(photos), (photo_count,), generator=generator).to(photos.device)
        parts.append(photos[drawn].to(images.device))
    return torch.cat(parts)

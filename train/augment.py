"""Batch augmentation on uint8 NHWC tensors: vectorised, so it costs next to nothing beside the network."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by `padding` and take a random crop of the original size, per image."""
    n, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device=images.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device=images.device)
    rows = dy + torch.arange(h, device=images.device).view(1, h, 1)
    cols = dx + torch.arange(w, device=images.device).view(1, 1, w)
    batch = torch.arange(n, device=images.device).view(n, 1, 1)
    return padded[batch, rows, cols]


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(2), images)


def random_cutout(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a `size` x `size` square at a random centre per image (clipped at the border): Cutout regularisation."""
    n, h, w, _ = images.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=generator, device=images.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=generator, device=images.device)
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    dy, dx = rows - cy + size // 2, cols - cx + size // 2
    inside = (dy >= 0) & (dy < size) & (dx >= 0) & (dx < size)
    return images.masked_fill(inside.unsqueeze(-1), 0)

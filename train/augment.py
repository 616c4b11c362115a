"""Batch augmentation on uint8 NHWC tensors: vectorised, so it costs next to nothing beside the network."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF


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


# What a phone photo goes through before the network sees it: sensor noise, focus blur, web JPEG, over- and
# under-exposure, haze, a picture that was already tiny, black-and-white and a tilted camera. Each corrupted image
# gets one of these at a severity drawn from a continuous range that spans mild to a little beyond the strongest
# level of the robustness benchmark (evaluation/corruptions.py), so the network learns the families, not its levels.
def _noise(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    sigma = _uniform(0.01, 0.12, rng) * 255.0
    # Drawn on the CPU generator, then moved: the batch is on the training device by now (a GPU run's too).
    return image.float() + torch.randn(image.shape, generator=rng).to(image.device) * sigma


def _blur(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    sigma = _uniform(0.3, 2.0, rng)
    return TF.gaussian_blur(image, kernel_size=2 * math.ceil(3 * sigma) + 1, sigma=sigma)


def _jpeg(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return TF.jpeg(image, quality=int(_uniform(8, 60, rng)))


def _exposure(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return image.float() * math.exp(_uniform(math.log(0.25), math.log(2.2), rng))  # darker and brighter alike


def _contrast(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    values = image.float()
    mean = values.mean()
    return (values - mean) * _uniform(0.15, 0.8, rng) + mean


def _downscale(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Shrunk (antialiased, as the service shrinks photos) and blown back up, nearest or bilinear at random."""
    size = list(image.shape[-2:])
    side = int(_uniform(8, 27, rng))
    small = TF.resize(image, [side, side], antialias=True)
    mode = TF.InterpolationMode.NEAREST if _uniform(0, 1, rng) < 0.5 else TF.InterpolationMode.BILINEAR
    return TF.resize(small, size, interpolation=mode, antialias=False)


def _grayscale(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    amount = _uniform(0.3, 1.0, rng)
    return image.float() * (1 - amount) + TF.rgb_to_grayscale(image).float() * amount


def _rotate(image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Turned by up to 18 degrees either way, mirror-padded first so the corners show the scene, not black."""
    h, w = image.shape[-2:]
    pad = max(h, w) // 2
    big = TF.pad(image, [pad, pad, pad, pad], padding_mode="reflect")
    turned = TF.rotate(big, _uniform(-18.0, 18.0, rng), interpolation=TF.InterpolationMode.BILINEAR)
    return turned[..., pad : pad + h, pad : pad + w]


CORRUPTIONS = (_noise, _blur, _jpeg, _exposure, _contrast, _downscale, _grayscale, _rotate)


def _uniform(low: float, high: float, rng: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=rng))


def random_corruption(images: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each uint8 NHWC image, with probability p, through one corruption family at a random severity.

    Per image with torchvision's functional ops: a 256-image batch takes ~0.1 s, beside ~10 s of network step here.
    """
    rng = generator if generator is not None else torch.default_generator
    chosen = (torch.rand(images.shape[0], generator=rng) < p).nonzero().flatten().tolist()
    if not chosen:
        return images
    out = images.clone()
    for i in chosen:
        corruption = CORRUPTIONS[int(torch.randint(len(CORRUPTIONS), (), generator=rng))]
        chw = images[i].permute(2, 0, 1)
        out[i] = corruption(chw, rng).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    return out

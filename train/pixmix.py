"""PixMix (Hendrycks et al., "PixMix: Dreamlike pictures comprehensively improve safety measures", 2022): each
training picture, kept with its label, is mixed a few times with structured pictures that hold no object (fractals)
and with corrupted copies of itself, by weighted sums and weighted products. The paper reports better corruption
robustness, calibration and outlier detection together, the three things the robust fine-tune trades against each
other (benchmarks/finetune/README.md).

The paper mixes with a downloaded set of fractals; none may be downloaded here, so the fractals are drawn by the
chaos game from random contractive affine maps (iterated function systems), once per run from a fixed seed. They are
not the outlier benchmark's Julia sets (evaluation/outlier_pictures.py), which stay unseen.
"""

from __future__ import annotations

import torch

from train import augment

MAPS = 4  # affine maps per system: 2-4 are used, the rest weighted zero
POINTS = 4096  # chaos-game points per fractal
STEPS = 32  # chaos-game iterations: each point lands on the attractor within a few
ROUNDS = 4  # at most this many mixing rounds per picture (the paper's k)
BETA = 3.0  # the mixing weights' Beta parameter (the paper's, for CIFAR)


def fractals(count: int, side: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 [count, side, side, 3] coloured fractals on dark backgrounds, the same for the same seed."""
    rng = torch.Generator().manual_seed(seed)
    # Contractive maps: a rotation, two scales under 1, a rotation, and a shift.
    angles = 2 * torch.pi * torch.rand(count, MAPS, 2, generator=rng)
    scales = 0.25 + 0.6 * torch.rand(count, MAPS, 2, generator=rng)
    flip = torch.where(torch.rand(count, MAPS, generator=rng) < 0.5, -1.0, 1.0)
    matrices = _rotation(angles[..., 0]) @ torch.diag_embed(scales * torch.stack([flip, torch.ones_like(flip)], -1))
    matrices = matrices @ _rotation(angles[..., 1])
    shifts = 2 * torch.rand(count, MAPS, 2, generator=rng) - 1
    used = torch.arange(MAPS) < torch.randint(2, MAPS + 1, (count, 1), generator=rng)
    weights = matrices.det().abs().clamp_min(0.02) * used  # each map chosen as often as its area (even density)
    points = 2 * torch.rand(count, POINTS, 2, generator=rng) - 1
    frame = torch.arange(count).view(count, 1)
    for _ in range(STEPS):
        chosen = torch.multinomial(weights, POINTS, replacement=True, generator=rng)
        points = (matrices[frame, chosen] @ points.unsqueeze(-1)).squeeze(-1) + shifts[frame, chosen]
    density = _histogram(points, 2 * side)
    density = torch.log1p(density) / torch.log1p(density).amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    density = torch.nn.functional.avg_pool2d(density.unsqueeze(1), 2).squeeze(1)  # drawn at twice the side: smooth
    low, high = torch.rand(count, 3, generator=rng), torch.rand(count, 3, generator=rng)
    background = 0.15 * torch.rand(count, 3, generator=rng)
    shade = density.unsqueeze(-1)
    colour = low.view(count, 1, 1, 3) * (1 - shade) + high.view(count, 1, 1, 3) * shade
    pictures = torch.where(shade > 0.02, colour, background.view(count, 1, 1, 3))
    return (pictures * 255).round().clamp(0, 255).to(torch.uint8)


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _histogram(points: torch.Tensor, side: int) -> torch.Tensor:
    """Point counts on a side x side grid spanning each fractal's own extent."""
    count = points.shape[0]
    low, high = points.amin(dim=1, keepdim=True), points.amax(dim=1, keepdim=True)
    cells = ((points - low) / (high - low).clamp_min(1e-6) * (side - 1)).round().long()
    index = cells[..., 1] * side + cells[..., 0] + torch.arange(count).view(count, 1) * side * side
    counts = torch.bincount(index.flatten(), minlength=count * side * side).float()
    return counts.view(count, side, side)


def pixmix(
    images: torch.Tensor, bank: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each uint8 NHWC picture, with probability p, mixed in 0-4 rounds with a random fractal of `bank` or a
    corrupted copy of itself (train/augment.py's families), each round a weighted sum or product at random."""
    rng = generator if generator is not None else torch.default_generator
    chosen = (torch.rand(images.shape[0], generator=rng) < p).nonzero().flatten().to(images.device)
    if not len(chosen):
        return images
    out = images.clone()
    out[chosen] = _mixed(images[chosen], bank, rng)
    return out


def _mixed(images: torch.Tensor, bank: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    n = images.shape[0]
    device = images.device
    rounds = torch.randint(0, ROUNDS + 1, (n,), generator=rng).to(device).view(n, 1, 1, 1)
    corrupted = augment.random_corruption(images, 1.0, rng).float() / 255
    mixed = torch.where(_coin(n, rng, device), corrupted, images.float() / 255)
    for step in range(ROUNDS):
        # A fractal drawn anew each round (the paper keeps one a picture): more variety for the same cost.
        other = bank[torch.randint(len(bank), (n,), generator=rng).to(device)].float() / 255
        other = torch.where(_coin(n, rng, device), corrupted, other)
        a, b = _weights(n, rng, device)
        summed = ((a * (2 * mixed - 1) + b * (2 * other - 1)) + 1) / 2
        product = (2 * mixed).pow(a) * (2 * other).clamp_min(1e-6).pow(b) / 2
        step_mixed = torch.where(_coin(n, rng, device), summed, product).clamp(0, 1)
        mixed = torch.where(rounds > step, step_mixed, mixed)
    return (mixed * 255).round().to(torch.uint8)


def _coin(n: int, rng: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=rng) < 0.5).to(device).view(n, 1, 1, 1)


def _weights(n: int, rng: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's mixing weights: (a, b) = (Beta(3,1), Beta(1,3)) half the time, else (1 + Beta(1,3), -Beta(1,3)):
    mostly the picture, sometimes a little of the other subtracted (a sharpening away from it)."""
    high, low, extra, away = (torch.rand(n, generator=rng).pow(1 / BETA) for _ in range(4))  # Beta(3,1) by inversion
    first = torch.rand(n, generator=rng) < 0.5
    a = torch.where(first, high, 2 - extra)  # 1 - Beta(3,1) is Beta(1,3)
    b = torch.where(first, 1 - low, away - 1)
    return a.to(device).view(n, 1, 1, 1), b.to(device).view(n, 1, 1, 1)

import pytest
import torch
from torch.nn import functional as F

from train import augment
from train.models import build


@pytest.mark.parametrize(
    ("arch", "kwargs"), [("mlp", {}), ("resnet18", {"max_pool": True}), ("resnet18", {"max_pool": False})]
)
def test_a_few_optimisation_steps_reduce_the_loss(arch, kwargs):
    torch.manual_seed(0)
    net = build(arch, 10, **kwargs)
    images = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    labels = torch.arange(16) % 10
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_pretrained_variant_builds_offline_when_not_downloading():
    net = build("resnet18_pretrained", 10, input_size=64, download=False)
    assert net(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 10)


def test_preprocess_normalises_and_transposes():
    net = build("mlp", 10)
    net.preprocess.set_stats([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    x = torch.full((1, 32, 32, 3), 255, dtype=torch.uint8)
    out = net.preprocess(x)
    assert out.shape == (1, 3, 32, 32)
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="unknown architecture"):
        build("vgg", 10)


def test_random_crop_takes_a_shifted_window_of_the_padded_image():
    images = torch.arange(2 * 8 * 8 * 3, dtype=torch.int64).reshape(2, 8, 8, 3).to(torch.uint8)
    out = augment.random_crop(images, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (0, 0, 2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_hflip_mirrors_about_half_the_images():
    images = torch.randint(0, 256, (200, 4, 4, 3), dtype=torch.uint8)
    out = augment.random_hflip(images, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 60 < sum(flipped) < 140


def test_cutout_zeroes_one_square_per_image_and_keeps_the_rest():
    images = torch.full((64, 12, 12, 3), 7, dtype=torch.uint8)
    out = augment.random_cutout(images, size=4, generator=torch.Generator().manual_seed(0))
    for img in out:
        zeroed = (img == 0).all(-1)
        rows, cols = zeroed.any(1).nonzero().flatten(), zeroed.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4
        assert 1 <= len(cols) <= 4
        assert zeroed.sum() == len(rows) * len(cols)  # one rectangle
        assert (img[~zeroed] == 7).all()
    assert sum(int((o == 0).all(-1).sum()) == 16 for o in out) > 16  # most squares lie inside

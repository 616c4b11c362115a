"""PixMix for the fine-tune (train/pixmix.py): fractals drawn by the chaos game, and pictures mixed with them and
with corrupted copies of themselves, each keeping its label."""

from __future__ import annotations

import torch

from tests.train.test_robust_training import photos
from train import pixmix
from train.module import LitClassifier


def test_fractals_are_varied_shapes_on_dark_backgrounds_and_the_same_for_a_seed():
    bank = pixmix.fractals(64, seed=3)
    assert bank.shape == (64, 32, 32, 3)
    assert bank.dtype == torch.uint8
    assert torch.equal(bank, pixmix.fractals(64, seed=3))
    assert not torch.equal(bank, pixmix.fractals(64, seed=4))
    drawn = (bank.float().amax(dim=-1) > 40).float().mean(dim=(1, 2))  # the share of each picture the shape covers
    assert (drawn > 0.01).all()  # every fractal shows something...
    assert (drawn < 0.95).all()  # ...and none fills its frame: a shape on a background
    assert drawn.std() > 0.05  # small and large ones
    assert bank.float().mean(dim=(1, 2)).std(dim=0).min() > 10  # in different colours


def test_pixmix_leaves_pictures_alone_at_p_zero_and_keeps_the_batch_an_image_batch():
    images, bank = photos(64), pixmix.fractals(16)
    assert torch.equal(pixmix.pixmix(images, bank, 0.0), images)
    mixed = pixmix.pixmix(images, bank, 1.0, generator=torch.Generator().manual_seed(0))
    assert mixed.shape == images.shape
    assert mixed.dtype == torch.uint8
    assert (mixed != images).flatten(1).any(1).float().mean() > 0.8  # all but those with no round and no corruption
    again = pixmix.pixmix(images, bank, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again)
    assert torch.equal(images, photos(64))  # not modified in place


def test_pixmix_touches_about_p_of_the_pictures():
    images, bank = photos(400), pixmix.fractals(16)
    mixed = pixmix.pixmix(images, bank, 0.3, generator=torch.Generator().manual_seed(0))
    changed = int((mixed != images).flatten(1).any(1).sum())
    assert 80 < changed < 130  # 0.3 of 400, less the few drawn with no change


def test_a_mixed_picture_is_still_mostly_its_own_picture():
    images, bank = photos(200), pixmix.fractals(64)
    mixed = pixmix.pixmix(images, bank, 1.0, generator=torch.Generator().manual_seed(1)).float().flatten(1)
    original = images.float().flatten(1)
    own = (mixed - original).abs().mean(dim=1)
    other = (mixed - original.roll(1, dims=0)).abs().mean(dim=1)  # against the next picture of the batch
    assert (own < other).float().mean() > 0.8  # the label it keeps still describes it


def test_the_module_mixes_only_the_students_pictures():
    module = LitClassifier(arch="mlp", pixmix_p=1.0, pixmix_fractals=8, crop_padding=0, hflip=False)
    assert module.fractals is not None
    assert module.fractals.shape == (8, 32, 32, 3)
    assert "fractals" not in str(module.state_dict().keys())  # drawn again each run, never in a checkpoint
    module.trainer = type("Trainer", (), {"training": True})()
    images = photos(32)
    seen, _, clean = module.on_after_batch_transfer((images, torch.zeros(32, dtype=torch.long)), 0)
    assert torch.equal(clean, images)
    assert (seen != clean).flatten(1).any(1).float().mean() > 0.7
    assert LitClassifier(arch="mlp").fractals is None  # off by default: nothing drawn

"""Outlier exposure on real photos (train/outlier_photos.py): the crops, the pinned download, the bank in a batch."""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train.test_robust_training import photos
from train import outlier_exposure, outlier_photos
from train.module import LitClassifier


def halves(width: int = 400, height: int = 300) -> Image.Image:
    """Left half red, right half blue."""
    picture = np.zeros((height, width, 3), np.uint8)
    picture[:, : width // 2, 0] = 255
    picture[:, width // 2 :, 2] = 255
    return Image.fromarray(picture)


def test_crops_are_small_squares_of_varied_size_and_place():
    crops = outlier_photos.crops(halves(), np.random.default_rng(0), count=200)
    assert crops.shape == (200, 32, 32, 3)
    assert crops.dtype == np.uint8
    red = (crops[..., 0] > 127).mean(axis=(1, 2))
    assert (red == 1).any()  # some wholly in one half...
    assert (red == 0).any()
    straddling = (red > 0) & (red < 1)
    assert straddling.any()  # ...some across the edge, at varied places
    assert len({round(share, 2) for share in red[straddling]}) > 10
    # The box filter averages: a crop across the edge has one column of mixed colour at most.
    mixed = ((crops[..., 0] > 0) & (crops[..., 2] > 0)).any(axis=1).sum(axis=1)
    assert mixed.max() <= 1


def test_crops_are_mirrored_about_half_the_time():
    picture = np.zeros((300, 300, 3), np.uint8)
    picture[:, :150, 0] = 255  # a crop of the whole picture keeps red on the left unless mirrored
    rng = np.random.default_rng(0)
    crops = outlier_photos.crops(Image.fromarray(picture), rng, count=400)
    whole = [c for c in crops if 0 < (c[..., 0] > 127).mean() < 1]
    left = sum(c[:, 0, 0].mean() > c[:, -1, 0].mean() for c in whole)
    assert 0.35 < left / len(whole) < 0.65


def fake_debian(content: bytes, unpacked: list):
    """subprocess.run standing in for apt-get (writes a .deb holding `content`) and dpkg-deb (notes what it unpacks)."""

    def run(command, cwd=None, **kwargs):
        if command[0] == "apt-get":
            name, version = command[2].split("=")
            (cwd / f"{name}_{version}_all.deb").write_bytes(content)
        else:
            unpacked.append(command)
        return subprocess.CompletedProcess(command, 0)

    return run


def test_a_download_with_another_checksum_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    unpacked = []
    monkeypatch.setattr(outlier_photos.subprocess, "run", fake_debian(b"not the pinned package", unpacked))
    with pytest.raises(RuntimeError, match="sha256"):
        outlier_photos.download({"some-wallpapers": ("1.0-1", "0" * 64)}, tmp_path)
    assert not unpacked


def test_a_download_with_the_pinned_checksum_is_unpacked(tmp_path, monkeypatch):
    unpacked = []
    monkeypatch.setattr(outlier_photos.subprocess, "run", fake_debian(b"the pinned package", unpacked))
    pinned = hashlib.sha256(b"the pinned package").hexdigest()
    trees = outlier_photos.download({"some-wallpapers": ("1.0-1", pinned)}, tmp_path)
    assert trees == {"some-wallpapers": tmp_path / "some-wallpapers"}
    assert unpacked == [["dpkg-deb", "-x", str(tmp_path / "some-wallpapers_1.0-1_all.deb"),
                         str(tmp_path / "some-wallpapers")]]  # fmt: skip


def test_every_photo_comes_from_a_pinned_package():
    assert {package for package, _ in outlier_photos.PHOTOS} == set(outlier_photos.PACKAGES)
    assert len(set(outlier_photos.PHOTOS)) == len(outlier_photos.PHOTOS)


def test_a_bank_of_the_wrong_shape_is_refused(tmp_path):
    np.save(tmp_path / "bank.npy", np.zeros((4, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        outlier_photos.load(tmp_path / "bank.npy")


def bank(count: int = 50) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8))


def test_half_an_outlier_batch_comes_from_the_photos():
    photo_bank = bank()
    batch = outlier_exposure.outlier_batch(photos(10), 9, generator=torch.Generator().manual_seed(0),
                                           photos=photo_bank)  # fmt: skip
    assert batch.shape == (9, 32, 32, 3)
    rows = {tuple(row.flatten().tolist()) for row in photo_bank}
    assert sum(tuple(picture.flatten().tolist()) in rows for picture in batch) == 4


def test_the_classifier_trains_on_the_bank_and_never_saves_it(tmp_path, monkeypatch, warm_start):
    bank_path = tmp_path / "bank.npy"
    np.save(bank_path, bank().numpy())
    module = LitClassifier(arch="mlp", init_weights=warm_start, outlier_share=0.5, outlier_photos=str(bank_path))
    assert torch.equal(module.photos, bank())
    assert "photos" not in module.state_dict()
    drawn = []
    original = outlier_exposure.outlier_batch
    spy = lambda *args, **kwargs: drawn.append(kwargs["photos"]) or original(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(outlier_exposure, "outlier_batch", spy)
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    images = photos(8)
    loss = module._training_loss((images, torch.zeros(8, dtype=torch.long), images))
    assert loss.isfinite()
    assert drawn[0] is module.photos

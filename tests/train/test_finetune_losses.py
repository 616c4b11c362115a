"""The fine-tune's two extra terms: distillation from the warm start (the teacher sees the clean picture) and
outlier exposure on generated pictures that are none of the ten (train/outlier_exposure.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.train.test_robust_training import photos
from train import outlier_exposure
from train.models import build
from train.module import LitClassifier


def test_spectral_noise_is_a_batch_of_varied_pictures():
    pictures = outlier_exposure.spectral_noise(16, generator=torch.Generator().manual_seed(0))
    assert pictures.shape == (16, 32, 32, 3)
    assert pictures.dtype == torch.uint8
    spread = pictures.float().flatten(1).std(dim=1)
    assert (spread > 3).all()  # textures, not flat colours
    assert pictures.float().mean(dim=(1, 2, 3)).std() > 10  # pictures differ in brightness


def test_shuffled_tiles_keep_every_tile_and_lose_the_layout():
    images = photos(8)
    shuffled = outlier_exposure.shuffled_tiles(images, tile=8, generator=torch.Generator().manual_seed(0))
    assert shuffled.shape == images.shape
    assert not torch.equal(shuffled, images)
    for before, after in zip(images, shuffled, strict=True):
        tiles = lambda x: sorted(x.reshape(4, 8, 4, 8, 3).transpose(1, 2).reshape(16, -1).tolist())  # noqa: E731
        assert tiles(before) == tiles(after)


def test_an_outlier_batch_has_the_asked_count_and_the_batch_shape():
    batch = outlier_exposure.outlier_batch(photos(10), 5, generator=torch.Generator().manual_seed(0))
    assert batch.shape == (5, 32, 32, 3)
    assert batch.dtype == torch.uint8


def loss_of(module: LitClassifier, batch) -> torch.Tensor:
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    return module._training_loss(batch)


def test_distillation_needs_a_warm_start_for_its_teacher():
    with pytest.raises(ValueError, match="init_weights"):
        LitClassifier(arch="mlp", distill_weight=0.5)


def test_the_teacher_is_the_frozen_warm_start_and_never_trained(warm_start):
    module = LitClassifier(arch="mlp", init_weights=warm_start, distill_weight=1.0, label_smoothing=0.0)
    assert module.teacher is not None
    assert not any(p.requires_grad for p in module.teacher.parameters())
    student_ids = {id(p) for p in module.net.parameters()}
    teacher_ids = {id(p) for p in module.teacher.parameters()}
    assert not student_ids & teacher_ids
    images = photos(16)
    # Student and teacher start equal: on clean pictures, pure distillation has nothing to learn...
    assert loss_of(module, (images, torch.zeros(16, dtype=torch.long), images)).item() == pytest.approx(0, abs=1e-5)
    # ...on corrupted ones it does, and a step moves the student only.
    corrupted = 255 - images
    teacher_before = [p.clone() for p in module.teacher.parameters()]
    loss = loss_of(module, (corrupted, torch.zeros(16, dtype=torch.long), images))
    assert loss.item() > 1e-3
    loss.backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, module.teacher.parameters(), strict=True))


def test_a_later_leg_keeps_its_first_teacher(warm_start, tmp_path):
    torch.manual_seed(1)
    later = tmp_path / "later.safetensors"
    save_file({k: v.contiguous() for k, v in build("mlp", 10).state_dict().items()}, str(later))
    module = LitClassifier(arch="mlp", init_weights=str(later), teacher_weights=warm_start, distill_weight=0.5)
    first = load_file(warm_start)
    assert all(torch.equal(module.teacher.state_dict()[k], v) for k, v in first.items())
    assert not all(torch.equal(module.net.state_dict()[k], v) for k, v in first.items())


def test_outlier_exposure_keeps_answers_on_generated_pictures_flat(warm_start):
    probe = outlier_exposure.spectral_noise(64, generator=torch.Generator().manual_seed(1))  # never trained on
    images, labels = photos(32), torch.arange(32) % 10

    def entropy_after_training(outlier_share: float) -> float:  # of the answer on the probe, at most log(10)
        torch.manual_seed(0)
        module = LitClassifier(arch="mlp", init_weights=warm_start, outlier_share=outlier_share, outlier_weight=1.0)
        module.net.preprocess.set_stats([0.5] * 3, [0.25] * 3)
        optimiser = torch.optim.SGD(module.net.parameters(), lr=0.03, momentum=0.9)
        for _ in range(60):
            optimiser.zero_grad()
            loss_of(module, (images, labels, images)).backward()
            optimiser.step()
        with torch.no_grad():
            p = torch.softmax(module(probe), dim=1)
        return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())

    assert entropy_after_training(0.5) > entropy_after_training(0.0) + 0.05  # measured: 2.28 against 2.20


def test_training_batches_keep_the_clean_pictures_for_the_teacher(warm_start):
    module = LitClassifier(arch="mlp", init_weights=warm_start, corruption_p=1.0, cutout=8, crop_padding=0,
                           hflip=False)  # fmt: skip
    module.trainer = type("Trainer", (), {"training": True})()
    images = photos(8)
    seen, _, clean = module.on_after_batch_transfer((images, torch.zeros(8, dtype=torch.long)), 0)
    assert torch.equal(clean, images)  # no crop or flip asked: the clean pictures are the batch
    assert (seen != clean).flatten(1).any(1).all()  # every one corrupted and cut out for the student

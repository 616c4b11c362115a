"""The pieces of the robust fine-tune: photo corruptions as augmentation, BatchNorm given back its statistics,
a warm start from the committed safetensors weights, and the CPU precision chosen from the CPU's flags."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from contract.paths import SHIPPED_DIR
from tests.train.conftest import compose_config
from train import augment
from train.models import build, recalibrate_batchnorm
from train.module import LitClassifier
from train.precision import cpu_precision


def photos(n: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images with edges (a blur or a downscale must show on them), uint8 NHWC."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="nearest") * 200 + 20
    return smooth.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize("corruption", augment.CORRUPTIONS, ids=lambda c: c.__name__.strip("_"))
def test_every_corruption_changes_an_image_and_keeps_it_an_image(corruption):
    image = photos(1)[0].permute(2, 0, 1)
    changed = corruption(image, torch.Generator().manual_seed(1)).round().clamp(0, 255).to(torch.uint8)
    assert changed.shape == image.shape
    assert not torch.equal(changed, image)


def test_random_corruption_touches_about_p_of_the_images_and_only_those():
    images = photos(400)
    out = augment.random_corruption(images, 0.5, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8
    assert out.shape == images.shape
    changed = (out != images).flatten(1).any(1)
    assert 150 < int(changed.sum()) < 250
    assert torch.equal(augment.random_corruption(images, 0.0), images)
    assert torch.equal(images, photos(400))  # the input batch is not modified in place


def test_recalibrated_batchnorm_has_the_measured_statistics_and_computes_the_same():
    torch.manual_seed(0)
    net = build("resnet18", 10, max_pool=False).eval()
    batches = [photos(16, seed) for seed in range(3)]
    first = net.backbone.bn1  # the stem's BatchNorm: its input is the first convolution's output
    stem_inputs = torch.cat([net.backbone.conv1(net.preprocess(b)) for b in batches]).detach()
    with torch.no_grad():
        before = net(batches[0])
    recalibrate_batchnorm(net, batches)
    with torch.no_grad():
        after = net(batches[0])
    assert torch.allclose(first.running_mean, stem_inputs.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(first.running_var, stem_inputs.var((0, 2, 3), unbiased=False), rtol=1e-3, atol=1e-5)
    assert not torch.allclose(first.running_mean, torch.zeros_like(first.running_mean))
    assert torch.allclose(before, after, atol=1e-4)
    net.train()
    with torch.no_grad():  # batch statistics are now close to the running ones: training starts where eval is
        trained_mode = net(torch.cat(batches))
    assert torch.allclose(trained_mode[:16], after, atol=0.5)


def test_a_safetensors_file_warm_starts_the_network(tmp_path):
    source = build("mlp", 10)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    warm = LitClassifier(arch="mlp", init_weights=str(path))
    for name, tensor in warm.net.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name


def test_the_robust_recipe_fine_tunes_the_committed_weights_on_the_shipped_split():
    robust, gpu = compose_config(["experiment=robust"]), compose_config(["experiment=ship_gpu"])
    assert robust.model.init_weights == str(SHIPPED_DIR / "weights" / "resnet18-cifar10.safetensors")
    assert (SHIPPED_DIR / "weights" / "resnet18-cifar10.safetensors").is_file()
    assert robust.model.recalibrate_batchnorm > 0  # the committed weights have BatchNorm folded
    assert 0 < robust.model.corruption_p < 1  # clean images too, or clean accuracy is forgotten
    assert robust.model.arch_kwargs == gpu.model.arch_kwargs
    assert (robust.data.val_size, robust.data.split_seed) == (gpu.data.val_size, gpu.data.split_seed)
    assert robust.model.lr < gpu.model.lr / 10


def test_cpu_precision_is_bf16_only_with_bf16_instructions():
    assert cpu_precision({"avx2", "avx512f", "avx512_bf16"}) == "bf16-mixed"
    assert cpu_precision({"avx2", "amx_bf16"}) == "bf16-mixed"
    assert cpu_precision({"avx2", "fma", "avx512f"}) == "32-true"  # AVX-512 without its bf16 extension
    assert compose_config([]).trainer.precision == cpu_precision()


def test_the_anneal_continues_the_robust_runs_first_epoch_with_the_same_network_and_data():
    robust, anneal = compose_config(["experiment=robust"]), compose_config(["experiment=robust_anneal"])
    assert anneal.model.init_weights == f"{robust.paths.ckpt_root}/{robust.run_name}/epoch000.ckpt"
    assert anneal.run_name != robust.run_name
    assert anneal.model.recalibrate_batchnorm == 0  # a training checkpoint has real BatchNorm statistics
    assert anneal.model.lr < robust.model.lr
    assert anneal.model.arch_kwargs == robust.model.arch_kwargs
    assert anneal.model.corruption_p == robust.model.corruption_p
    assert (anneal.data.val_size, anneal.data.split_seed) == (robust.data.val_size, robust.data.split_seed)

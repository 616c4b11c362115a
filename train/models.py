"""Network builders. Every network takes the batch exactly as the ONNX file will: uint8 [N, H, W, 3] RGB.

`Preprocess` (cast, scale, normalise, NHWC -> NCHW) is part of the network, so the exported graph carries the
normalisation and serving can never get it wrong. Its mean/std are buffers: set from the training data, saved in
the checkpoint, exported with the weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import timm
import torch
from torch import nn
from torch.nn import functional as F


class Preprocess(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("std", torch.ones(1, 3, 1, 1))

    def set_stats(self, mean: list[float], std: list[float]) -> None:
        self.mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
        self.std.copy_(torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # permute(0, 3, 1, 2) of a contiguous NHWC tensor is already channels_last in memory: no copy.
        x = image.permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std


class Classifier(nn.Sequential):
    """uint8 NHWC images -> logits."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.preprocess = Preprocess()
        self.backbone = backbone


class Upsample(nn.Module):
    """ImageNet-pretrained weights expect larger objects than CIFAR's 32x32."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


def resnet18_cifar(num_classes: int, max_pool: bool = False) -> nn.Module:
    """timm ResNet-18 with a CIFAR stem: a 3x3 stride-1 conv; the max-pool is optional (4x cheaper, less accurate)."""
    net = timm.create_model("resnet18", pretrained=False, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    if not max_pool:
        net.maxpool = nn.Identity()
    return net


def resnet18_pretrained(num_classes: int, input_size: int = 128, download: bool = True) -> nn.Module:
    """ImageNet-pretrained timm ResNet-18 on upsampled input. `download` fetches the ImageNet weights (online users);
    rebuilding a trained checkpoint passes False, since its own weights replace them."""
    net = timm.create_model("resnet18", pretrained=download, num_classes=num_classes)
    return nn.Sequential(Upsample(input_size), net)


def mlp(num_classes: int, hidden: int = 512, image_size: int = 32) -> nn.Module:
    """A small MLP for quick development runs."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3 * image_size * image_size, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


ARCHITECTURES = {"resnet18": resnet18_cifar, "resnet18_pretrained": resnet18_pretrained, "mlp": mlp}


def build(arch: str, num_classes: int, **kwargs) -> Classifier:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return Classifier(ARCHITECTURES[arch](num_classes, **kwargs))


def network_state(module_state: dict) -> dict:
    """The network's weights out of a `LitClassifier` state dict (its `net.` prefix removed)."""
    return {k.removeprefix("net."): v for k, v in module_state.items() if k.startswith("net.")}


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Give every BatchNorm the statistics its inputs have over `batches`, without changing what it computes.

    A BatchNorm computes scale * x + shift with scale = weight / sqrt(var + eps) and shift = bias - mean * scale.
    With the measured mean m and variance v it keeps scale and shift if weight = scale * sqrt(v + eps) and
    bias = shift + scale * m. Used on weights whose BatchNorm was folded away (identity statistics).
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    moments = {norm: torch.zeros(3, norm.num_features, dtype=torch.float64) for norm in norms}

    def measure(norm: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0].double().transpose(0, 1).reshape(norm.num_features, -1)
        moments[norm] += torch.stack([torch.full_like(x[:, 0], x.shape[1]), x.sum(1), (x * x).sum(1)])

    hooks = [norm.register_forward_pre_hook(measure) for norm in norms]
    training = net.training
    net.eval()
    try:
        for images in batches:
            net(images)
    finally:
        net.train(training)
        for hook in hooks:
            hook.remove()
    for norm in norms:
        count, total, squares = moments[norm]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0)
        scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
        shift = norm.bias.double() - norm.running_mean.double() * scale
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.weight.copy_(scale * torch.sqrt(var + norm.eps))
        norm.bias.copy_(shift + scale * mean)

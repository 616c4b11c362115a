"""Weight-space ensembles of a fine-tune and its warm start (WiSE-FT): for each mixing weight alpha, the network
whose weights are (1 - alpha) * warm start + alpha * fine-tuned, with BatchNorm statistics measured again on training
pictures (half of them corrupted, as the fine-tune saw them), written as a checkpoint `python -m export` reads.

    python benchmarks/finetune/interpolate.py build/train/pilot-NAME/last.ckpt --alpha 0.5 0.7 --out build/train
    python benchmarks/finetune/interpolate.py CKPT --stages 1 1 0.5 0 0 0   # one alpha per stage, input to head

A fine-tune that gains robustness but loses clean accuracy can give some of the gain back for most of the loss:
alpha moves along that trade without training again. Per stage, the idea that robustness to what happens to pixels
lives in the first layers and clean accuracy and the outliers' separation in the last ones: the first stages from
the fine-tune, the last from the warm start. Measured worse than one alpha on every axis (README.md, round four).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.optim.swa_utils import update_bn

from contract.paths import PROCESSED_DIR
from train import augment
from train.datamodule import CIFAR10DataModule
from train.models import build, network_state, recalibrate_batchnorm
from train.module import warm_start_state


def training_batches(val_size: int, count: int, corruption_p: float, seed: int = 0) -> list[torch.Tensor]:
    """`count` batches of 256 training pictures (the run's split), `corruption_p` of them corrupted."""
    data = CIFAR10DataModule(data_dir=str(PROCESSED_DIR), val_size=val_size)
    data.setup("fit")
    images = torch.as_tensor(data.datasets["train"].images)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)[: count * 256]
    return [augment.random_corruption(images[i], corruption_p, generator) for i in order.split(256)]


# A ResNet's stages from input to head, as its parameters are named (backbone.<stage>...).
STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",), ("fc",))


def stage_alpha(alphas: tuple[float, ...]):
    """The mixing weight of each parameter: `alphas` has one per entry of STAGES, or one for the whole network."""

    def of(key: str) -> float:
        if len(alphas) == 1:
            return alphas[0]
        parts = key.split(".")
        name = parts[1] if parts[0] == "backbone" and len(parts) > 1 else ""
        return next((a for a, stage in zip(alphas, STAGES, strict=True) if name in stage), alphas[-1])

    return of


def mix(start: dict, tuned: dict, alpha) -> dict:
    """Floating-point tensors interpolated (alpha: a weight, or a function of the parameter's name); counters
    (num_batches_tracked) taken from the fine-tune."""
    weight = alpha if callable(alpha) else (lambda _key: alpha)
    return {k: (1 - weight(k)) * start[k] + weight(k) * v if v.is_floating_point() else v for k, v in tuned.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a fine-tune's checkpoint (its init_weights is the warm start)")
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--alpha", type=float, nargs="+", help="weights of the fine-tune, 0..1: one network each")
    choice.add_argument("--stages", type=float, nargs=len(STAGES), help="one network, one weight per stage")
    parser.add_argument("--out", type=Path, default=Path("build/train"), help="writes OUT/wise-<run>-a<alpha>/")
    parser.add_argument("--batches", type=int, default=40, help="batches of 256 that measure BatchNorm again")
    args = parser.parse_args()
    torch.manual_seed(0)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    batches = training_batches(2000, args.batches, hparams.get("corruption_p", 0.5))

    def network(state: dict) -> torch.nn.Module:
        net = build(hparams["arch"], hparams["num_classes"], **(hparams.get("arch_kwargs") or {}))
        net.load_state_dict(state, strict=True)
        return net

    # The committed weights have BatchNorm folded (identity statistics): give them the statistics the fine-tune's
    # parameters are expressed in (same function), so the two sets of weights mean the same thing when mixed.
    start = network(warm_start_state(hparams["init_weights"]))
    recalibrate_batchnorm(start, batches[:8])
    tuned = network_state(ckpt["state_dict"])
    plans = {f"a{a:g}": stage_alpha((a,)) for a in args.alpha or ()}
    if args.stages:
        plans["s" + "-".join(f"{a:g}" for a in args.stages)] = stage_alpha(tuple(args.stages))
    for name, alpha in plans.items():
        net = network(mix(start.state_dict(), tuned, alpha))
        with torch.no_grad():
            update_bn(batches, net)
        net.eval()
        out = args.out / f"wise-{args.checkpoint.parent.name}-{name}" / "last.ckpt"
        out.parent.mkdir(parents=True, exist_ok=True)
        state = {f"net.{k}": v for k, v in net.state_dict().items()}
        torch.save({"state_dict": state, "hyper_parameters": hparams, "labels": ckpt.get("labels")}, out)
        print(f"{name} -> {out}")


if __name__ == "__main__":
    main()

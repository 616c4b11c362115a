"""Load the network to export: a Lightning checkpoint of `train.module.LitClassifier` (weights_only) or a committed
safetensors weights file with its JSON sidecar (export/weights_file.py), and rebuild it.

    python -m export.checkpoint CHECKPOINT OUT.safetensors    # a training run's weights, in the committed format
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from export import weights_file
from export.errors import ExportError
from train.models import ARCHITECTURES, Classifier, build, network_state


@dataclass
class LoadedCheckpoint:
    path: Path
    net: Classifier
    labels: list[str]
    hparams: dict
    # The training run's results (metrics.json beside a checkpoint, or the weights file's `training`).
    training: dict = field(default_factory=dict)
    # Where a weights file's tensors came from (its sidecar's `origin`); None for a training checkpoint.
    origin: dict | None = None

    @property
    def arch(self) -> str:
        return self.hparams["arch"]


def weights_hash(net: torch.nn.Module) -> str:
    """Content hash of the weights and buffers: the model's version, independent of file names and dates."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def load(path: Path) -> LoadedCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: checkpoint not found")
    if path.suffix == weights_file.SUFFIX:
        return load_weights(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise ExportError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ExportError(f"{path}: not a Lightning checkpoint (no state_dict/hyper_parameters)")
    metrics = path.parent / "metrics.json"  # written by `python -m train` beside the checkpoint
    training = json.loads(metrics.read_text()) if metrics.is_file() else {}
    hparams = ckpt["hyper_parameters"]
    return rebuild(path, dict(hparams), list(ckpt.get("labels") or []), network_state(ckpt["state_dict"]), training)


def load_weights(path: Path) -> LoadedCheckpoint:
    """A safetensors weights file: the network's tensors, described by the sidecar JSON beside it."""
    state, description = weights_file.read(path)
    hparams = description.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise ExportError(f"{weights_file.sidecar_path(path)}: no hyper_parameters (arch, arch_kwargs, num_classes)")
    loaded = rebuild(path, hparams, list(description.get("labels") or []), state, description.get("training") or {})
    loaded.origin = description.get("origin")
    return loaded


def rebuild(path: Path, hparams: dict, labels: list[str], state: dict, training: dict) -> LoadedCheckpoint:
    arch = hparams.get("arch")
    if arch not in ARCHITECTURES:
        raise ExportError(f"{path}: checkpoint of another model class (arch={arch!r}; known: {sorted(ARCHITECTURES)})")
    num_classes = int(hparams.get("num_classes", 10))
    if len(labels) != num_classes:
        raise ExportError(f"{path}: has {len(labels)} labels for {num_classes} classes")
    kwargs = dict(hparams.get("arch_kwargs") or {})
    if arch == "resnet18_pretrained":
        kwargs["download"] = False  # the checkpoint's weights replace ImageNet's: exporting never downloads
    net = build(arch, num_classes, **kwargs)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{path}: weights do not fit a {arch} network ({exc})") from exc
    net.eval()
    return LoadedCheckpoint(path=path, net=net, labels=labels, hparams=hparams, training=training)


def describe(loaded: LoadedCheckpoint, input_size: tuple[int, int] = (32, 32), origin: dict | None = None) -> dict:
    """The sidecar of `loaded`'s weights: what rebuilds the network, and where its weights came from."""
    return {
        "version": weights_hash(loaded.net),
        "arch": loaded.arch,
        "hyper_parameters": loaded.hparams,
        "labels": loaded.labels,
        "input_size": list(input_size),
        "normalisation": {  # also in the tensors (preprocess.mean/std): here for the reader
            "mean": loaded.net.preprocess.mean.flatten().tolist(),
            "std": loaded.net.preprocess.std.flatten().tolist(),
        },
        "origin": origin or {"checkpoint": str(loaded.path)},
        "training": loaded.training,
    }


def save_weights(loaded: LoadedCheckpoint, out: Path, origin: dict | None = None) -> Path:
    return weights_file.write(loaded.net.state_dict(), out, describe(loaded, origin=origin))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.checkpoint", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="Lightning checkpoint written by `python -m train`")
    parser.add_argument("out", type=Path, help=f"the weights file to write ({weights_file.SUFFIX}, JSON beside it)")
    args = parser.parse_args(argv)
    try:
        loaded = load(args.checkpoint)
        out = save_weights(loaded, args.out)
    except ExportError as exc:
        print(f"export.checkpoint: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} and {weights_file.sidecar_path(out).name} (version {weights_hash(loaded.net)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

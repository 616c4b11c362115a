"""Load a Lightning checkpoint of `train.module.LitClassifier` safely (weights_only) and rebuild its network."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from export.errors import ExportError
from train.models import ARCHITECTURES, Classifier, build, network_state


@dataclass
class LoadedCheckpoint:
    path: Path
    net: Classifier
    labels: list[str]
    hparams: dict

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
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise ExportError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ExportError(f"{path}: not a Lightning checkpoint (no state_dict/hyper_parameters)")
    hparams = ckpt["hyper_parameters"]
    arch = hparams.get("arch")
    if arch not in ARCHITECTURES:
        raise ExportError(f"{path}: checkpoint of another model class (arch={arch!r}; known: {sorted(ARCHITECTURES)})")
    num_classes = int(hparams.get("num_classes", 10))
    labels = list(ckpt.get("labels") or [])
    if len(labels) != num_classes:
        raise ExportError(f"{path}: has {len(labels)} labels for {num_classes} classes")
    kwargs = dict(hparams.get("arch_kwargs") or {})
    if arch == "resnet18_pretrained":
        kwargs["download"] = False  # the checkpoint's weights replace ImageNet's: exporting never downloads
    net = build(arch, num_classes, **kwargs)
    try:
        net.load_state_dict(network_state(ckpt["state_dict"]), strict=True)
    except RuntimeError as exc:
        raise ExportError(f"{path}: weights do not fit a {hparams['arch']} network ({exc})") from exc
    net.eval()
    return LoadedCheckpoint(path=path, net=net, labels=labels, hparams=dict(hparams))

"""Checkpoint -> model.onnx: uint8 [N, H, W, 3] in, float32 logits out, preprocessing inside, metadata attached."""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from contract import model_file
from contract.paths import PROJECT_ROOT
from export import metadata
from export.checkpoint import LoadedCheckpoint, weights_hash
from export.errors import ExportError
from export.plain_flatten import plain_flatten

OPSET = 18
RESIZE_POLICY = model_file.RESIZE_CENTER_CROP  # the preprocessing the network was trained with: square CIFAR thumbnails


class FlipAverage(nn.Module):
    """Test-time augmentation inside the graph: the mean of the logits of the image and its mirror image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # One call on the doubled batch, not two calls: the graph then holds each weight once (the int8 quantizer
        # would copy them per call), and the runtime runs one bigger batch.
        count = image.shape[0]
        logits = self.net(torch.cat([image, image.flip(2)]))
        return (logits[:count] + logits[count:]) / 2


def git_sha() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        # No git checkout (e.g. the training image): the build passes the commit in.
        return os.environ.get("GIT_SHA", "unknown")
    return f"{sha}-dirty" if dirty else sha


def data_md5() -> str:
    """The DVC hash of data/raw: names exactly which data the model was trained on."""
    import yaml

    try:
        outs = yaml.safe_load((PROJECT_ROOT / "data.dvc").read_text())["outs"]
        return str(outs[0]["md5"])
    except (OSError, KeyError, IndexError, TypeError):
        return "unknown"


def graph_module(loaded: LoadedCheckpoint, hflip_tta: bool) -> nn.Module:
    module = FlipAverage(loaded.net) if hflip_tta else loaded.net
    return module.eval().float()


def export(
    loaded: LoadedCheckpoint,
    out: Path,
    *,
    input_size: tuple[int, int] = (32, 32),
    hflip_tta: bool = False,
    metrics: dict | None = None,
    config: dict | None = None,
) -> dict:
    """Writes `out` atomically and returns the metadata it carries."""
    module = graph_module(loaded, hflip_tta)
    example = torch.randint(0, 256, (2, *input_size, model_file.INPUT_CHANNELS), dtype=torch.uint8)
    props = {
        model_file.LABELS: loaded.labels,
        model_file.INPUT_SIZE: list(input_size),
        model_file.RESIZE: RESIZE_POLICY,
        model_file.MODEL_NAME: f"cifar10-{loaded.arch}",
        model_file.VERSION: weights_hash(loaded.net),
        model_file.CREATED: datetime.now(UTC).isoformat(timespec="seconds"),
        model_file.GIT_SHA: git_sha(),
        model_file.DATA_MD5: data_md5(),
        model_file.METRICS: metrics or {},
        model_file.PARITY: {},
        model_file.QUANTIZATION: model_file.QUANTIZATION_NONE,
        model_file.TTA: model_file.TTA_HFLIP if hflip_tta else model_file.TTA_NONE,
        model_file.CONFIG: config or {"model": loaded.hparams},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                module,
                (example,),
                input_names=[model_file.INPUT_NAME],
                output_names=[model_file.OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                opset_version=OPSET,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise ExportError(f"{loaded.path}: ONNX export failed ({str(cause).splitlines()[0]})") from exc
    model = program.model_proto
    plain_flatten(model)  # a graph every runtime compiles right (export/plain_flatten.py)
    metadata.set_props(model, props)
    metadata.save_checked(model, out)
    return props

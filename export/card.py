"""The model card: origin, metrics, parity and quantization; JSON beside the model and in its metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contract import model_file
from contract.paths import PROJECT_ROOT
from export.atomic import atomic_path

INTENDED_USE = (
    "Classifies a photo into one of the ten CIFAR-10 classes. Trained on 32x32 thumbnails: a photo is centre-cropped "
    "to a square and shrunk to 32x32 first, so small or off-centre objects and anything outside the ten classes are "
    "classified unreliably (it always answers one of the ten)."
)


# The metadata the card repeats under the same names (it replaces `parity` and `quantization` by the full reports).
FROM_METADATA = (
    model_file.MODEL_NAME, model_file.VERSION, model_file.CREATED, model_file.GIT_SHA, model_file.DATA_MD5,
    model_file.LABELS,
)  # fmt: skip


def portable(config: Any) -> Any:
    """A training config with no path of the machine it ran on: a path inside the run's checkout (the config's own
    `paths.root`, else this repository) becomes relative to it, any other absolute path keeps its last part
    (".../name"). The card and GET /model show the config to anyone; where a checkout lived is nobody's business, and
    the result is the same whichever checkout exports the weights."""
    root = (config.get("paths") or {}).get("root") if isinstance(config, dict) else None
    return _portable(config, Path(root) if isinstance(root, str) and root.startswith("/") else PROJECT_ROOT)


def _portable(value: Any, root: Path) -> Any:
    if isinstance(value, dict):
        return {key: _portable(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item, root) for item in value]
    if isinstance(value, str) and value.startswith("/"):
        path = Path(value)
        return path.relative_to(root).as_posix() or "." if path.is_relative_to(root) else f".../{path.name}"
    return value


def build(meta: dict, training: dict, parity: dict, quantization: dict | None) -> dict:
    return {
        **{key: meta[key] for key in FROM_METADATA},
        "input": model_file.input_spec(meta[model_file.INPUT_SIZE]),
        model_file.RESIZE: meta[model_file.RESIZE],
        model_file.TTA: meta.get(model_file.TTA, model_file.TTA_NONE),
        "intended_use": INTENDED_USE,
        "training": {
            "test_top1_pytorch": training.get("test_top1"),
            "per_class_accuracy": training.get("per_class_accuracy"),
            "confusion_matrix": training.get("confusion_matrix"),
            "epochs": training.get("epochs"),
        },
        model_file.CONFIG: meta[model_file.CONFIG],
        model_file.PARITY: parity,
        model_file.QUANTIZATION: quantization or {"scheme": model_file.QUANTIZATION_NONE},
    }


def write(card: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")

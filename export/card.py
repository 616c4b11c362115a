"""The model card: origin, metrics, parity and quantization; JSON beside the model and in its metadata."""

from __future__ import annotations

import json
from pathlib import Path

from export.atomic import atomic_path

INTENDED_USE = (
    "Classifies a photo into one of the ten CIFAR-10 classes. Trained on 32x32 thumbnails: a photo is centre-cropped "
    "to a square and shrunk to 32x32 first, so small or off-centre objects and anything outside the ten classes are "
    "classified unreliably (it always answers one of the ten)."
)


def build(meta: dict, training: dict, parity: dict, quantization: dict | None) -> dict:
    return {
        "model_name": meta["model_name"],
        "version": meta["version"],
        "created": meta["created"],
        "git_sha": meta["git_sha"],
        "data_md5": meta["data_md5"],
        "labels": meta["labels"],
        "input": {"name": "image", "dtype": "uint8", "shape": ["N", *meta["input_size"], 3], "color": "RGB"},
        "resize": meta["resize"],
        "tta": meta.get("tta", "none"),
        "intended_use": INTENDED_USE,
        "training": {
            "test_top1_pytorch": training.get("test_top1"),
            "per_class_accuracy": training.get("per_class_accuracy"),
            "confusion_matrix": training.get("confusion_matrix"),
            "epochs": training.get("epochs"),
        },
        "config": meta["config"],
        "parity": parity,
        "quantization": quantization or {"scheme": "none"},
    }


def write(card: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")

"""The network's weights as a file a fresh clone can carry in git: safetensors (no pickle) + a JSON sidecar.

`NAME.safetensors` holds the network's state dict (the tensors only: no optimizer state, no code). `NAME.json`
beside it says what the tensors are for: the architecture and its arguments, the labels, the input size, and where
the weights came from (the training run's config and test metrics, or the release they were recovered from). Its
`sha256` names the exact tensor file, so a sidecar never describes other weights than its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from export.atomic import atomic_path
from export.errors import ExportError

SUFFIX = ".safetensors"
FORMAT = 1


def sidecar_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(state: dict[str, torch.Tensor], path: Path, description: dict) -> Path:
    """`path` (.safetensors) and its sidecar; `description` is the sidecar's content (arch, labels, ...)."""
    path = Path(path)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
        sha = file_sha256(tmp)
    sidecar = {"format": FORMAT, "weights": path.name, "sha256": sha, **description}
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, sidecar) of a weights file; ExportError when either is missing, unreadable or they disagree."""
    path = Path(path)
    meta_path = sidecar_path(path)
    if not meta_path.is_file():
        raise ExportError(f"{path}: its description {meta_path.name} is missing beside it")
    try:
        description = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{meta_path}: not a readable JSON file ({exc})") from exc
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ExportError(f"{meta_path}: not a weights description of format {FORMAT}")
    sha = file_sha256(path)
    if description.get("sha256") != sha:
        raise ExportError(f"{meta_path}: describes other weights (sha256 {description.get('sha256')}, file {sha})")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ExportError(f"{path}: not a readable safetensors file ({exc})") from exc
    return state, description

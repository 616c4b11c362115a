"""Read and write the ONNX file's `metadata_props`: the self-description the service relies on."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from export.atomic import atomic_path
from export.errors import ExportError

# Values that are JSON documents rather than plain strings.
JSON_KEYS = ("labels", "input_size", "metrics", "parity", "config", "card")


def load_model(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: ONNX file not found") from exc
    except Exception as exc:
        raise ExportError(f"{path}: not a readable ONNX file ({exc})") from exc


def read(path: Path) -> dict:
    props = {p.key: p.value for p in load_model(path).metadata_props}
    return {k: json.loads(v) if k in JSON_KEYS else v for k, v in props.items()}


def encode(props: dict) -> dict[str, str]:
    return {k: json.dumps(v, sort_keys=True) if k in JSON_KEYS else str(v) for k, v in props.items()}


def set_props(model: onnx.ModelProto, props: dict) -> None:
    merged = {p.key: p.value for p in model.metadata_props} | encode(props)
    del model.metadata_props[:]
    for key, value in sorted(merged.items()):
        model.metadata_props.add(key=key, value=value)


def save_checked(model: onnx.ModelProto, path: Path) -> None:
    """onnx.checker first; then an atomic write."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the ONNX graph fails onnx.checker ({str(exc).splitlines()[0]})") from exc
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def update(path: Path, props: dict) -> None:
    model = load_model(path)
    set_props(model, props)
    save_checked(model, path)

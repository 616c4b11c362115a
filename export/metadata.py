"""Read and write the ONNX file's `metadata_props`: the self-description the service relies on.

The keys and their encoding are the contract's (contract/model_file.py); this module moves them in and out of files.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from contract import model_file
from export.atomic import atomic_path
from export.errors import ExportError


def load_model(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: ONNX file not found") from exc
    except Exception as exc:
        raise ExportError(f"{path}: not a readable ONNX file ({exc})") from exc


def raw_props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def read(path: Path) -> dict:
    try:
        return model_file.decode(raw_props(load_model(path)))
    except model_file.ContractError as exc:
        raise ExportError(f"{path}: {exc}") from exc


def set_props(model: onnx.ModelProto, props: dict) -> None:
    merged = raw_props(model) | model_file.encode(props)
    del model.metadata_props[:]
    for key, value in sorted(merged.items()):
        model.metadata_props.add(key=key, value=value)


def save_checked(model: onnx.ModelProto, path: Path) -> None:
    """onnx.checker and the contract's own check of the metadata (what the service will check) first; then an atomic
    write, so export never writes a file the service would refuse."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the ONNX graph fails onnx.checker ({str(exc).splitlines()[0]})") from exc
    try:
        model_file.validate(raw_props(model))
    except model_file.ContractError as exc:
        raise ExportError(f"{path}: the metadata breaks the contract ({exc})") from exc
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def update(path: Path, props: dict) -> None:
    model = load_model(path)
    set_props(model, props)
    save_checked(model, path)

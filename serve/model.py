"""Load an ONNX file that follows the contract in DESIGN.md, check it, and run it.

Everything the service knows about the model comes from the file: its input/output signature and the
`metadata_props` (labels, input size, resize policy, version, card...). Nothing is imported from training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serve.imaging import RESIZE_POLICIES

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
REQUIRED_KEYS = ("labels", "input_size", "resize", "model_name", "version")
JSON_KEYS = ("labels", "input_size", "metrics", "parity", "config", "card")
TEXT_KEYS = ("model_name", "version", "created", "git_sha", "data_md5", "quantization", "resize")


class ModelLoadError(Exception):
    """The model file is missing or does not follow the contract; the message is one line."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = " ".join(problem.split())  # ORT messages span lines; the contract is one line
        super().__init__(f"cannot load model {path}: {self.problem}")


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    session: ort.InferenceSession
    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W)
    resize: str
    name: str
    version: str
    metadata: dict[str, Any] = field(repr=False)

    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 logits [N, C]."""
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: images})
        return logits

    def describe(self) -> dict[str, Any]:
        meta = self.metadata
        return {
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            "input_size": list(self.input_size),
            "resize": self.resize,
            "quantization": meta.get("quantization", "none"),
            "created": meta.get("created"),
            "git_sha": meta.get("git_sha"),
            "data_md5": meta.get("data_md5"),
            "config": meta.get("config"),
            "metrics": meta.get("metrics"),
            "parity": meta.get("parity"),
            "card": meta.get("card"),
        }


def load_model(path: Path, *, threads: int = 0) -> LoadedModel:
    """Open the file, check the signature and metadata against the contract, and run it once."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(path, "file not found")
    if not path.is_file():
        raise ModelLoadError(path, "not a regular file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Image decoding runs on the same CPUs: idle ORT workers must sleep, not spin.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # our own one-line error replaces ORT's multi-line log
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several unrelated types for unreadable or invalid graphs
        raise ModelLoadError(path, f"not a valid ONNX model ({exc})") from None

    metadata = _parse_metadata(path, session.get_modelmeta().custom_metadata_map)
    labels, input_size, resize = _check_metadata(path, metadata)
    _check_signature(path, session, input_size, len(labels))
    model = LoadedModel(
        path=path,
        session=session,
        labels=labels,
        input_size=input_size,
        resize=resize,
        name=metadata["model_name"],
        version=metadata["version"],
        metadata=metadata,
    )
    _check_runs(model)
    return model


def _parse_metadata(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise ModelLoadError(path, f"metadata_props lack {', '.join(missing)}")
    metadata: dict[str, Any] = {key: raw[key] for key in TEXT_KEYS if key in raw}
    for key in JSON_KEYS:
        if key in raw:
            try:
                metadata[key] = json.loads(raw[key])
            except json.JSONDecodeError:
                raise ModelLoadError(path, f"metadata {key!r} is not valid JSON") from None
    return metadata


def _check_metadata(path: Path, meta: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, int], str]:
    labels = meta["labels"]
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise ModelLoadError(path, "metadata 'labels' must be a non-empty JSON list of distinct strings")
    size = meta["input_size"]
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ModelLoadError(path, f"metadata 'input_size' must be [H, W] positive integers, got {size!r}")
    resize = meta["resize"]
    if resize not in RESIZE_POLICIES:
        known = ", ".join(sorted(RESIZE_POLICIES))
        raise ModelLoadError(path, f"unknown resize policy {resize!r} (this service knows: {known})")
    return tuple(labels), (size[0], size[1]), resize


def _check_signature(path: Path, session: ort.InferenceSession, size: tuple[int, int], classes: int) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if set(inputs) != {INPUT_NAME}:
        raise ModelLoadError(path, f"expected one input {INPUT_NAME!r}, found {sorted(inputs)}")
    if OUTPUT_NAME not in outputs:
        raise ModelLoadError(path, f"no output {OUTPUT_NAME!r} (outputs: {sorted(outputs)})")
    image, logits = inputs[INPUT_NAME], outputs[OUTPUT_NAME]
    expected = [None, size[0], size[1], 3]
    if image.type != "tensor(uint8)" or not _shape_fits(image.shape, expected):
        raise ModelLoadError(
            path, f"input {INPUT_NAME!r} is {image.type} {image.shape}, expected uint8 [N, *input_size, 3]"
        )
    if logits.type != "tensor(float)" or not _shape_fits(logits.shape, [None, classes]):
        raise ModelLoadError(
            path, f"output {OUTPUT_NAME!r} is {logits.type} {logits.shape}, expected float32 [N, {classes}]"
        )


def _shape_fits(shape: list[Any], expected: list[int | None]) -> bool:
    """Symbolic or unknown dims (strings, None) fit anything; fixed dims must match."""
    if len(shape) != len(expected):
        return False
    return all(
        want is None or not isinstance(dim, int) or dim == want for dim, want in zip(shape, expected, strict=True)
    )


def _check_runs(model: LoadedModel) -> None:
    """One real run with batch 1 and 2: the batch dim must be dynamic and the output [N, C]."""
    height, width = model.input_size
    for batch in (1, 2):
        try:
            logits = model.run(np.zeros((batch, height, width, 3), dtype=np.uint8))
        except Exception as exc:  # any ORT runtime failure means the file breaks the contract
            raise ModelLoadError(model.path, f"a trial run with batch {batch} failed ({exc})") from None
        if logits.shape != (batch, len(model.labels)) or logits.dtype != np.float32:
            raise ModelLoadError(
                model.path,
                f"a trial run with batch {batch} gave {logits.dtype} {logits.shape}, "
                f"expected float32 ({batch}, {len(model.labels)})",
            )

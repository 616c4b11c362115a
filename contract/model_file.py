"""The ONNX model file: its tensors, its `metadata_props` keys, and how they are written (export) and read (serve).

Stdlib only, so the torch-free service and every tool that opens a model file can share it. A key that is not
listed here cannot be written (`encode` refuses it), so a new key reaches the service and `GET /model` by
construction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ---- the graph's signature: uint8 [N, H, W, 3] RGB in, float32 [N, classes] logits out.
# The graph casts, scales and normalises itself, so a reader of the file never repeats (or gets wrong) training's
# normalisation; it only brings a photo to input_size with the `resize` policy.
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Optional second output: float32 [N, D], the network's penultimate features after global pooling (what the
# prediction log summarises, contract/prediction_log.py). A model without it still serves; its log lacks it.
EMBEDDING_NAME = "embedding"
# Optional output: float32 [N], how unlike the training pictures the input is (higher: less like them), computed in
# the graph from the network's own features (export/outlier_score.py). Above the threshold in the `outlier` key, the
# picture is taken to be none of the classes. A model without it still serves; its answers say `outlier: null`.
OUTLIER_SCORE_NAME = "outlier_score"
# Optional output: float32 [N, h, w, classes], the class activation map: each class's head weights applied to the
# network's last feature map cell by cell (its mean over h and w, plus the bias, is that class's raw logit). What
# the picture's regions did for each answer; read only when an explanation is asked for (export/explain.py).
CAM_NAME = "class_activation"
INPUT_DTYPE = "uint8"
OUTPUT_DTYPE = "float32"
INPUT_CHANNELS = 3
INPUT_COLOR = "RGB"
BATCH_DIM = "N"  # the symbolic (dynamic) batch dimension

# ---- how a photo of any size becomes input_size: the policies a model may name in `resize`.
RESIZE_CENTER_CROP = "center-crop-resize"  # centre-crop to a square, then bilinear resize to input_size
RESIZE_POLICIES = (RESIZE_CENTER_CROP,)

# ---- metadata_props keys, in the order GET /model shows them.
MODEL_NAME = "model_name"
VERSION = "version"  # content hash of the weights (export.checkpoint.weights_hash)
LABELS = "labels"  # JSON list, index order of the logits
INPUT_SIZE = "input_size"  # JSON [H, W]
RESIZE = "resize"  # one of RESIZE_POLICIES
QUANTIZATION = "quantization"  # QUANTIZATION_NONE or the scheme
TTA = "tta"  # test-time augmentation inside the graph: TTA_NONE or TTA_HFLIP
CREATED = "created"  # ISO 8601, UTC
GIT_SHA = "git_sha"  # the commit export ran at ("-dirty" when the checkout had changes)
DATA_MD5 = "data_md5"  # the DVC hash of data/raw the model was trained on
CONFIG = "config"  # JSON: the resolved training config
METRICS = "metrics"  # JSON: test top-1 per precision
PARITY = "parity"  # JSON: the PyTorch/onnxruntime parity report
CARD = "card"  # JSON: the whole model card
# Inside the card: the table of the "none of the ten" benchmark (evaluation/outliers.py), which export's gate compares.
CARD_OUTLIER_BENCHMARK = "outlier_benchmark"
# JSON: how `logits` were calibrated on validation pictures (export/calibration.py): softmax(logits) is a calibrated
# probability in a file that has it.
CALIBRATION = "calibration"
# JSON: the outlier score's method and its `threshold` (OUTLIER_THRESHOLD); required when the graph has the output.
OUTLIER = "outlier"
OUTLIER_THRESHOLD = "threshold"  # inside OUTLIER: a number; scores above it are outliers
# JSON: golden answers (export/golden.py): a few pictures, the outputs the exporting engine gave for them, and how far
# any engine may stray from those outputs (set from the spread between every engine export could run, plus a margin).
# The service runs them on the engine it chose before it becomes ready (serve/golden.py).
GOLDEN = "golden"
GOLDEN_IMAGES = "images"  # inside GOLDEN: base64 of the uint8 [n, H, W, 3] pictures, C order
GOLDEN_SHAPE = "shape"  # inside GOLDEN: [n, H, W, 3]
GOLDEN_OUTPUTS = "outputs"  # inside GOLDEN: output name -> its values for the pictures (nested lists)
GOLDEN_TOLERANCE = "tolerance"  # inside GOLDEN: output name -> the largest absolute difference allowed
# inside GOLDEN: engine -> each output's largest difference at export, its top-1 agreement with the reference on
# validation pictures, and whether it counted towards the tolerance
GOLDEN_MEASURED_WITH = "measured_with"

KEYS = (
    MODEL_NAME, VERSION, LABELS, INPUT_SIZE, RESIZE, QUANTIZATION, TTA,
    CREATED, GIT_SHA, DATA_MD5, CONFIG, METRICS, PARITY, CALIBRATION, OUTLIER, GOLDEN, CARD,
)  # fmt: skip
REQUIRED_KEYS = (LABELS, INPUT_SIZE, RESIZE, MODEL_NAME, VERSION)  # the order a "lack ..." message lists them
OPTIONAL_KEYS = tuple(key for key in KEYS if key not in REQUIRED_KEYS)
JSON_KEYS = frozenset(
    {LABELS, INPUT_SIZE, CONFIG, METRICS, PARITY, CALIBRATION, OUTLIER, GOLDEN, CARD}
)  # the others are plain strings

# ---- values of the plain keys, and what a file without an optional key means (no default here: null).
QUANTIZATION_NONE = "none"
TTA_NONE = "none"
TTA_HFLIP = "hflip"
DEFAULTS = {QUANTIZATION: QUANTIZATION_NONE, TTA: TTA_NONE}
# GET /model's field names, where they differ from the key.
DESCRIBED_AS = {MODEL_NAME: "name"}

# ---- keys inside `metrics`: test-set top-1 (a fraction) as each step measured it.
TOP1_PYTORCH = "test_top1_pytorch"  # the checkpoint in PyTorch (training's test run)
TOP1_FP32 = "test_top1_fp32"  # model.onnx in onnxruntime (the quantization gate)
TOP1_INT8 = "test_top1_int8"  # model.int8.onnx in onnxruntime (the quantization gate)
TOP1 = "test_top1"  # a file that carries one number only


class ContractError(ValueError):
    """The metadata breaks the contract; the message is one line saying what is wrong."""


@dataclass(frozen=True)
class ModelMetadata:
    """A file's metadata once it has passed `validate`: the required keys typed, every known key decoded."""

    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W)
    resize: str
    model_name: str
    version: str
    values: dict[str, Any]


def input_spec(input_size: tuple[int, int] | list[int]) -> dict[str, Any]:
    """The graph's input as the model card states it."""
    height, width = input_size
    shape = [BATCH_DIM, height, width, INPUT_CHANNELS]
    return {"name": INPUT_NAME, "dtype": INPUT_DTYPE, "shape": shape, "color": INPUT_COLOR}


def encode(props: Mapping[str, Any]) -> dict[str, str]:
    """Values -> metadata_props strings: JSON keys as JSON (sorted keys, so the same model gives the same bytes)."""
    unknown = sorted(set(props) - set(KEYS))
    if unknown:
        raise ContractError(
            f"unknown metadata {', '.join(map(repr, unknown))} (the contract's keys: {', '.join(KEYS)})"
        )
    return {key: json.dumps(value, sort_keys=True) if key in JSON_KEYS else str(value) for key, value in props.items()}


def decode(raw: Mapping[str, str]) -> dict[str, Any]:
    """metadata_props strings -> values, for every known key present; keys this contract does not know are left
    out (a newer file still loads). Raises ContractError for a JSON key that is not JSON."""
    values: dict[str, Any] = {key: raw[key] for key in KEYS if key in raw and key not in JSON_KEYS}
    for key in KEYS:
        if key in JSON_KEYS and key in raw:
            try:
                values[key] = json.loads(raw[key])
            except json.JSONDecodeError:
                raise ContractError(f"metadata {key!r} is not valid JSON") from None
    return values


def validate(raw: Mapping[str, str]) -> ModelMetadata:
    """What a reader needs before it trusts a file: the required keys present and well-formed."""
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise ContractError(f"metadata_props lack {', '.join(missing)}")
    values = decode(raw)
    labels = values[LABELS]
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise ContractError(f"metadata {LABELS!r} must be a non-empty JSON list of distinct strings")
    size = values[INPUT_SIZE]
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ContractError(f"metadata {INPUT_SIZE!r} must be [H, W] positive integers, got {size!r}")
    resize = values[RESIZE]
    if resize not in RESIZE_POLICIES:
        raise ContractError(f"unknown resize policy {resize!r} (this service knows: {', '.join(RESIZE_POLICIES)})")
    return ModelMetadata(
        labels=tuple(labels),
        input_size=(size[0], size[1]),
        resize=resize,
        model_name=values[MODEL_NAME],
        version=values[VERSION],
        values=values,
    )


def outlier_threshold(values: Mapping[str, Any]) -> float | None:
    """The outlier score's threshold from decoded metadata; None when the file has none. Raises ContractError when
    the `outlier` key is there but holds no finite number under OUTLIER_THRESHOLD."""
    outlier = values.get(OUTLIER)
    if outlier is None:
        return None
    threshold = outlier.get(OUTLIER_THRESHOLD) if isinstance(outlier, dict) else None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ContractError(f"metadata {OUTLIER!r} must hold a number under {OUTLIER_THRESHOLD!r}")
    return float(threshold)


def golden_summary(golden: Any) -> dict[str, Any] | None:
    """What GET /model shows of the golden answers: how many pictures, the tolerance and the engines it came from,
    not the pictures and outputs themselves (tens of kilobytes)."""
    if not isinstance(golden, dict):
        return None
    shape = golden.get(GOLDEN_SHAPE)
    pictures = shape[0] if isinstance(shape, list) and shape else None
    return {
        "pictures": pictures,
        GOLDEN_TOLERANCE: golden.get(GOLDEN_TOLERANCE),
        GOLDEN_MEASURED_WITH: golden.get(GOLDEN_MEASURED_WITH),
    }


def describe(values: Mapping[str, Any]) -> dict[str, Any]:
    """GET /model's answer: every key of the contract, under its described name, defaulted when the file lacks it
    (the golden answers as their summary)."""
    described = {DESCRIBED_AS.get(key, key): values.get(key, DEFAULTS.get(key)) for key in KEYS}
    described[GOLDEN] = golden_summary(values.get(GOLDEN))
    return described

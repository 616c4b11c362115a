"""A tiny ONNX model that follows the serving contract (built with onnx.helper, no torch): the serve and site
tests' stand-in for a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract import model_file
from contract.model_file import (
    CAM_NAME,
    EMBEDDING_NAME,
    INPUT_CHANNELS,
    INPUT_NAME,
    OUTLIER_SCORE_NAME,
    OUTPUT_NAME,
)

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
INPUT_SIZE = (32, 32)
# The tiny model's outlier score is the mean brightness of the image's BOTTOM half on a 0-10 scale: above this
# threshold (a bright bottom half) the picture is an outlier.
OUTLIER_THRESHOLD = 5.0


def outlier_metadata(threshold: float = OUTLIER_THRESHOLD) -> dict[str, Any]:
    """The `outlier` key's value for a tiny model with the outlier score."""
    return {model_file.OUTLIER_THRESHOLD: threshold, "method": "tiny: bottom half's brightness"}


def contract_metadata(**overrides: Any) -> dict[str, str]:
    """Every key of the contract, encoded by the contract. An override of None deletes the key; a string given for a
    JSON key is written as it is (so a test can write broken JSON)."""
    meta: dict[str, Any] = {
        model_file.LABELS: LABELS,
        model_file.INPUT_SIZE: list(INPUT_SIZE),
        model_file.RESIZE: model_file.RESIZE_CENTER_CROP,
        model_file.MODEL_NAME: "tiny-test",
        model_file.VERSION: "0123abcd",
        model_file.CREATED: "2025-01-01T00:00:00Z",
        model_file.GIT_SHA: "deadbeef",
        model_file.DATA_MD5: "00000000000000000000000000000000",
        model_file.METRICS: {model_file.TOP1: 0.1},
        model_file.PARITY: {"max_abs_logit_diff": 0.0},
        model_file.QUANTIZATION: model_file.QUANTIZATION_NONE,
        model_file.TTA: model_file.TTA_NONE,
        model_file.CONFIG: {"model": "tiny"},
        model_file.CALIBRATION: {"method": "none: the tiny model's logits as they are"},
        model_file.CARD: {"name": "tiny-test", "intended_use": "tests only"},
    }
    meta.update(overrides)
    verbatim = {k: v for k, v in meta.items() if k in model_file.JSON_KEYS and isinstance(v, str)}
    encoded = model_file.encode({k: v for k, v in meta.items() if v is not None and k not in verbatim})
    return encoded | verbatim


def build_model(
    path: Path,
    *,
    metadata: dict[str, str] | None = None,
    input_size: tuple[int, int] = INPUT_SIZE,
    classes: int = len(LABELS),
    input_type: int = TensorProto.UINT8,
    slow_convs: int = 0,
    embedding_dims: int = 0,
    outlier_score: bool = False,
    class_activation: bool = False,
) -> Path:
    """logits = 10 * mean RGB of the image's TOP half / 255, on the first three classes (red -> airplane,
    green -> automobile, blue -> bird), so tests can tell orientation and colour from the answer.
    `slow_convs` adds that many 3x3 convolutions (a result-neutral side branch) to make inference slow.
    `embedding_dims` > 0 adds the contract's optional output `embedding`: float32 [N, embedding_dims], the top half's
    mean RGB through a fixed matrix. `outlier_score` adds the optional output `outlier_score`: float32 [N], the
    bottom half's mean brightness on a 0-10 scale (pair it with contract_metadata(outlier=...) or not, to test both).
    `class_activation` adds the optional output `class_activation`: float32 [N, 2, 2, classes], each quadrant's mean
    RGB through the logits' weights, so the quadrant of a colour is where the map of its class is hot."""
    height, width = input_size
    weights = np.zeros((3, classes), dtype=np.float32)
    for channel in range(min(3, classes)):
        weights[channel, channel] = 10.0 / 255.0
    initializers = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "start"),
        numpy_helper.from_array(np.array([height // 2], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
        numpy_helper.from_array(weights, "weights"),
    ]
    nodes = [
        helper.make_node("Slice", [INPUT_NAME, "start", "end", "axis"], ["top"]),
        helper.make_node("Cast", ["top"], ["top_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["top_f"], ["mean_rgb"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean_rgb", "weights"], ["raw_logits"]),
    ]
    if slow_convs:
        # Burns CPU without changing the answer: conv chain -> multiplied by zero -> added to the logits.
        channels = 32
        rng = np.random.default_rng(0)
        initializers += [
            numpy_helper.from_array(rng.normal(size=(channels, 3, 3, 3)).astype(np.float32) * 0.1, "w_in"),
            numpy_helper.from_array(rng.normal(size=(channels, channels, 3, 3)).astype(np.float32) * 0.05, "w_mid"),
            numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("Cast", [INPUT_NAME], ["image_f"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["image_f"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["nchw", "w_in"], ["conv0"], pads=[1, 1, 1, 1]),
        ]
        for i in range(slow_convs):
            nodes.append(helper.make_node("Conv", [f"conv{i}", "w_mid"], [f"conv{i + 1}"], pads=[1, 1, 1, 1]))
        nodes += [
            helper.make_node("ReduceMean", [f"conv{slow_convs}"], ["pooled"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Mul", ["pooled", "zero"], ["nothing"]),
            helper.make_node("Unsqueeze", ["nothing", "axis"], ["nothing_col"]),
            helper.make_node("Add", ["raw_logits", "nothing_col"], [OUTPUT_NAME]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["raw_logits"], [OUTPUT_NAME]))
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [model_file.BATCH_DIM, classes])]
    if embedding_dims:
        projection = np.random.default_rng(1).normal(size=(3, embedding_dims)).astype(np.float32) / 255.0
        initializers.append(numpy_helper.from_array(projection, "embedding_weights"))
        nodes.append(helper.make_node("MatMul", ["mean_rgb", "embedding_weights"], [EMBEDDING_NAME]))
        dims = [model_file.BATCH_DIM, embedding_dims]
        outputs.append(helper.make_tensor_value_info(EMBEDDING_NAME, TensorProto.FLOAT, dims))
    if outlier_score:
        initializers += [
            numpy_helper.from_array(np.array([height // 2], dtype=np.int64), "bottom_start"),
            numpy_helper.from_array(np.array([height], dtype=np.int64), "bottom_end"),
            numpy_helper.from_array(np.array(10.0 / 255.0, dtype=np.float32), "brightness_scale"),
        ]
        nodes += [
            helper.make_node("Slice", [INPUT_NAME, "bottom_start", "bottom_end", "axis"], ["bottom"]),
            helper.make_node("Cast", ["bottom"], ["bottom_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["bottom_f"], ["bottom_mean"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Mul", ["bottom_mean", "brightness_scale"], [OUTLIER_SCORE_NAME]),
        ]
        outputs.append(helper.make_tensor_value_info(OUTLIER_SCORE_NAME, TensorProto.FLOAT, [model_file.BATCH_DIM]))
    if class_activation:
        initializers.append(numpy_helper.from_array(np.array([-1, 2, height // 2, 2, width // 2, 3], np.int64),
                                                    "quadrants_shape"))  # fmt: skip
        nodes += [
            helper.make_node("Cast", [INPUT_NAME], ["all_f"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["all_f", "quadrants_shape"], ["quadrants"]),
            helper.make_node("ReduceMean", ["quadrants"], ["quadrant_rgb"], axes=[2, 4], keepdims=0),
            helper.make_node("MatMul", ["quadrant_rgb", "weights"], [CAM_NAME]),
        ]
        dims = [model_file.BATCH_DIM, 2, 2, classes]
        outputs.append(helper.make_tensor_value_info(CAM_NAME, TensorProto.FLOAT, dims))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, input_type, [model_file.BATCH_DIM, height, width, INPUT_CHANNELS])],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="serve-tests")
    model.ir_version = 8
    meta = contract_metadata() if metadata is None else metadata
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path

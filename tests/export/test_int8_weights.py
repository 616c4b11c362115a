"""int8 weights stored as uint8: exactly the same dequantized weights, and no 16-bit saturation on any x86 CPU."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.int8_weights import weights_to_uint8

CHANNELS = 64
OUT_SCALE = 16384.0  # big enough that the exact sum (64 x 255 x 127) is representable after requantization


def conv_model(weight: int = 127, zero_point: bool = True) -> onnx.ModelProto:
    """uint8 input (via Q/DQ) x int8 1x1 weights, requantized: onnxruntime fuses it into QLinearConv."""
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0, np.uint8), "zero_u8"),
        numpy_helper.from_array(np.full((8, CHANNELS, 1, 1), weight, np.int8), "w"),
        numpy_helper.from_array(np.ones(8, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(OUT_SCALE, np.float32), "out_scale"),
    ]
    weight_inputs = ["w", "w_scale"]
    if zero_point:
        inits.append(numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"))
        weight_inputs.append("w_zero")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "zero_u8"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "one", "zero_u8"], ["xd"]),
        helper.make_node("DequantizeLinear", weight_inputs, ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "out_scale", "zero_u8"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "out_scale", "zero_u8"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, 2, 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 2, 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def dequantized(model: onnx.ModelProto) -> np.ndarray:
    inits = {i.name: numpy_helper.to_array(i).astype(np.int32) for i in model.graph.initializer}
    return (inits["w"] - inits["w_zero"].reshape(-1, 1, 1, 1)) * 1.0


def test_the_shift_keeps_every_dequantized_weight():
    rng = np.random.default_rng(0)
    model = conv_model()
    values = rng.integers(-128, 128, (8, CHANNELS, 1, 1)).astype(np.int8)
    model.graph.initializer[2].CopyFrom(numpy_helper.from_array(values, "w"))
    before = dequantized(model)
    assert weights_to_uint8(model) == 1
    inits = {i.name: i for i in model.graph.initializer}
    assert inits["w"].data_type == inits["w_zero"].data_type == TensorProto.UINT8
    np.testing.assert_array_equal(dequantized(model), before)


def test_the_shifted_model_computes_the_exact_sum_where_int8_pairs_would_saturate():
    # 255 x 127 twice is over 32767: without VNNI, onnxruntime's u8 x s8 kernel saturates each pair of products.
    x = np.full((1, CHANNELS, 2, 2), 255, np.float32)
    exact = round(CHANNELS * 255 * 127 / OUT_SCALE) * OUT_SCALE
    model = conv_model()
    weights_to_uint8(model)
    np.testing.assert_array_equal(run(model, x), np.full((1, 8, 2, 2), exact, np.float32))


def test_a_weight_without_zero_point_is_refused():
    with pytest.raises(ValueError, match="no zero point"):
        weights_to_uint8(conv_model(zero_point=False))

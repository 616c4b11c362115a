"""int8 weights under the session entries of contract.cpu: the exact sum on every CPU, where AVX2's u8 x s8 kernel
would saturate (on a VNNI CPU the kernel is exact anyway, and the entries are none)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from contract.cpu import PRECISE_INT8, int8_session_entries

CHANNELS = 64
OUT_SCALE = 16384.0  # big enough that the exact sum (64 x 255 x 127) is representable after requantization


def conv_model(weight: int = 127) -> onnx.ModelProto:
    """uint8 input (via Q/DQ) x int8 1x1 weights, requantized: onnxruntime fuses it into QLinearConv."""
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0, np.uint8), "zero_u8"),
        numpy_helper.from_array(np.full((8, CHANNELS, 1, 1), weight, np.int8), "w"),
        numpy_helper.from_array(np.ones(8, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(OUT_SCALE, np.float32), "out_scale"),
    ]
    inits.append(numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "one", "zero_u8"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "one", "zero_u8"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"], axis=0),
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


def run(model: onnx.ModelProto, x: np.ndarray, entries: dict[str, str] | None = None) -> np.ndarray:
    options = ort.SessionOptions()
    for key, value in (int8_session_entries() if entries is None else entries).items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_int8_weights_compute_the_exact_sum_where_u8_s8_pairs_could_saturate():
    # 255 x 127 twice is over 32767: without VNNI, onnxruntime's u8 x s8 kernel saturates each pair of products.
    x = np.full((1, CHANNELS, 2, 2), 255, np.float32)
    exact = round(CHANNELS * 255 * 127 / OUT_SCALE) * OUT_SCALE
    model = conv_model()
    assert {i.name: i.data_type for i in model.graph.initializer}["w"] == TensorProto.INT8
    np.testing.assert_array_equal(run(model, x), np.full((1, 8, 2, 2), exact, np.float32))


def test_the_exact_kernels_entry_is_exact_on_this_cpu_too():
    # What a CPU without VNNI runs (onnxruntime engages it on every x86 CPU with AVX2, VNNI or not).
    x = np.full((1, CHANNELS, 2, 2), 255, np.float32)
    exact = round(CHANNELS * 255 * 127 / OUT_SCALE) * OUT_SCALE
    out = run(conv_model(), x, {PRECISE_INT8: "1"})
    np.testing.assert_array_equal(out, np.full((1, 8, 2, 2), exact, np.float32))

"""The exporter's index-arithmetic flatten is replaced by one Reshape: same logits, and no Gather/Range left."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from contract.paths import SHIPPED_DIR
from export.plain_flatten import plain_flatten

CHANNELS = 4


def strided_flatten_model() -> onnx.ModelProto:
    """x [N, C, 1, 1] -> Reshape [-1] -> Gather(Range(N) * C + arange(C)) -> Reshape [-1, C] -> Gemm, as the dynamo
    exporter writes the flatten after global pooling."""
    inits = [
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([-1, CHANNELS], np.int64), "rows"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array(CHANNELS, np.int64), "channels"),
        numpy_helper.from_array(np.arange(CHANNELS, dtype=np.int64).reshape(1, CHANNELS), "offsets"),
        numpy_helper.from_array(np.arange(CHANNELS * 3, dtype=np.float32).reshape(3, CHANNELS), "w"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "minus_one"], ["flat"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["rows_index"]),
        helper.make_node("Mul", ["rows_index", "channels"], ["starts"]),
        helper.make_node("Unsqueeze", ["starts", "one"], ["starts_column"]),
        helper.make_node("Add", ["starts_column", "offsets"], ["indices"]),
        helper.make_node("Gather", ["flat", "indices"], ["picked"], axis=0),
        helper.make_node("Reshape", ["picked", "rows"], ["features"]),
        helper.make_node("Gemm", ["features", "w"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", CHANNELS, 1, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_the_flatten_becomes_one_reshape_with_the_same_logits():
    model = strided_flatten_model()
    inputs = [np.random.default_rng(n).normal(size=(n, CHANNELS, 1, 1)).astype(np.float32) for n in (1, 3, 7)]
    before = [run(model, x) for x in inputs]
    assert plain_flatten(model) == 1
    assert [node.op_type for node in model.graph.node] == ["Reshape", "Gemm"]
    assert {init.name for init in model.graph.initializer} == {"rows", "w"}  # the index arithmetic is gone
    for x, expected in zip(inputs, before, strict=True):
        np.testing.assert_array_equal(run(model, x), expected)


def test_a_graph_without_the_pattern_is_left_alone():
    model = strided_flatten_model()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([-1, 1], np.int64), "minus_one"))
    assert plain_flatten(model) == 0
    assert len(model.graph.node) == 10


def test_the_shipped_file_has_the_plain_flatten():
    model = onnx.load(str(SHIPPED_DIR / "model.int8.onnx"))
    assert not {"Gather", "Range"} & {node.op_type for node in model.graph.node}
    assert plain_flatten(model) == 0

"""export.embedding (the optional `embedding` output, added without touching `logits`) and export.drift_reference (the
statistics the drift check compares with), on tiny graphs; and the shipped pair agrees."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from contract import input_summary, model_file
from contract.model_file import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAME
from contract.paths import SHIPPED_DIR
from export import drift_reference, embedding
from monitor.reference import load
from tests.serve.tiny_model import OUTLIER_THRESHOLD, build_model, contract_metadata, outlier_metadata
from tests.synthetic import CLASSES


def tiny_model(quantized: bool) -> onnx.ModelProto:
    """uint8 [N, 32, 32, 3] -> mean over pixels [N, 3] -> (QDQ) -> Gemm -> logits [N, 10]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(10, 3)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(rng.normal(size=10).astype(np.float32), "fc.bias"),
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array(0.01, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(0, dtype=np.uint8), "zero"),
    ]
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["float", "axes"], ["pooled"], keepdims=0),
    ]
    head_input = "pooled"
    if quantized:
        nodes += [
            helper.make_node("Mul", ["pooled", "scale"], ["scaled"]),
            helper.make_node("QuantizeLinear", ["scaled", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
        ]
        head_input = "dq"
    nodes.append(helper.make_node("Gemm", [head_input, "fc.weight", "fc.bias"], [OUTPUT_NAME], transB=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    props = model_file.encode({model_file.LABELS: CLASSES, model_file.MODEL_NAME: "tiny", model_file.VERSION: "t1"})
    helper.set_model_props(model, props)
    return model


def run(model: onnx.ModelProto, images: np.ndarray, names: list[str]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {INPUT_NAME: images})


@pytest.mark.parametrize("quantized", [False, True])
def test_embedding_output_is_the_head_input_and_logits_do_not_change(quantized):
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    model = tiny_model(quantized)
    (before,) = run(model, images, [OUTPUT_NAME])
    assert embedding.head_input(model.graph) == ("scaled" if quantized else "pooled")  # the float before the QDQ
    embedding.add_embedding_output(model)
    onnx.checker.check_model(model)
    after, features = run(model, images, [OUTPUT_NAME, EMBEDDING_NAME])
    np.testing.assert_array_equal(before, after)
    expected = images.astype(np.float32).mean(axis=(1, 2)) * (0.01 if quantized else 1.0)
    np.testing.assert_allclose(features, expected, rtol=1e-5)
    output = {o.name: o for o in model.graph.output}[EMBEDDING_NAME]
    assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["N", 3]
    embedding.add_embedding_output(model)  # a second time changes nothing
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME, EMBEDDING_NAME]


def test_a_graph_without_a_head_is_refused():
    model = tiny_model(False)
    model.graph.node[-1].op_type = "Add"
    with pytest.raises(embedding.EmbeddingError, match="Gemm"):
        embedding.head_input(model.graph)


def test_reference_from_the_test_set_reads_back(tmp_path, processed_dir):
    path = tmp_path / "model.onnx"
    onnx.save(tiny_model(True), str(path))
    out = drift_reference.write(path, data_dir=processed_dir)
    assert out == tmp_path / input_summary.REFERENCE_FILE
    raw = json.loads(out.read_text())
    assert raw["model"] == {"name": "tiny", "version": "t1"}
    assert raw["source"]["images"] == len(np.load(processed_dir / "test_labels.npy")) // 2  # the even half
    loaded = load(out)
    assert loaded.features.shape == (raw["source"]["images"], len(input_summary.FEATURES))
    assert loaded.embeddings.shape == (raw["source"]["images"], input_summary.EMBEDDING_DIMS)
    assert loaded.label_counts.sum() == raw["source"]["images"]
    assert loaded.bandwidth > 0
    probabilities, _, scores = drift_reference.run(
        drift_reference.session(path), np.load(processed_dir / "test_images.npy")[::2]
    )
    assert scores is None  # no outlier score in this file
    assert raw["shares"] == {"not_sure": round(float(np.mean(probabilities.max(axis=1) < 0.5)), 4), "outlier": None}
    assert loaded.shares == raw["shares"]


def test_the_reference_keeps_the_outlier_share_of_a_file_with_an_outlier_score(tmp_path, processed_dir):
    path = build_model(tmp_path / "scored.onnx", metadata=contract_metadata(outlier=outlier_metadata()),
                       outlier_score=True, embedding_dims=8)  # fmt: skip
    raw = json.loads(drift_reference.write(path, data_dir=processed_dir).read_text())
    images = np.load(processed_dir / "test_images.npy")[::2]
    bottom = images[:, 16:].reshape(len(images), -1).mean(axis=1) * 10 / 255  # the tiny model's score
    assert raw["shares"]["outlier"] == pytest.approx(float(np.mean(bottom > OUTLIER_THRESHOLD)), abs=1e-3)
    assert load(tmp_path / input_summary.REFERENCE_FILE).shares == raw["shares"]


def test_the_shipped_reference_belongs_to_the_shipped_model():
    path = SHIPPED_DIR / "model.int8.onnx"
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert EMBEDDING_NAME in [o.name for o in model.graph.output]
    shipped = load()
    assert shipped.version == meta[model_file.VERSION]
    assert shipped.labels == json.loads(meta[model_file.LABELS])
    assert shipped.images == 5000
    assert (SHIPPED_DIR / input_summary.REFERENCE_FILE).stat().st_size < 250_000  # small enough for git

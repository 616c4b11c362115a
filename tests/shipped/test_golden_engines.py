"""The shipped file's golden answers guard every engine on this CPU: onnxruntime and OpenVINO both pass them; the same
network with the exporter's old flatten (which OpenVINO compiles wrongly, benchmarks/engines/README.md) is refused
under ENGINE=openvino and served by onnxruntime under `auto`, whose check OpenVINO fails."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from contract import model_file
from export import golden, metadata
from serve.golden import Golden
from serve.model import ModelLoadError, load_model
from serve.settings import DEFAULT_MODEL_PATH
from tests.photos import cifar_test_set

pytest.importorskip("openvino", reason="OpenVINO is an option (requirements-serve-openvino.txt)")
pytestmark = [pytest.mark.realdata, pytest.mark.slow]

FEATURES = 512  # the pooled features the head's flatten reshapes


def exporter_flatten(model: onnx.ModelProto) -> None:
    """In place: the head's `Reshape [-1, 512]` written back as the dynamo exporter wrote it before
    export/plain_flatten.py: Reshape [-1] -> Gather(Range(N) * 512 + arange(512)) -> Reshape [-1, 512]."""
    node = next(n for n in model.graph.node if n.op_type == "Reshape" and n.output[0] == "view")
    pooled = node.input[0]
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1], np.int64), "old.minus_one"),
            numpy_helper.from_array(np.array(0, np.int64), "old.zero"),
            numpy_helper.from_array(np.array(1, np.int64), "old.one"),
            numpy_helper.from_array(np.array([1], np.int64), "old.axis1"),
            numpy_helper.from_array(np.array(FEATURES, np.int64), "old.features"),
            numpy_helper.from_array(np.arange(FEATURES, dtype=np.int64).reshape(1, FEATURES), "old.offsets"),
        ]
    )
    chain = [
        helper.make_node("Reshape", [pooled, "old.minus_one"], ["old.flat"]),
        helper.make_node("Shape", [model_file.INPUT_NAME], ["old.shape"], start=0, end=1),
        helper.make_node("Squeeze", ["old.shape"], ["old.n"]),
        helper.make_node("Range", ["old.zero", "old.n", "old.one"], ["old.rows"]),
        helper.make_node("Mul", ["old.rows", "old.features"], ["old.starts"]),
        helper.make_node("Unsqueeze", ["old.starts", "old.axis1"], ["old.column"]),
        helper.make_node("Add", ["old.column", "old.offsets"], ["old.indices"]),
        helper.make_node("Gather", ["old.flat", "old.indices"], ["old.picked"], axis=0),
    ]
    node.input[0] = "old.picked"
    at = list(model.graph.node).index(node)
    for offset, new in enumerate(chain):
        model.graph.node.insert(at + offset, new)


@pytest.fixture(scope="module")
def shipped_golden() -> Golden:
    model = load_model(DEFAULT_MODEL_PATH, engine="onnxruntime")
    assert model_file.GOLDEN in model.metadata, "the shipped file carries golden answers (python -m export.golden)"
    return Golden.from_metadata(model.metadata[model_file.GOLDEN], model.input_size)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_both_engines_pass_the_shipped_files_golden_check(engine, shipped_golden):
    report = load_model(DEFAULT_MODEL_PATH, engine=engine).describe()["engine"]
    assert report["name"] == engine
    assert report["golden_check"]["result"] == "passed", report


def test_the_file_with_the_old_flatten_is_caught(tmp_path, shipped_golden):
    model = onnx.load(str(DEFAULT_MODEL_PATH))
    exporter_flatten(model)
    path = tmp_path / "old-flatten.onnx"
    onnx.save(model, str(path))
    images, _ = cifar_test_set(load_model(DEFAULT_MODEL_PATH, engine="onnxruntime").labels)
    answers = golden.golden(path, shipped_golden.images, images[: golden.AGREEMENT_PICTURES])
    # onnxruntime answers the old graph exactly as the shipped one: export would have written these golden answers.
    recorded = np.asarray(answers[model_file.GOLDEN_OUTPUTS]["logits"], np.float32)
    np.testing.assert_array_equal(recorded, shipped_golden.outputs["logits"])
    assert answers[model_file.GOLDEN_MEASURED_WITH]["openvino"]["counted"] is False  # it disagrees: not counted
    metadata.update(path, {model_file.GOLDEN: answers})

    with pytest.raises(ModelLoadError, match=r"openvino fails the file's golden check: .*logits off by"):
        load_model(path, engine="openvino")
    served = load_model(path, engine="auto")
    report = served.describe()["engine"]
    assert served.engine == "onnxruntime"
    assert report["tried"]["openvino"] == {"golden_check": "failed"}

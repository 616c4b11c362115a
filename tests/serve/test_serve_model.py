"""Loading checks the file against the ONNX contract and says, in one line, what is wrong."""

from __future__ import annotations

import shutil
import sys
import tracemalloc

import numpy as np
import pytest
from onnx import TensorProto

from contract.model_file import CARD, INPUT_SIZE, LABELS, OPTIONAL_KEYS, RESIZE, VERSION
from contract.paths import SHIPPED_DIR
from serve.model import ModelChanged, ModelLoadError, PinnedFile, load_model


def test_loads_a_contract_model(model_path):
    model = load_model(model_path, threads=1)
    assert model.labels[0] == "airplane"
    assert len(model.labels) == 10
    assert model.input_size == (32, 32)
    assert (model.name, model.version, model.resize) == ("tiny-test", "0123abcd", "center-crop-resize")
    logits = model.run(np.zeros((3, 32, 32, 3), dtype=np.uint8))
    assert logits.shape == (3, 10)
    assert logits.dtype == np.float32


def test_no_copy_of_the_file_stays_in_memory():
    # Given the file's bytes, onnxruntime's Python session keeps them for its lifetime; the service's session reads
    # the file through its pinned descriptor instead (serve.model.PinnedFile.session). The shipped file: 12.7 MB.
    path = SHIPPED_DIR / "model.int8.onnx"
    tracemalloc.start()
    try:
        model = load_model(path, threads=1)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.session is not None
    assert held < path.stat().st_size / 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the descriptor's path is Linux's /proc/self/fd")
def test_the_engine_reads_the_pinned_bytes_and_an_overwrite_meanwhile_is_refused(tmp_path, model_path):
    path = tmp_path / "model.onnx"
    shutil.copy(model_path, path)
    pinned = PinnedFile(path)
    sources = []
    assert pinned.session(lambda source: sources.append(source) or "built") == "built"
    assert str(sources[0]).startswith("/proc/self/fd/")
    moved = tmp_path / "other.onnx"
    moved.write_bytes(b"another file")
    moved.replace(path)  # a new file at the path: the descriptor still reads the loaded bytes
    assert pinned.session(lambda source: "built") == "built"

    def overwrite_while_reading(source):
        with open(source, "r+b") as file:
            file.write(b"x")
        return "built"

    with pytest.raises(ModelChanged):
        pinned.session(overwrite_while_reading)


@pytest.mark.parametrize(("spinning", "entry"), [(False, "0"), (True, "1")])
def test_idle_threads_sleep_unless_told_to_spin(model_path, spinning, entry):
    session = load_model(model_path, spinning=spinning).session
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == entry


def test_openvino_engine_answers_like_onnxruntime(model_path):
    pytest.importorskip("openvino", reason="OpenVINO is an option (requirements-serve-openvino.txt)")
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    ort_model, ov_model = load_model(model_path), load_model(model_path, engine="openvino")
    assert (ov_model.engine, ov_model.labels) == ("openvino", ort_model.labels)
    np.testing.assert_allclose(ov_model.run(images), ort_model.run(images), atol=1e-4)
    first = ov_model.run(images[:2])
    ov_model.run(images[2:4])  # the engine's next call must not overwrite an answer already handed out
    np.testing.assert_allclose(first, ort_model.run(images[:2]), atol=1e-4)


def test_openvino_engine_missing_is_one_clear_line(model_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # importing it fails, as where it is not installed
    with pytest.raises(ModelLoadError, match="ENGINE=openvino but OpenVINO is not installed"):
        load_model(model_path, engine="openvino")


def test_unknown_engine_is_refused(model_path):
    with pytest.raises(ModelLoadError, match="unknown engine 'tvm'"):
        load_model(model_path, engine="tvm")


def test_optional_metadata_may_be_missing(make_model):
    path = make_model("minimal.onnx", meta=dict.fromkeys(OPTIONAL_KEYS))
    model = load_model(path)
    described = model.describe()
    assert described["card"] is None
    assert described["quantization"] == model.quantization == "none"
    assert described["tta"] == "none"


def problem(path) -> str:
    with pytest.raises(ModelLoadError) as error:
        load_model(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return error.value.problem


def test_missing_file(tmp_path):
    assert problem(tmp_path / "absent.onnx") == "file not found"


def test_directory(tmp_path):
    assert problem(tmp_path) == "not a regular file"


def test_not_onnx(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"this is not a protobuf\n" * 10)
    assert problem(path).startswith("not a valid ONNX model")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert problem(path).startswith("not a valid ONNX model")


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({LABELS: None}, "metadata_props lack labels"),
        ({RESIZE: None, VERSION: None}, "metadata_props lack resize, version"),
        ({LABELS: "not json ["}, "metadata 'labels' is not valid JSON"),
        ({LABELS: ["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"]}, "distinct strings"),
        ({INPUT_SIZE: [32]}, "'input_size' must be [H, W]"),
        ({INPUT_SIZE: [64, 64]}, "input 'image' is tensor(uint8) ['N', 32, 32, 3], expected uint8"),
        ({LABELS: ["a", "b"]}, "output 'logits' is tensor(float) ['N', 10], expected float32 [N, 2]"),
        ({RESIZE: "stretch"}, "unknown resize policy 'stretch' (this service knows: center-crop-resize)"),
        ({CARD: "{broken"}, "metadata 'card' is not valid JSON"),
    ],
)
def test_metadata_breaking_the_contract(make_model, meta, expected):
    path = make_model(f"bad-{abs(hash(str(meta)))}.onnx", meta=meta)
    assert expected in problem(path)


def test_wrong_input_type(make_model):
    path = make_model("float-input.onnx", input_type=TensorProto.FLOAT)
    assert "input 'image' is tensor(float)" in problem(path)

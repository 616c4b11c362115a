"""The model-file contract on its own: its keys, encoding, validation messages and GET /model's shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract import model_file
from contract.model_file import ContractError, decode, describe, encode, validate

REPO = Path(__file__).resolve().parents[2]

VALID = {
    "labels": ["cat", "dog"],
    "input_size": [32, 32],
    "resize": "center-crop-resize",
    "model_name": "m",
    "version": "0123abcd0123",
}


def raw(**overrides) -> dict[str, str]:
    """Encoded valid metadata; an override of None deletes the key, a string for a JSON key is written as it is."""
    values = {**VALID, **overrides}
    text = {k: v for k, v in values.items() if isinstance(v, str)}
    return encode({k: v for k, v in values.items() if v is not None and k not in text}) | text


def problem(metadata: dict[str, str]) -> str:
    with pytest.raises(ContractError) as error:
        validate(metadata)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_names_the_files_use():
    # Changing any of these breaks every model file already shipped: they are the format, not implementation.
    assert (model_file.INPUT_NAME, model_file.OUTPUT_NAME) == ("image", "logits")
    assert (model_file.INPUT_DTYPE, model_file.INPUT_CHANNELS, model_file.INPUT_COLOR) == ("uint8", 3, "RGB")
    assert model_file.RESIZE_POLICIES == ("center-crop-resize",)
    assert model_file.REQUIRED_KEYS == ("labels", "input_size", "resize", "model_name", "version")
    assert set(model_file.OPTIONAL_KEYS) == {
        "created", "git_sha", "data_md5", "metrics", "parity", "quantization", "config", "card", "tta",
        "calibration", "outlier", "golden",
    }  # fmt: skip
    assert (model_file.EMBEDDING_NAME, model_file.OUTLIER_SCORE_NAME) == ("embedding", "outlier_score")
    assert model_file.OUTLIER_THRESHOLD == "threshold"
    assert (model_file.TOP1_PYTORCH, model_file.TOP1_FP32, model_file.TOP1_INT8, model_file.TOP1) == (
        "test_top1_pytorch", "test_top1_fp32", "test_top1_int8", "test_top1",
    )  # fmt: skip
    assert set(model_file.JSON_KEYS) == {
        "labels", "input_size", "metrics", "parity", "config", "card", "calibration", "outlier", "golden",
    }  # fmt: skip
    golden_keys = (
        model_file.GOLDEN_IMAGES,
        model_file.GOLDEN_SHAPE,
        model_file.GOLDEN_OUTPUTS,
        model_file.GOLDEN_TOLERANCE,
    )
    assert golden_keys == ("images", "shape", "outputs", "tolerance")


@pytest.mark.parametrize(
    ("values", "expected"),
    [({}, None), ({"outlier": {"threshold": 2.5}}, 2.5), ({"outlier": {"threshold": 3}}, 3.0)],
)
def test_the_outlier_threshold_is_read_from_its_key(values, expected):
    assert model_file.outlier_threshold(values) == expected


@pytest.mark.parametrize(
    "outlier", [{}, {"threshold": None}, {"threshold": True}, {"threshold": float("inf")}, {"threshold": "1"}, [1]]
)
def test_an_outlier_key_without_a_finite_threshold_breaks_the_contract(outlier):
    with pytest.raises(model_file.ContractError, match="threshold"):
        model_file.outlier_threshold({"outlier": outlier})


def test_keys_are_partitioned():
    assert len(set(model_file.KEYS)) == len(model_file.KEYS)
    assert set(model_file.REQUIRED_KEYS) | set(model_file.OPTIONAL_KEYS) == set(model_file.KEYS)
    assert not set(model_file.REQUIRED_KEYS) & set(model_file.OPTIONAL_KEYS)
    assert set(model_file.JSON_KEYS) <= set(model_file.KEYS)
    assert set(model_file.DEFAULTS) <= set(model_file.OPTIONAL_KEYS)


def test_encode_then_decode_gives_the_values_back():
    values = {**VALID, "metrics": {"b": 1, "a": [0.5]}, "card": {"x": None}, "tta": "hflip", "quantization": "none"}
    encoded = encode(values)
    assert all(isinstance(v, str) for v in encoded.values())
    assert encoded["metrics"] == '{"a": [0.5], "b": 1}'  # sorted: the same model always gives the same bytes
    assert encoded["version"] == "0123abcd0123"  # plain strings are not JSON-quoted
    assert decode(encoded) == values
    assert validate(encoded).values == values


def test_encode_refuses_a_key_the_contract_does_not_have():
    with pytest.raises(ContractError, match=r"unknown metadata 'colour'"):
        encode({**VALID, "colour": "red"})


def test_decode_leaves_out_keys_it_does_not_know():
    assert "future_key" not in decode({**raw(), "future_key": "x"})


def test_validate_types_the_required_keys():
    metadata = validate(raw())
    assert metadata.labels == ("cat", "dog")
    assert metadata.input_size == (32, 32)
    assert (metadata.resize, metadata.model_name, metadata.version) == ("center-crop-resize", "m", "0123abcd0123")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"labels": None}, "metadata_props lack labels"),
        ({"version": None, "resize": None}, "metadata_props lack resize, version"),
        ({"labels": "not json ["}, "metadata 'labels' is not valid JSON"),
        ({"metrics": "{"}, "metadata 'metrics' is not valid JSON"),
        ({"labels": '"cat"'}, "metadata 'labels' must be a non-empty JSON list of distinct strings"),
        ({"labels": []}, "metadata 'labels' must be a non-empty JSON list of distinct strings"),
        ({"labels": ["cat", "cat"]}, "distinct strings"),
        ({"labels": ["cat", ""]}, "distinct strings"),
        ({"labels": ["cat", 1]}, "distinct strings"),
        ({"input_size": [32]}, "metadata 'input_size' must be [H, W] positive integers, got [32]"),
        ({"input_size": [32, 0]}, "must be [H, W] positive integers"),
        ({"input_size": [32, True]}, "must be [H, W] positive integers"),
        ({"input_size": [32, 32.0]}, "must be [H, W] positive integers"),
        ({"input_size": "32"}, "must be [H, W] positive integers, got 32"),
        ({"resize": "stretch"}, "unknown resize policy 'stretch' (this service knows: center-crop-resize)"),
    ],
)
def test_validate_says_in_one_line_what_is_wrong(overrides, expected):
    assert expected in problem(raw(**overrides))


def test_describe_shows_every_key_under_its_answer_name():
    body = describe(decode(raw(tta="hflip", card={"k": 1})))
    assert set(body) == {"name", "version", "labels", "input_size", "resize", "quantization", "tta", "created",
                         "git_sha", "data_md5", "config", "metrics", "parity", "calibration", "outlier",
                         "golden", "card"}  # fmt: skip
    assert (body["name"], body["tta"], body["card"]) == ("m", "hflip", {"k": 1})


def test_golden_answers_are_shown_as_their_summary():
    golden = {"images": "AAAA", "shape": [16, 32, 32, 3], "outputs": {"logits": [[0.0]]}, "tolerance": {"logits": 1},
              "measured_with": {"openvino": {"logits": 0.3}}}  # fmt: skip
    body = describe(decode(raw(golden=golden)))
    expected = {"pictures": 16, "tolerance": {"logits": 1}, "measured_with": {"openvino": {"logits": 0.3}}}
    assert body["golden"] == expected
    assert describe(decode(raw()))["golden"] is None
    assert (body["quantization"], body["created"], body["metrics"]) == ("none", None, None)  # absent optional keys


def test_input_spec_is_the_layout():
    assert model_file.input_spec((24, 32)) == {"name": "image", "dtype": "uint8", "shape": ["N", 24, 32, 3],
                                               "color": "RGB"}  # fmt: skip


def test_the_contract_imports_no_runtime():
    # serve's torch-free image and any tool opening a model file import it: it must stay stdlib-only.
    script = "import sys, contract.model_file, contract.paths; print(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert not loaded & {"torch", "onnx", "onnxruntime", "numpy", "train", "export", "serve"}

"""Export writes, serve reads: every metadata key of a real export comes back from `GET /model`, decoded as written."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from starlette.testclient import TestClient

from contract import model_file
from serve.app import create_app
from serve.model import load_model
from serve.settings import Settings
from tests.export.conftest import exported  # noqa: F401  (the real export of the tiny MLP checkpoint)
from tests.serve.test_serve_golden import golden_of
from tests.serve.tiny_model import build_model, contract_metadata, outlier_metadata


def written(path: Path) -> dict[str, str]:
    """The metadata_props exactly as they are in the file, read with onnx (not through the contract)."""
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


def shown(path: Path) -> dict:
    with TestClient(create_app(Settings(model_path=path, ort_threads=1, log_level="warning"))) as client:
        response = client.get("/model")
    assert response.status_code == 200
    return response.json()


def assert_shown_as_written(path: Path) -> dict:
    raw, body = written(path), shown(path)
    for key, value in raw.items():
        if key not in model_file.KEYS:
            continue  # a tool's mark, not the model's description
        field = model_file.DESCRIBED_AS.get(key, key)
        assert field in body, f"{key} is in {path.name} but not in GET /model"
        decoded = json.loads(value) if key in model_file.JSON_KEYS else value
        if key == model_file.GOLDEN:  # shown as its summary, not tens of kilobytes of pictures and outputs
            decoded = model_file.golden_summary(decoded)
        assert body[field] == decoded, key
    return body


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_every_key_export_writes_is_shown_by_get_model(exported, name):  # noqa: F811
    path = exported[0] / name
    keys = set(written(path))
    assert set(model_file.KEYS) <= keys  # export writes every key of the contract
    # and no other: onnxruntime's quantizer marks its passes (onnx.infer, onnx.quant.pre_process); serve ignores them
    assert all(key.startswith("onnx.") for key in keys - set(model_file.KEYS))
    body = assert_shown_as_written(path)
    assert body["tta"] == "none"
    assert body["card"] == exported[1]
    assert load_model(path, threads=1).version == exported[1]["version"]


def test_the_tiny_serve_model_carries_every_key(tmp_path):
    # The serve tests' stand-in model must describe itself as an export does, or they would test less than ships.
    answers = golden_of(build_model(tmp_path / "plain.onnx", outlier_score=True))
    meta = contract_metadata(**{model_file.OUTLIER: outlier_metadata(), model_file.GOLDEN: answers})
    path = build_model(tmp_path / "tiny.onnx", metadata=meta, outlier_score=True)
    assert set(written(path)) == set(model_file.KEYS)
    assert_shown_as_written(path)


def test_get_model_shows_hflip_tta(tmp_path):
    path = build_model(tmp_path / "tta.onnx", metadata=contract_metadata(tta=model_file.TTA_HFLIP))
    assert shown(path)["tta"] == "hflip"


def test_get_model_answers_every_key_of_the_contract_for_a_minimal_file(tmp_path):
    minimal = contract_metadata(**dict.fromkeys(model_file.OPTIONAL_KEYS))
    assert set(minimal) == set(model_file.REQUIRED_KEYS)
    body = shown(build_model(tmp_path / "minimal.onnx", metadata=minimal))
    assert set(body) == {model_file.DESCRIBED_AS.get(key, key) for key in model_file.KEYS} | {"engine"}
    assert (body["quantization"], body["tta"], body["card"], body["created"]) == ("none", "none", None, None)
    assert (body["golden"], body["engine"]["golden_check"]["result"]) == (None, "no golden answers in the file")


def test_the_api_description_lists_every_field_get_model_answers(tmp_path):
    with TestClient(create_app(Settings(model_path=build_model(tmp_path / "m.onnx"), log_level="warning"))) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["Model"]
        body = client.get("/model").json()
    assert set(schema["properties"]) == set(body)

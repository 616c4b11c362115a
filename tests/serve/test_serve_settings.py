"""Settings come from environment variables, once, with documented defaults."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

import serve
from serve.settings import Settings, SettingsError, markdown_table, variable


def test_defaults():
    settings = Settings.from_env({})
    assert settings.port == 8000
    assert settings.host == "0.0.0.0"
    assert settings.model_path == Path(serve.__file__).resolve().parent.parent / "shipped" / "model.int8.onnx"
    assert settings.cors_origins == ()
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.body_timeout_s == 20.0
    assert settings.max_pixels == 50_000_000
    assert settings.top_k == 5
    assert settings.batch_max_size == 16
    assert settings.batch_max_wait_ms == 0.0
    assert settings.queue_size == 64
    assert settings.ort_threads == 0
    assert settings.ort_spinning == "auto"
    assert settings.engine == "auto"
    assert settings.decode_concurrency == 2
    assert settings.log_level == "info"


def test_every_variable_is_read():
    env = {
        "PORT": "9000",
        "HOST": "127.0.0.1",
        "MODEL_PATH": "/models/m.onnx",
        "CORS_ORIGINS": " https://a.example/ , https://b.example ,",
        "ORT_THREADS": "2",
        "ORT_SPINNING": "on",
        "ENGINE": "OpenVINO",
        "DECODE_CONCURRENCY": "3",
        "MAX_BODY_BYTES": "1000",
        "BODY_TIMEOUT_S": "2.5",
        "MAX_PIXELS": "2000",
        "TOP_K": "3",
        "BATCH_MAX_SIZE": "8",
        "BATCH_MAX_WAIT_MS": "0.5",
        "QUEUE_SIZE": "10",
        "LOG_LEVEL": "DEBUG",
    }
    assert Settings.from_env(env) == Settings(
        host="127.0.0.1",
        port=9000,
        model_path=Path("/models/m.onnx"),
        cors_origins=("https://a.example", "https://b.example"),
        ort_threads=2,
        ort_spinning="on",
        engine="openvino",
        decode_concurrency=3,
        max_body_bytes=1000,
        body_timeout_s=2.5,
        max_pixels=2000,
        top_k=3,
        batch_max_size=8,
        batch_max_wait_ms=0.5,
        queue_size=10,
        log_level="debug",
    )


@pytest.mark.parametrize(
    ("raw", "mode"), [("auto", "auto"), ("AUTO", "auto"), ("1", "on"), ("yes", "on"), ("0", "off")]
)
def test_spinning_is_auto_or_a_switch(raw, mode):
    assert Settings.from_env({"ORT_SPINNING": raw}).ort_spinning == mode


def test_empty_values_mean_default():
    assert Settings.from_env({"PORT": "", "TOP_K": "  "}) == Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT='eighty' is not a valid int"),
        ({"TOP_K": "0"}, "TOP_K='0' must be at least 1"),
        ({"QUEUE_SIZE": "-1"}, "QUEUE_SIZE='-1' must be at least 1"),
        ({"BODY_TIMEOUT_S": "0"}, "BODY_TIMEOUT_S='0' must be at least 0.001"),
        ({"BATCH_MAX_WAIT_MS": "soon"}, "BATCH_MAX_WAIT_MS='soon' is not a valid float"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is not one of"),
        ({"ORT_SPINNING": "maybe"}, "ORT_SPINNING='maybe' is not a valid spinning_mode value"),
        ({"ENGINE": "tvm"}, "ENGINE='tvm' is not one of auto, onnxruntime, openvino"),
    ],
)
def test_invalid_values_are_refused_with_the_name(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_the_docs_show_the_settings_own_table():
    """docs/serving.md's table is serve/settings.py's (`python -m serve.settings` prints it): one place documents
    every setting."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    assert markdown_table() in docs


def test_every_setting_has_a_variable_a_rule_and_a_sentence():
    names = [variable(item) for item in fields(Settings)]
    assert len(set(names)) == len(names)
    for item in fields(Settings):
        assert item.metadata["doc"].strip(), item.name
        assert callable(item.metadata["parse"]), item.name

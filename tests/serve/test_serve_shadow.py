"""The shadow challenger (SHADOW_MODEL_PATH, SHADOW_SHARE): answers unchanged, the challenger's answer in the same
prediction-log line, agreement counted, the challenger dropped first when the service is busy, and a challenger file
that is broken or reads other pictures refused at start."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from starlette.testclient import TestClient

from contract import prediction_log as plog
from contract.paths import SHIPPED_DIR
from serve.app import create_app
from serve.core import Classifier
from serve.log_writer import Prediction
from serve.model import ModelLoadError, load_model
from serve.schemas import Answer, ModelId, Score
from serve.settings import Settings, SettingsError
from serve.shadow import Shadow
from tests.serve.test_serve_endpoints import metric

CHALLENGER = SHIPPED_DIR / "model.int8.onnx"  # a real model beside the tiny champion: same input and labels


def shadowed(model_path, share: float, sink: io.StringIO | None = None, **overrides) -> TestClient:
    settings = Settings(model_path=model_path, ort_threads=1, log_level="warning", shadow_model_path=CHALLENGER,
                        shadow_share=share, **overrides)  # fmt: skip
    return TestClient(create_app(settings, log_sink=sink))


def pictures(count: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def without_ids(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in ("request_id", "feedback_token")}


def test_every_shadowed_line_carries_the_challengers_answer_and_the_answers_do_not_change(model_path):
    sent = pictures(12)
    with TestClient(create_app(Settings(model_path=model_path, ort_threads=1, log_level="warning"))) as plain:
        expected = [without_ids(plain.post("/classify", content=p).json()) for p in sent]
    sink = io.StringIO()
    with shadowed(model_path, 1.0, sink) as client:
        answers = [client.post("/classify", content=p).json() for p in sent]
    exposition = client.app.state.service.metrics.exposition().decode()  # after the stop: every shadow answer counted
    assert [without_ids(a) for a in answers] == expected
    lines = {line["request_id"]: line for line in map(json.loads, sink.getvalue().splitlines())}
    challenger = load_model(CHALLENGER, threads=1)
    for answer in answers:
        shadow = lines[answer["request_id"]]["shadow"]
        assert shadow["version"] == challenger.version != answer["model"]["version"]
        assert shadow["label"] in challenger.labels
        assert 0 < shadow["score"] <= 1
        assert isinstance(shadow["outlier"], bool)
        assert isinstance(shadow["outlier_score"], float)
        assert plog.parse_line(json.dumps(lines[answer["request_id"]]))["shadow"]["label"] == shadow["label"]
    agree = metric(exposition, "serve_shadow_answers_total", outcome="agree")
    disagree = metric(exposition, "serve_shadow_answers_total", outcome="disagree")
    assert agree + disagree == len(sent)
    assert agree == sum(lines[a["request_id"]]["shadow"]["label"] == a["label"] for a in answers)


def test_share_zero_writes_lines_without_a_shadow(model_path, red_png):
    sink = io.StringIO()
    with shadowed(model_path, 0.0, sink) as client:
        assert client.post("/classify", content=red_png).status_code == 200
    [line] = map(json.loads, sink.getvalue().splitlines())
    assert "shadow" not in line
    assert plog.parse_line(json.dumps(line))["shadow"] is None


ANSWER = Answer("cat", 0.9, [Score("cat", 0.9)], None, None, ModelId("m", "v"), "r", "token")


def prediction(model_path) -> Prediction:
    return Prediction(request_id="r", time=plog.now(), model_name="m", model_version="v", answer=ANSWER,
                      latency_ms=1.0, upload={}, pixels=np.zeros((32, 32, 3), np.uint8), embedding=None)  # fmt: skip


def test_the_challenger_is_dropped_first_when_the_service_is_busy_or_its_queue_is_full(model_path):
    counted, written = [], []
    challenger = Classifier(load_model(model_path, threads=1), Settings(top_k=1))
    shadow = Shadow(challenger, 1.0, capacity=2, count=counted.append, write=written.append)
    assert not shadow.offer(prediction(model_path), busy=True)  # requests wait for the champion: no challenger
    assert shadow.offer(prediction(model_path), busy=False)
    assert shadow.offer(prediction(model_path), busy=False)
    assert not shadow.offer(prediction(model_path), busy=False)  # its queue (not started) is full
    assert counted == ["dropped", "dropped"]
    shadow.start()
    shadow.stop()  # answers what was queued
    assert len(written) == 2
    assert all(p.shadow is not None for p in written)
    assert counted[2:] == ["disagree", "disagree"]  # the tiny model answers airplane on black, never "cat"


def test_under_load_the_service_drops_shadow_work_instead_of_queueing_it(model_path):
    sent = pictures(4) * 20
    sink = io.StringIO()
    with shadowed(model_path, 1.0, sink, queue_size=4) as client:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda p: client.post("/classify", content=p).status_code, sent))
    exposition = client.app.state.service.metrics.exposition().decode()
    answered = codes.count(200)
    counts = {o: metric(exposition, "serve_shadow_answers_total", outcome=o) for o in ("agree", "disagree", "dropped")}
    assert counts["agree"] + counts["disagree"] + counts["dropped"] == answered
    assert counts["dropped"] > 0  # 16 clients at a tiny champion: the real challenger cannot keep up (39 of 57)
    assert len(sink.getvalue().splitlines()) == answered  # every answer's line, shadowed or not


def test_a_broken_challenger_file_is_refused_at_start(model_path, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    env = {"MODEL_PATH": str(model_path), "SHADOW_MODEL_PATH": str(broken), "PORT": "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"cannot load model {broken}" in done.stderr


def test_a_challenger_that_reads_other_pictures_is_refused_at_start(model_path, make_model):
    other = make_model("big-input.onnx", meta={"input_size": [96, 96]}, input_size=(96, 96))
    settings = Settings(model_path=model_path, ort_threads=1, log_level="warning", shadow_model_path=other)
    with pytest.raises(ModelLoadError, match="as the shadow model"), TestClient(create_app(settings)):
        pass


def test_shadow_share_is_a_share():
    assert Settings.from_env({"SHADOW_SHARE": "0.25"}).shadow_share == 0.25
    with pytest.raises(SettingsError, match="at most 1"):
        Settings.from_env({"SHADOW_SHARE": "1.5"})

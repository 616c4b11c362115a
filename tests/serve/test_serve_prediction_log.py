"""The prediction log against the real app: one line per answered /classify with the contract's fields (and never
the picture), the request id honoured and echoed, the embedding when the model has it, a stuck sink that drops and
counts instead of holding answers, the new metrics, and the fragment's thumbnail of exactly what the model saw."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from contract import input_summary
from contract import prediction_log as plog
from contract.model_file import EMBEDDING_NAME, OUTPUT_NAME
from serve.app import create_app
from serve.imaging import to_model_input
from serve.log_writer import PredictionLog
from serve.model import load_model
from serve.settings import Settings
from tests.serve.test_serve_endpoints import metric
from tests.serve.tiny_model import LABELS

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"size": (32, 32), "policy": "center-crop-resize", "max_pixels": 50_000_000}


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "predictions.jsonl"


@pytest.fixture
def logged(make_client, log_path):
    return make_client(prediction_log=str(log_path))


def wait_for_lines(path: Path, count: int, wait_until) -> list[dict]:
    wait_until(lambda: len(read_lines(path)) >= count)
    return read_lines(path)


def test_each_answer_writes_one_line_with_the_contracts_fields(logged, log_path, encode, wait_until):
    small = encode(Image.new("RGB", (40, 30), (255, 0, 0)), "PNG")  # decoded on the event loop
    photo = encode(Image.new("RGB", (640, 480), (0, 0, 255)), "JPEG", quality=90)  # decoded in a thread
    answers = [logged.post("/classify", content=data).json() for data in (small, photo)]
    lines = wait_for_lines(log_path, 2, wait_until)
    assert len(lines) == 2
    for line, answer, data, (fmt, width, height) in zip(
        lines, answers, (small, photo), [("PNG", 40, 30), ("JPEG", 640, 480)], strict=True
    ):
        assert plog.parse_line(json.dumps(line)) is not None  # the reader's view of it
        assert line["log_version"] == plog.LOG_VERSION
        assert line["kind"] == "prediction"
        assert line["severity"] == "INFO"  # Cloud Logging's structured format
        assert line["request_id"] in line["message"]
        assert plog.parse_time(line["time"]) is not None
        assert line["request_id"] == answer["request_id"]
        assert line["model"] == {"name": "tiny-test", "version": "0123abcd"}
        assert line["label"] == answer["label"]
        assert line["score"] == pytest.approx(answer["score"], abs=1e-6)
        assert [entry["label"] for entry in line["top_k"]] == [entry["label"] for entry in answer["top_k"]]
        assert line["latency_ms"] > 0
        assert line["upload"] == {"format": fmt, "width": width, "height": height, "bytes": len(data)}
        expected = input_summary.summarize_input(to_model_input(data, **OPTIONS)[None])[0]
        assert line["input"] == expected
        assert "embedding" not in line  # the tiny model has no embedding output
    assert lines[0]["input"]["mean_r"] == 1.0
    assert lines[1]["input"]["mean_b"] == pytest.approx(1.0, abs=0.01)


def test_the_line_never_holds_the_picture(logged, log_path, encode, wait_until):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    logged.post("/classify", content=data)
    logged.post("/classify", content=data, headers={"HX-Request": "true"})  # the fragment shows it; the log does not
    text = "\n".join(json.dumps(line) for line in wait_for_lines(log_path, 2, wait_until))
    assert base64.b64encode(data[:48]).decode()[:40] not in text
    assert "thumbnail" not in text
    assert "iVBOR" not in text
    assert max(len(json.dumps(line)) for line in read_lines(log_path)) < 1500  # numbers only: 3072 pixels won't fit


def test_no_log_unless_configured(make_settings, client, red_png, tmp_path):
    assert make_settings().prediction_log == ""
    assert client.app.state.service.prediction_log is None
    assert client.post("/classify", content=red_png).status_code == 200


def test_the_default_is_stdout_on_cloud_run():
    assert Settings.from_env({}).prediction_log == ""
    cloud_run = {"K_SERVICE": "cifar-serve", "FEEDBACK_KEY": "k" * 32}
    assert Settings.from_env(cloud_run).prediction_log == "-"
    assert Settings.from_env({**cloud_run, "PREDICTION_LOG": "/tmp/p.jsonl"}).prediction_log == "/tmp/p.jsonl"
    assert Settings.from_env({"PREDICTION_LOG_QUEUE": "8"}).prediction_log_queue == 8


def test_stdout_gets_one_json_line_each(capfd):
    log = PredictionLog("-", capacity=4, on_drop=lambda n: None)
    log.start()
    log.submit({"kind": "feedback", "request_id": "abc"})
    log.close()
    assert capfd.readouterr().out == '{"kind":"feedback","request_id":"abc"}\n'


# --- request ids ----------------------------------------------------------------------------------------------


def test_an_incoming_request_id_is_honoured_and_echoed(logged, log_path, red_png, wait_until):
    response = logged.post("/classify", content=red_png, headers={"X-Request-ID": "client-42.a_b"})
    assert response.headers["x-request-id"] == "client-42.a_b"
    assert response.json()["request_id"] == "client-42.a_b"
    assert wait_for_lines(log_path, 1, wait_until)[0]["request_id"] == "client-42.a_b"


def test_cloud_runs_trace_id_is_used_without_one(client, red_png):
    trace = "105445AA7843BC8BF206B12000100000"
    response = client.post("/classify", content=red_png, headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1"})
    assert response.json()["request_id"] == trace.lower() == response.headers["x-request-id"]
    given = client.post("/classify", content=red_png, headers={"X-Cloud-Trace-Context": trace, "X-Request-ID": "mine"})
    assert given.json()["request_id"] == "mine"  # the caller's own id wins


@pytest.mark.parametrize("unsafe", ["../../etc/passwd", "a" * 129, "-leading-dash", "has space", "semi;colon", ""])
def test_an_unsafe_request_id_is_replaced_not_refused(client, red_png, unsafe):
    response = client.post("/classify", content=red_png, headers={"X-Request-ID": unsafe})
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_every_answer_carries_a_request_id(client):
    ids = set()
    for response in (client.get("/healthz"), client.post("/classify", content=b""), client.get("/nowhere")):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 3
    assert client.get("/healthz", headers={"X-Request-ID": "probe-1"}).headers["x-request-id"] == "probe-1"


def test_the_request_id_header_is_exposed_to_the_site(make_client, red_png):
    site = "https://site.example"
    response = make_client(cors_origins=(site,)).post("/classify", content=red_png, headers={"Origin": site})
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


# --- the embedding --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedding_model_path(model_dir: Path) -> Path:
    from tests.serve.tiny_model import build_model

    return build_model(model_dir / "tiny-embedding.onnx", embedding_dims=64)


def test_a_model_with_an_embedding_logs_it_compacted(make_client, embedding_model_path, log_path, encode, wait_until):
    client = make_client(model_path=embedding_model_path, prediction_log=str(log_path))
    data = encode(Image.new("RGB", (50, 40), (200, 40, 90)), "PNG")
    answer = client.post("/classify", content=data).json()
    (line,) = wait_for_lines(log_path, 1, wait_until)
    model = load_model(embedding_model_path, threads=1)
    assert model.has_embedding
    logits, embedding = model.outputs([OUTPUT_NAME, EMBEDDING_NAME], to_model_input(data, **OPTIONS)[None])
    assert len(line["embedding"]) == input_summary.EMBEDDING_DIMS
    np.testing.assert_allclose(line["embedding"], input_summary.embedding_for_log(embedding)[0], atol=2e-4)
    assert plog.parse_line(json.dumps(line))["embedding"] is not None
    assert answer["label"] == LABELS[int(np.argmax(logits[0]))]


def test_a_model_with_an_embedding_answers_as_one_without(make_client, embedding_model_path, model_path, red_png):
    with_embedding = make_client(model_path=embedding_model_path).post("/classify", content=red_png).json()
    without = make_client(model_path=model_path).post("/classify", content=red_png).json()
    for body in (with_embedding, without):
        body.pop("request_id")
        body.pop("feedback_token")  # each app signs with its own random key
    assert with_embedding == without
    assert not load_model(model_path, threads=1).has_embedding


# --- logging never blocks -------------------------------------------------------------------------------------


class StuckSink(io.StringIO):
    """A sink whose writes hang until released: a full disk, a blocked pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writes = 0

    def write(self, text: str) -> int:
        assert self.release.wait(30)
        self.writes += 1
        return super().write(text)


def test_a_stuck_sink_drops_and_counts_lines_but_never_holds_an_answer(model_path, red_png):
    sink = StuckSink()
    settings = Settings(model_path=model_path, ort_threads=1, log_level="warning", prediction_log_queue=4)
    with TestClient(create_app(settings, log_sink=sink)) as client:
        started = time.perf_counter()
        for _ in range(30):
            assert client.post("/classify", content=red_png).status_code == 200
        elapsed = time.perf_counter() - started
        dropped = metric(client.get("/metrics").text, "serve_prediction_log_dropped_total")
        sink.release.set()
    assert elapsed < 10  # 30 answers while the writer hangs (about 0.1 s on an idle machine)
    # The writer's hanging write holds one batch (its first record and the 4 the queue held), the queue 4 more:
    # everything else was dropped and counted.
    assert 30 - (1 + 4) - 4 <= dropped <= 30 - 4 - 1
    assert len(sink.getvalue().splitlines()) == 30 - dropped


# --- metrics --------------------------------------------------------------------------------------------------


def test_predictions_by_label_and_the_confidence_histogram(client, red_png, encode):
    text = client.get("/metrics").text
    for label in LABELS:  # every series exists before the first answer
        assert metric(text, "serve_predictions_total", label=label) == 0
    black = encode(Image.new("RGB", (32, 32)), "PNG")  # the tiny model: 10 % each
    for data in (red_png, red_png, black):
        assert client.post("/classify", content=data).status_code == 200
    text = client.get("/metrics").text
    assert metric(text, "serve_predictions_total", label="airplane") == 3  # black's tie goes to the first label
    assert metric(text, "serve_prediction_confidence_count") == 3
    assert metric(text, "serve_prediction_confidence_bucket", le="0.1") == 1
    assert metric(text, "serve_prediction_confidence_bucket", le="0.5") == 1  # "not sure": under 0.5
    assert metric(text, "serve_prediction_confidence_bucket", le="0.99") == 1
    assert metric(text, "serve_prediction_confidence_bucket", le="1.0") == 3
    assert metric(text, "serve_prediction_log_dropped_total") == 0


def test_a_failed_classify_is_not_a_prediction(client):
    client.post("/classify", content=b"not a picture")
    assert metric(client.get("/metrics").text, "serve_prediction_confidence_count") == 0


# --- the fragment: what the model saw, and the question ----------------------------------------------------------


def test_the_fragment_shows_exactly_the_models_input(client, encode):
    photo = Image.new("RGB", (300, 200), (10, 200, 30))
    photo.paste((250, 250, 0), (0, 0, 150, 100))
    data = encode(photo, "JPEG", quality=92)
    html = client.post("/classify", content=data, headers={"HX-Request": "true"}).text
    src = re.search(r'<img class="result-thumbnail" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert src is not None
    with Image.open(io.BytesIO(base64.b64decode(src[1]))) as shown:
        assert shown.format == "PNG"
        assert shown.size == (32, 32)
        np.testing.assert_array_equal(np.asarray(shown.convert("RGB")), to_model_input(data, **OPTIONS))


def test_the_fragment_asks_whether_the_answer_is_right(client, red_png):
    response = client.post("/classify", content=red_png, headers={"HX-Request": "true", "X-Request-ID": "req-1"})
    html = response.text
    token = r'data-token="[\w.-]+"'  # the answer's feedback_token (tests/serve/test_serve_feedback_tokens.py)
    form = re.search(
        rf'<form class="feedback" data-request-id="req-1" {token} data-predicted="airplane">.*?</form>', html
    )
    assert form is not None
    assert "<legend>Is this right?</legend>" in form[0]
    options = re.findall(r'<option value="([^"]*)">', form[0])
    assert options == ["", *[label for label in LABELS if label != "airplane"], "none_of_these"]
    checkbox = re.search(r'<input type="checkbox" name="share_thumbnail"[^>]*>', form[0])
    assert checkbox is not None
    assert "checked" not in checkbox[0]
    assert 'role="status"' in form[0]


def test_a_bad_prediction_log_path_stops_the_start_with_one_line(model_path, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"MODEL_PATH": str(model_path), "PREDICTION_LOG": str(blocker / "log.jsonl"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "serve"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"serve: PREDICTION_LOG={str(blocker / 'log.jsonl')!r} cannot be written (")

""" "None of the ten" through the service: a model file with an outlier score flags pictures above its threshold in
the JSON answer, the htmx fragment and the prediction log; a file without one answers `outlier: null`; a file with
half of it (the output without its threshold, or the other way round) is refused at start."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from contract import model_file
from contract import prediction_log as plog
from serve.model import ModelLoadError, load_model
from tests.serve.tiny_model import OUTLIER_THRESHOLD, outlier_metadata


def half_and_half(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """The tiny model reads the label from the top half and the outlier score from the bottom half's brightness."""
    picture = np.zeros((32, 32, 3), dtype=np.uint8)
    picture[:16], picture[16:] = top, bottom
    return Image.fromarray(picture)


@pytest.fixture(scope="module")
def outlier_model_path(make_model):
    return make_model("outlier.onnx", meta={model_file.OUTLIER: outlier_metadata()}, outlier_score=True)


def test_an_outlier_is_flagged_and_keeps_its_best_guess(make_client, outlier_model_path, encode):
    client = make_client(model_path=outlier_model_path)
    known = client.post("/classify", content=encode(half_and_half((255, 0, 0), (0, 0, 0)), "PNG")).json()
    strange = client.post("/classify", content=encode(half_and_half((255, 0, 0), (255, 255, 255)), "PNG")).json()
    assert known["outlier"] is False
    assert known["outlier_score"] == pytest.approx(0.0, abs=1e-3)
    assert strange["outlier"] is True
    assert strange["outlier_score"] == pytest.approx(10.0, abs=1e-3)
    assert strange["outlier_score"] > OUTLIER_THRESHOLD
    assert known["label"] == strange["label"] == "airplane"  # the best guess stays
    assert len(strange["top_k"]) == 5


def test_the_threshold_is_the_files(make_client, make_model, encode):
    strict = make_model("strict.onnx", meta={model_file.OUTLIER: outlier_metadata(threshold=1.0)}, outlier_score=True)
    grey = encode(half_and_half((255, 0, 0), (60, 60, 60)), "PNG")  # score 60 / 25.5 = 2.35
    assert make_client(model_path=strict).post("/classify", content=grey).json()["outlier"] is True


def test_the_fragment_carries_the_flag(make_client, outlier_model_path, encode):
    client = make_client(model_path=outlier_model_path)
    data = encode(half_and_half((0, 0, 255), (255, 255, 255)), "PNG")
    html = client.post("/classify", content=data, headers={"HX-Request": "true"}).text
    assert 'data-outlier="true"' in html
    assert 'data-outlier-score="10.0000"' in html


def test_a_model_without_the_score_answers_null_and_no_fragment_data(client, encode):
    data = encode(half_and_half((255, 0, 0), (255, 255, 255)), "PNG")
    body = client.post("/classify", content=data).json()
    assert body["outlier"] is None
    assert body["outlier_score"] is None
    assert "data-outlier" not in client.post("/classify", content=data, headers={"HX-Request": "true"}).text


def test_the_prediction_log_keeps_the_flag(make_client, outlier_model_path, encode, tmp_path):
    log_path = tmp_path / "predictions.jsonl"
    client = make_client(model_path=outlier_model_path, prediction_log=str(log_path))
    client.post("/classify", content=encode(half_and_half((255, 0, 0), (255, 255, 255)), "PNG"))
    client.post("/classify", content=encode(half_and_half((255, 0, 0), (0, 0, 0)), "PNG"))
    client.__exit__(None, None, None)  # the lifespan's end flushes the log
    lines = [plog.parse_line(text) for text in log_path.read_text().splitlines()]
    assert [line["outlier"] for line in lines] == [True, False]
    assert lines[0]["outlier_score"] == pytest.approx(10.0, abs=1e-3)
    assert json.loads(log_path.read_text().splitlines()[0])["outlier"] is True


def test_the_metrics_count_the_flagged_answers(make_client, outlier_model_path, encode):
    client = make_client(model_path=outlier_model_path)
    for bottom in ((255, 255, 255), (0, 0, 0), (250, 250, 250)):
        client.post("/classify", content=encode(half_and_half((255, 0, 0), bottom), "PNG"))
    exposition = client.get("/metrics").text
    assert "serve_prediction_outliers_total 2.0" in exposition
    assert 'serve_predictions_total{label="airplane"} 3.0' in exposition


def test_the_openapi_answer_names_the_fields(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Classification"]
    assert {"outlier", "outlier_score"} <= set(schema["required"])


def test_get_model_shows_the_threshold(make_client, outlier_model_path):
    described = make_client(model_path=outlier_model_path).get("/model").json()
    assert described[model_file.OUTLIER][model_file.OUTLIER_THRESHOLD] == OUTLIER_THRESHOLD


@pytest.mark.parametrize(
    ("meta", "with_output", "message"),
    [
        ({}, True, "metadata 'outlier' is missing"),
        ({model_file.OUTLIER: outlier_metadata()}, False, "output 'outlier_score' is missing"),
        ({model_file.OUTLIER: {"method": "no threshold"}}, True, "must hold a number under 'threshold'"),
        ({model_file.OUTLIER: {model_file.OUTLIER_THRESHOLD: "high"}}, True, "must hold a number"),
    ],
)
def test_half_an_outlier_score_is_refused_at_start(make_model, meta, with_output, message):
    path = make_model(f"half-{len(meta)}-{with_output}-{message[:6]}.onnx", meta=meta, outlier_score=with_output)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)

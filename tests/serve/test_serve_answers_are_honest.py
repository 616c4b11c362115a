"""What an answer promises, checked: a float TIFF of values 0-1 is the picture it shows, not black; answers and errors
are never cached (`Cache-Control: no-store`); 202 on /feedback means the line is in the log's write queue, so a
service that keeps no log, or whose queue is full, answers 503 instead of a silent 202."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.serve.test_serve_feedback import signed


def float_tiff(values: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(values.astype(np.float32), "F").save(out, "TIFF")
    return out.getvalue()


def test_a_float_tiff_of_values_0_to_1_is_read_as_its_picture(client):
    """The tiny model reads the label from the top half's colour: a bright grey is read as all three channels."""
    bright = np.full((64, 64), 0.9)
    dark = np.full((64, 64), 0.9 / 255)  # what Pillow's own conversion made of the bright one: almost black
    answers = [client.post("/classify", content=float_tiff(v)).json() for v in (bright, dark)]
    grey = client.post("/classify", content=float_tiff(np.full((64, 64), 229.0))).json()  # 0.9 of 255, as 0-255
    assert answers[0]["score"] == pytest.approx(grey["score"], abs=1e-4)  # 0-1 floats read as the picture they are
    assert answers[1]["score"] < answers[0]["score"] - 0.2  # and not as the almost black one Pillow made of them


@pytest.mark.parametrize("values", [np.full((8, 8), 1000.0), np.full((8, 8), -100.0), np.full((8, 8), np.nan)])
def test_a_float_tiff_that_is_no_picture_is_422(client, values):
    response = client.post("/classify", content=float_tiff(values))
    assert response.status_code == 422
    assert response.json()["error"] == "corrupt_image"
    assert "from 0 to 1" in response.json()["detail"]


def test_answers_and_errors_are_never_cached(client, red_png):
    for response in (
        client.post("/classify", content=red_png),
        client.post("/classify", content=red_png, headers={"HX-Request": "true"}),
        client.post("/classify", content=b"not a picture"),
        client.post("/feedback", content=b"{}", headers={"Content-Type": "application/json"}),
    ):
        assert response.headers["cache-control"] == "no-store", response.text


def test_feedback_without_a_log_is_503_not_a_silent_202(client):
    body = signed(client, {"request_id": "r", "label": "dog"})
    response = client.post("/feedback", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 503
    assert response.json()["error"] == "feedback_not_kept"
    assert "PREDICTION_LOG" in response.json()["detail"]


def test_feedback_that_finds_the_log_queue_full_is_503_and_counted(make_client, tmp_path):
    client = make_client(prediction_log=str(tmp_path / "log.jsonl"))
    log = client.app.state.service.prediction_log
    log.submit = lambda record: False  # the queue is full: submit() says so (serve/log_writer.py)
    body = signed(client, {"request_id": "r", "label": "dog"})
    response = client.post("/feedback", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 503
    assert response.json()["error"] == "feedback_not_kept"
    assert response.headers["retry-after"] == "1"
    assert 'serve_feedback_total{verdict="wrong"} 0.0' in client.get("/metrics").text  # not counted as received

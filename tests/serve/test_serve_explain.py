"""Where the model looked, on request: `?explain=1` adds the class activation map of the answer's label (grid and
heatmap) to the JSON and the fragment; the plain answer is unchanged; a model without a map answers
`explanation: null` and offers no "Why?"; an outlier reads as none of the ten, its label the best guess."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from contract import model_file
from tests.serve.tiny_model import outlier_metadata


def picture(quadrant_colour: dict[tuple[int, int], tuple[int, int, int]]) -> bytes:
    """32x32 PNG, black but for the quadrants given ((row, column) -> RGB)."""
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    for (row, column), colour in quadrant_colour.items():
        pixels[row * 16 : row * 16 + 16, column * 16 : column * 16 + 16] = colour
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def explaining(make_model):
    return make_model("cam.onnx", class_activation=True)


def test_the_map_is_hot_where_the_answers_colour_is(make_client, explaining):
    client = make_client(model_path=explaining)
    red_top_right = picture({(0, 1): (255, 0, 0)})  # airplane is read from red (tests/serve/tiny_model.py)
    plain = client.post("/classify", content=red_top_right).json()
    explained = client.post("/classify?explain=1", content=red_top_right).json()
    assert "explanation" not in plain  # the plain answer does not grow
    assert explained["label"] == plain["label"] == "airplane"
    explanation = explained["explanation"]
    assert explanation["method"] == "class activation map"
    assert explanation["label"] == "airplane"
    assert explanation["grid"] == [[0.0, 1.0], [0.0, 0.0]]
    with Image.open(io.BytesIO(base64.b64decode(explanation["heatmap"]))) as heatmap:
        assert heatmap.size == (32, 32)
        warm = np.asarray(heatmap.convert("RGB"), dtype=float)
    assert warm[:16, 16:, 0].mean() > warm[16:, :16, 0].mean() + 100  # warm where it looked


def test_the_fragment_offers_why_and_shows_the_heatmap(make_client, explaining):
    client = make_client(model_path=explaining)
    data = picture({(0, 0): (0, 0, 255)})  # blue in the top half: bird
    plain = client.post("/classify", content=data, headers={"HX-Request": "true"}).text
    assert 'class="button result-why-button"' in plain
    assert "result-heatmap" not in plain
    explained = client.post("/classify?explain=true", content=data, headers={"HX-Request": "true"}).text
    assert '<img class="result-heatmap" src="data:image/png;base64,' in explained
    assert "Where it looked for “bird”" in explained
    assert "result-why-button" not in explained


def test_a_model_without_a_map_says_null_and_offers_no_why(client, red_png):
    assert client.post("/classify?explain=1", content=red_png).json()["explanation"] is None
    assert "result-why" not in client.post("/classify", content=red_png, headers={"HX-Request": "true"}).text


def test_an_outlier_reads_as_none_of_the_ten_with_the_best_guess_beneath(make_client, make_model):
    path = make_model("outlier.onnx", meta={model_file.OUTLIER: outlier_metadata()}, outlier_score=True)
    client = make_client(model_path=path)
    strange = picture({(0, 0): (255, 0, 0), (0, 1): (255, 0, 0), (1, 0): (255, 255, 255), (1, 1): (255, 255, 255)})
    html = client.post("/classify", content=strange, headers={"HX-Request": "true"}).text
    assert "This doesn’t look like any of the ten things I know" in html
    assert '<p class="result-guess">Best guess: airplane,' in html
    assert '<h2 class="result-label">airplane</h2>' not in html

"""POST /classify happy paths: every format as a raw body and as multipart, JSON shape, fragments."""

from __future__ import annotations

import math
import re

import pytest
from PIL import Image

FORMATS = [
    ("JPEG", "image/jpeg"),
    ("PNG", "image/png"),
    ("WEBP", "image/webp"),
    ("AVIF", "image/avif"),
    ("GIF", "image/gif"),
    ("BMP", "image/bmp"),
    ("TIFF", "image/tiff"),
]


def check_answer(body: dict, label: str) -> None:
    # request_id and feedback_token: for POST /feedback; outlier and outlier_score: null, the tiny model has no score
    assert set(body) == {"label", "score", "top_k", "outlier", "outlier_score", "model", "request_id", "feedback_token"}
    assert body["outlier"] is None
    assert body["outlier_score"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])  # a new one: the request sent none
    assert body["label"] == label
    assert body["model"] == {"name": "tiny-test", "version": "0123abcd"}
    assert len(body["top_k"]) == 5  # TOP_K default
    assert body["top_k"][0] == {"label": body["label"], "score": body["score"]}
    scores = [entry["score"] for entry in body["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)


@pytest.mark.parametrize(("fmt", "content_type"), FORMATS)
@pytest.mark.parametrize(("colour", "label"), [((255, 0, 0), "airplane"), ((0, 0, 255), "bird")])
def test_raw_body_each_format(client, encode, fmt, content_type, colour, label):
    data = encode(Image.new("RGB", (50, 40), colour), fmt)
    response = client.post("/classify", content=data, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    check_answer(response.json(), label)


@pytest.mark.parametrize(("fmt", "content_type"), FORMATS)
def test_multipart_each_format(client, encode, fmt, content_type):
    data = encode(Image.new("RGB", (50, 40), (0, 255, 0)), fmt)
    response = client.post("/classify", files={"file": (f"x.{fmt.lower()}", data, content_type)})
    assert response.status_code == 200, response.text
    check_answer(response.json(), "automobile")


def test_multipart_with_other_fields(client, red_png):
    response = client.post("/classify", files={"file": ("a.png", red_png, "image/png")}, data={"note": "hello"})
    assert response.status_code == 200
    assert response.json()["label"] == "airplane"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "image/png", "text/plain"])
def test_raw_body_format_is_sniffed_not_trusted(client, red_jpeg, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/classify", content=red_jpeg, headers=headers)
    assert response.status_code == 200
    assert response.json()["label"] == "airplane"


def test_probabilities_are_a_stable_softmax(client, red_png):
    body = client.post("/classify", content=red_png).json()
    # logits: 10 for airplane, 0 for the other nine
    expected = math.exp(10) / (math.exp(10) + 9)
    assert body["score"] == pytest.approx(expected, rel=1e-6)
    assert body["top_k"][1]["score"] == pytest.approx(1 / (math.exp(10) + 9), rel=1e-6)
    # ties keep label order
    assert [e["label"] for e in body["top_k"][1:]] == ["automobile", "bird", "cat", "deer"]


def test_top_k_setting(make_client, red_png):
    body = make_client(top_k=3).post("/classify", content=red_png).json()
    assert len(body["top_k"]) == 3
    body = make_client(top_k=50).post("/classify", content=red_png).json()
    assert len(body["top_k"]) == 10  # never more than there are labels


def test_centre_crop_uses_the_middle_of_a_wide_picture(client, encode):
    # A wide image: blue left and right thirds, red middle. After the centre crop only red is left.
    image = Image.new("RGB", (300, 100), (0, 0, 255))
    image.paste((255, 0, 0), (100, 0, 200, 100))
    body = client.post("/classify", content=encode(image, "PNG")).json()
    assert body["label"] == "airplane"
    assert body["score"] > 0.99


@pytest.mark.parametrize("headers", [{"HX-Request": "true"}, {"Accept": "text/html"}])
def test_fragment_on_success(client, red_png, headers):
    response = client.post("/classify", content=red_png, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert html.startswith('<section class="result" data-label="airplane"> <h2 class="result-label">airplane</h2> ')
    assert '<p class="result-score">100% sure</p> <ol class="topk">' in html  # sure: no "not sure" note
    items = re.findall(
        r'<li><span class="topk-label">([^<]+)</span> <progress class="topk-bar" max="100" value="(\d+)" '
        r'aria-label="\1 \2%"></progress> <span class="topk-pct">\2%</span></li>',
        html,
    )
    assert [label for label, _ in items] == ["airplane", "automobile", "bird", "cat", "deer"]
    assert items[0][1] == "100"
    assert html.endswith('<p class="result-model">model tiny-test 0123abcd</p></section>')
    assert "style=" not in html


def test_fragment_says_when_the_model_is_not_sure(client, encode):
    black = encode(Image.new("RGB", (32, 32)), "PNG")  # the tiny model's logits are all 0: 10 % each
    assert client.post("/classify", content=black).json()["score"] == pytest.approx(0.1)
    html = client.post("/classify", content=black, headers={"HX-Request": "true"}).text
    assert '<p class="result-score">10% sure</p> <p class="result-unsure">Not sure: ' in html


def test_fragment_escapes_labels_and_model(make_client, make_model, red_png):
    hostile = ['<script>alert("x")</script>', "a&b", "c", "d"]
    path = make_model("hostile.onnx", classes=4, meta={"labels": hostile, "model_name": "<b>m</b>", "version": '"v"'})
    html = make_client(model_path=path).post("/classify", content=red_png, headers={"HX-Request": "true"}).text
    assert "<script>" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "model &lt;b&gt;m&lt;/b&gt; &quot;v&quot;" in html


def test_json_wins_without_html_headers(client, red_png):
    response = client.post("/classify", content=red_png, headers={"Accept": "application/json", "HX-Request": "false"})
    assert response.headers["content-type"] == "application/json"

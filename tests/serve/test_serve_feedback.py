"""POST /feedback against the real app: 202 and one "feedback" line per reply with its answer's token (the thumbnail
only with consent, and only the picture the model saw), the verdict counted; unknown labels 422, malformed ids 400,
bad thumbnails 422, the body limit 413; the site may post it cross-origin as JSON. The tokens themselves, the key
settings and the rate limit: tests/serve/test_serve_feedback_tokens.py."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract import prediction_log as plog
from contract.feedback_token import input_digest
from serve.feedback import FEEDBACK_MAX_BYTES
from tests.serve.test_serve_endpoints import metric

SITE = "https://site.example"


def png_base64(pixels: np.ndarray, **save) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", **save)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "predictions.jsonl"


@pytest.fixture
def logged(make_client, log_path):
    return make_client(prediction_log=str(log_path))


def lines_after_close(client, log_path: Path) -> list[dict]:
    client.__exit__(None, None, None)  # the lifespan's end writes what is queued and closes the file
    return [json.loads(line) for line in log_path.read_text().splitlines()]


BLANK = np.zeros((32, 32, 3), dtype=np.uint8)


def signed(client, body: dict, seen: np.ndarray = BLANK) -> dict:
    """The body with the token the service mints for an answer `predicted` (airplane when absent) of `seen`."""
    state = client.app.state.service
    label = body.get("predicted") or "airplane"
    token = state.feedback_keys.mint(body["request_id"], state.model.version, label, input_digest(seen))
    return {**body, "token": token}


def post(client, body, *, seen: np.ndarray = BLANK, sign: bool = True, **headers):
    """POST /feedback, with the answer's token unless the body has one, or sign is False."""
    if sign and isinstance(body, dict) and isinstance(body.get("request_id"), str) and "token" not in body:
        body = signed(client, body, seen)
    return client.post("/feedback", content=json.dumps(body), headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        ({"label": "airplane", "predicted": "airplane"}, "right"),
        ({"label": "cat", "predicted": "airplane"}, "wrong"),
        ({"label": "cat", "correct": False}, "wrong"),
        ({"label": "none_of_these", "predicted": "airplane"}, "none_of_these"),
    ],
)
def test_a_reply_is_accepted_counted_and_logged(logged, log_path, body, verdict):
    response = post(logged, {"request_id": "r-1", **body})
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "request_id": "r-1", "verdict": verdict}
    assert metric(logged.get("/metrics").text, "serve_feedback_total", verdict=verdict) == 1
    (line,) = lines_after_close(logged, log_path)
    assert plog.parse_line(json.dumps(line)) is not None
    assert line["kind"] == "feedback"
    assert line["severity"] == "INFO"
    assert (line["request_id"], line["label"], line["verdict"]) == ("r-1", body["label"], verdict)
    assert line["predicted"] == body.get("predicted", "airplane")  # what the token says was answered
    assert line["model_version"] == "0123abcd"
    assert line["input_digest"] == input_digest(BLANK)
    assert line["token"]
    assert line["share_thumbnail"] is False
    assert "thumbnail" not in line


def test_the_thumbnail_is_kept_only_with_consent(logged, log_path, pixels):
    thumbnail = png_base64(pixels)
    base = {"request_id": "r-2", "label": "cat", "predicted": "airplane", "thumbnail": thumbnail}
    assert post(logged, base, seen=pixels).status_code == 202  # sent, but no consent: not even read
    assert post(logged, {**base, "share_thumbnail": False}, seen=pixels).status_code == 202
    assert post(logged, {**base, "share_thumbnail": True}, seen=pixels).status_code == 202
    without, still_without, shared = lines_after_close(logged, log_path)
    assert "thumbnail" not in without
    assert "thumbnail" not in still_without
    assert shared["share_thumbnail"] is True
    with Image.open(io.BytesIO(base64.b64decode(shared["thumbnail"]))) as image:  # re-encoded, same pixels
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), pixels)


def test_the_thumbnail_of_a_classify_answer_comes_back_as_it_was(logged, log_path, red_png):
    html = logged.post("/classify", content=red_png, headers={"HX-Request": "true", "X-Request-ID": "r-3"}).text
    thumbnail = re.search(r'src="data:image/png;base64,([^"]+)"', html)[1]
    token = re.search(r'data-token="([^"]+)"', html)[1]
    body = {"request_id": "r-3", "token": token, "label": "cat", "predicted": "airplane", "share_thumbnail": True}
    assert post(logged, {**body, "thumbnail": thumbnail}).status_code == 202
    assert post(logged, {**body, "thumbnail": "data:image/png;base64," + thumbnail}).status_code == 202  # the src
    prediction, *replies = lines_after_close(logged, log_path)
    assert prediction["kind"] == "prediction"
    assert prediction["request_id"] == "r-3"
    assert [reply["thumbnail"] for reply in replies] == [thumbnail, thumbnail]
    assert [reply["input_digest"] for reply in replies] == [prediction["input_digest"]] * 2


def test_a_repeated_reply_is_logged_again_for_harvest_to_judge(logged, log_path):
    body = {"request_id": "r-4", "label": "dog", "predicted": "cat"}
    assert post(logged, body).status_code == 202
    assert post(logged, body).status_code == 202
    assert len(lines_after_close(logged, log_path)) == 2  # harvest keeps the first per answer


def test_feedback_without_a_log_is_503(client):
    response = post(client, {"request_id": "r", "label": "dog", "predicted": "dog"})
    assert response.status_code == 503  # 202 would promise a line nobody keeps (test_serve_answers_are_honest.py)
    assert response.json()["error"] == "feedback_not_kept"


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "r", "label": "unicorn", "predicted": "cat"},
        {"request_id": "r", "label": "", "predicted": "cat"},
        {"request_id": "r", "label": ["cat"], "predicted": "cat"},
        {"request_id": "r", "label": "Cat", "predicted": "cat"},
    ],
)
def test_an_unknown_label_is_422(client, body):
    response = post(client, body)
    assert response.status_code == 422
    assert response.json()["error"] == "unknown_label"
    assert "airplane" in response.json()["detail"]


@pytest.mark.parametrize("request_id", ["", "../../etc/passwd", "a" * 129, ".hidden", "has space", 42, None])
def test_a_malformed_request_id_is_400(client, request_id):
    response = post(client, {"request_id": request_id, "label": "cat", "predicted": "cat"})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request_id"


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        b'"cat"',
        json.dumps({"request_id": "r", "label": "cat", "predicted": "cat", "extra": 1}).encode(),
        json.dumps({"request_id": "r", "label": "cat", "correct": "yes"}).encode(),
        json.dumps({"request_id": "r", "label": "cat", "predicted": "cat", "share_thumbnail": "true"}).encode(),
        json.dumps({"request_id": "r", "label": "cat"}).encode(),  # no token
        b"\xff\xfe",
        b"[" * 10_000,  # deep nesting (within the size limit)
    ],
)
def test_a_malformed_body_is_400(client, content):
    response = client.post("/feedback", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_feedback"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "image/png"])
def test_only_json_is_read(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"request_id": "r", "label": "cat", "predicted": "cat"})
    response = client.post("/feedback", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "not_json"


def test_the_body_limit_applies(client):
    big = json.dumps({"request_id": "r", "label": "cat", "predicted": "cat", "thumbnail": "A" * FEEDBACK_MAX_BYTES})
    response = client.post("/feedback", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    chunked = client.post("/feedback", content=iter([big.encode()]), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413  # no Content-Length: counted as it arrives


def png_with_chunk(pixels: np.ndarray, kind: bytes, data: bytes) -> str:
    raw = base64.b64decode(png_base64(pixels))
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return base64.b64encode(raw[:33] + chunk + raw[33:]).decode()  # after the signature and IHDR


def bad_thumbnails(pixels: np.ndarray) -> dict[str, object]:
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, "JPEG")
    return {
        "missing": None,
        "not a string": 123,
        "not base64": "this is not base64!",
        "a JPEG": base64.b64encode(jpeg.getvalue()).decode(),
        "33x32": png_base64(np.zeros((32, 33, 3), dtype=np.uint8)),
        "16x16": png_base64(np.zeros((16, 16, 3), dtype=np.uint8)),
        "a text chunk": png_with_chunk(pixels, b"tEXt", b"Comment\x00" + b"x" * 100),
        "a compressed text chunk": png_with_chunk(pixels, b"zTXt", b"k\x00\x00" + zlib.compress(b"x" * 10**6)),
        "truncated": png_base64(pixels)[:200],
        "too long": "A" * (plog.THUMBNAIL_MAX_CHARS + 4),
        "empty": "",
    }


@pytest.mark.parametrize("kind", list(bad_thumbnails(np.zeros((32, 32, 3), dtype=np.uint8))))
def test_a_shared_thumbnail_must_be_a_plain_png_of_the_models_input(client, pixels, kind):
    body = {"request_id": "r", "label": "cat", "predicted": "dog", "share_thumbnail": True}
    thumbnail = bad_thumbnails(pixels)[kind]
    if thumbnail is not None:
        body["thumbnail"] = thumbnail
    response = post(client, body, seen=pixels)
    assert response.status_code in (413, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"] == "bad_thumbnail"
    else:  # "too long" may pass the body limit first
        assert kind == "too long"


def test_other_png_modes_of_the_right_size_are_accepted(logged, pixels):
    client = logged
    grey = np.asarray(Image.fromarray(pixels).convert("L"))
    palette = Image.fromarray(pixels).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    for seen, thumbnail in (
        (np.repeat(grey[..., None], 3, axis=2), png_base64(grey)),
        (np.asarray(palette.convert("RGB")), base64.b64encode(buffer.getvalue()).decode()),
    ):
        body = {"request_id": "r", "label": "cat", "predicted": "dog", "share_thumbnail": True, "thumbnail": thumbnail}
        assert post(client, body, seen=seen).status_code == 202  # fmt: skip


def test_a_shared_thumbnail_must_be_the_picture_the_model_saw(client, pixels):
    body = {"request_id": "r", "label": "cat", "predicted": "dog", "share_thumbnail": True}
    response = post(client, {**body, "thumbnail": png_base64(pixels)}, seen=BLANK)  # the answer was for BLANK
    assert response.status_code == 422
    assert response.json()["error"] == "bad_thumbnail"
    assert "not the picture the model saw" in response.json()["detail"]


def test_feedback_before_the_model_is_loaded_is_503(make_settings):
    from starlette.testclient import TestClient

    from serve.app import create_app

    client = TestClient(create_app(make_settings()))  # no lifespan run: no model
    response = post(client, {"request_id": "r", "label": "cat", "predicted": "cat"}, sign=False)
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"


def test_get_feedback_is_405(client):
    assert client.get("/feedback").status_code == 405


def test_every_verdict_is_a_series_from_the_start(client):
    text = client.get("/metrics").text
    for verdict in plog.VERDICTS:
        assert metric(text, "serve_feedback_total", verdict=verdict) == 0


def test_the_site_may_post_json_cross_origin(make_client, log_path):
    cors = make_client(cors_origins=(SITE,), prediction_log=str(log_path))
    preflight = cors.options(
        "/feedback",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    response = post(cors, {"request_id": "r", "label": "cat", "predicted": "cat"}, Origin=SITE)
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == SITE

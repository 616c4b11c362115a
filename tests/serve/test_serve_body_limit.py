"""Receiving is bounded while the stream is read: nothing past the body limit or the upload budget is ever pulled
from the client, whether Content-Length is right, missing (chunked) or lying, and an upload that falls below the
minimum pace is cut. Driven at the ASGI level, because a test client buffers the whole body before the app sees it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from serve.settings import Settings, SettingsError
from serve.uploads import UploadPace
from tests.serve.asgi_scope import classify_scope

CHUNK = 64 * 1024
LIMIT = 10 * 1024 * 1024


def post_stream(
    client,
    headers: dict[str, str],
    chunks: int,
    *,
    chunk: bytes = b"\0" * CHUNK,
    every_s: float = 0.0,
    then_disconnect: bool = False,
) -> tuple[int, dict, int, dict[str, str]]:
    """POST /classify with `chunks` chunks of `chunk`, one every `every_s` seconds (then, if asked, a disconnect);
    returns (status, JSON body, chunks pulled, response headers)."""
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        if then_disconnect and pulled == chunks:
            return {"type": "http.disconnect"}
        await anyio.sleep(every_s)
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": then_disconnect or pulled < chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = classify_scope([(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()])

    async def call() -> None:
        await client.app(scope, receive, send)

    client.portal.call(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return start["status"], json.loads(body), pulled, response_headers


def budget_held(client) -> int:
    """Bytes of the upload budget still held."""
    return client.app.state.service.uploads.held


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "image/jpeg"},  # chunked: no Content-Length
        {"Content-Type": "image/jpeg", "Content-Length": "1000"},  # lies: says 1 kB
        {"Content-Type": "multipart/form-data; boundary=x"},
    ],
    ids=["chunked", "lying-content-length", "multipart"],
)
def test_stops_reading_at_the_limit(client, headers):
    endless = 10_000  # 640 MB if it were all read
    status, body, pulled, _ = post_stream(client, headers, endless)
    assert status == 413
    assert body["error"] == "body_too_large"
    assert pulled == LIMIT // CHUNK + 1  # the first chunk past the limit, and not one more
    assert budget_held(client) == 0


def test_declared_too_large_is_refused_before_reading(client):
    status, body, pulled, _ = post_stream(client, {"Content-Length": str(LIMIT + 1)}, 10_000)
    assert status == 413
    assert body["error"] == "body_too_large"
    assert pulled == 0


def test_exactly_the_limit_is_read_in_full(client):
    # LIMIT bytes of zeros is not an image, but it is not too large either: it is read and decoded.
    status, body, pulled, _ = post_stream(client, {}, LIMIT // CHUNK)
    assert (status, body["error"]) == (415, "not_an_image")
    assert pulled == LIMIT // CHUNK


@pytest.mark.parametrize("declared", ["-1", "1e3", "²", "12 34", "0x10"])
def test_invalid_content_length_is_a_400(client, declared):
    status, body, pulled, _ = post_stream(client, {"Content-Length": declared}, 1)
    assert (status, body["error"]) == (400, "bad_request")
    assert pulled == 0


def test_an_upload_the_budget_has_no_room_for_is_refused_before_reading(make_client):
    client = make_client(receive_buffer_bytes=CHUNK)
    status, body, pulled, headers = post_stream(client, {"Content-Length": str(2 * CHUNK)}, 2)
    assert (status, body["error"], pulled) == (503, "overloaded", 0)
    assert headers["retry-after"] == "1"
    assert budget_held(client) == 0


def test_an_upload_that_outgrows_the_budget_is_cut_there(make_client):
    client = make_client(receive_buffer_bytes=4 * CHUNK)
    status, body, pulled, headers = post_stream(client, {}, 10_000)  # chunked: no length to check beforehand
    assert (status, body["error"]) == (503, "overloaded")
    assert pulled == 5  # the chunk that did not fit, and not one more
    assert headers["connection"] == "close"  # the rest of it is not read
    assert budget_held(client) == 0


def test_a_body_holds_its_bytes_until_its_request_is_answered(make_client, gated_model, red_png):
    client = make_client(model=gated_model, receive_buffer_bytes=len(red_png) + CHUNK - 1)
    gated_model.close()
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(client.post, "/classify", content=red_png)
        assert gated_model.entered.wait(30)  # received and decoded, waiting in inference
        assert budget_held(client) == len(red_png)
        refused = post_stream(client, {"Content-Length": str(CHUNK)}, 1)
        gated_model.open()
        assert holder.result(30).status_code == 200
    status, body, pulled, _ = refused
    assert (status, body["error"], pulled) == (503, "overloaded", 0)
    assert budget_held(client) == 0
    status, body, pulled, _ = post_stream(client, {"Content-Length": str(CHUNK)}, 1)
    assert (status, body["error"], pulled) == (415, "not_an_image", 1)  # room again: read and decoded


def test_a_form_upload_is_charged_for_the_copies_its_extraction_makes(make_client, red_png):
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="red.png"\r\nContent-Type: image/png\r\n\r\n'
    form = head + red_png + b"\r\n--x--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    tight = make_client(receive_buffer_bytes=3 * len(form) - 1)
    refused = tight.post("/classify", content=form, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (503, "overloaded")
    assert tight.post("/classify", content=red_png).status_code == 200  # a raw body of the same picture fits
    roomy = make_client(receive_buffer_bytes=3 * len(form))
    assert roomy.post("/classify", content=form, headers=headers).status_code == 200
    assert budget_held(tight) == budget_held(roomy) == 0


def test_a_client_that_disconnects_midway_is_a_400_and_frees_its_bytes(client):
    status, body, pulled, _ = post_stream(client, {}, 3, then_disconnect=True)
    assert (status, body["error"], pulled) == (400, "bad_request", 3)
    assert "disconnected" in body["detail"]
    assert budget_held(client) == 0


def test_an_upload_below_the_minimum_pace_is_cut_after_the_grace(make_client):
    client = make_client(upload_grace_s=0.2, min_upload_bytes_per_s=100_000)
    # 500 bytes/s: 10,000 chunks would take 200 s, and BODY_TIMEOUT_S (20 s) would let about 1,000 through.
    status, body, pulled, headers = post_stream(client, {}, 10_000, chunk=b"\0" * 10, every_s=0.02)
    assert (status, body["error"]) == (408, "body_timeout")
    assert "too slowly" in body["detail"]
    assert pulled < 100  # about 10: cut at the grace
    assert headers["connection"] == "close"
    assert budget_held(client) == 0


def test_an_upload_whose_first_byte_never_comes_is_cut_after_the_grace(make_client):
    client = make_client(upload_grace_s=0.2)
    status, body, pulled, headers = post_stream(client, {"Content-Length": "1000"}, 1, every_s=60)
    assert (status, body["error"], pulled) == (408, "body_timeout", 0)
    assert body["detail"] == "no byte of the upload arrived within 0.2 s"  # the grace, not BODY_TIMEOUT_S
    assert headers["connection"] == "close"


def test_an_upload_above_the_minimum_pace_is_read_in_full(make_client):
    client = make_client(upload_grace_s=0.05, min_upload_bytes_per_s=CHUNK)
    # 64 KiB every 10 ms: 100 times the minimum, for 4 times the grace.
    status, body, pulled, _ = post_stream(client, {}, 20, every_s=0.01)
    assert (status, body["error"], pulled) == (415, "not_an_image", 20)


def test_the_pace_gives_the_grace_then_asks_for_the_average():
    pace = UploadPace(timeout_s=20, grace_s=2, min_bytes_per_s=8192)
    assert pace.deadline(0) == 2  # the first byte's deadline
    assert pace.deadline(8192) == 2  # 1 s worth of the minimum: still the grace
    assert pace.deadline(5 * 8192) == 5  # 5 s worth: more must come by 5 s after the start
    assert pace.deadline(10**9) == 20  # never past the whole upload's timeout
    assert UploadPace(timeout_s=20, grace_s=2, min_bytes_per_s=0).deadline(0) == 20  # no minimum
    # A 1-Mbit/s phone link (125 kB/s, 15 times the minimum) that has sent for t seconds may then stall for 14 t.
    unbounded = UploadPace(timeout_s=1e9, grace_s=2, min_bytes_per_s=8192)
    for t in (2, 5, 10):
        assert unbounded.deadline(125_000 * t) > 15 * t


def test_the_receiving_settings_are_read_from_the_environment():
    defaults = Settings.from_env({})
    assert (defaults.upload_grace_s, defaults.min_upload_bytes_per_s) == (2.0, 8192)
    assert defaults.receive_buffer_bytes == 256 * 1024 * 1024
    env = {"UPLOAD_GRACE_S": "0.5", "MIN_UPLOAD_BYTES_PER_S": "0", "RECEIVE_BUFFER_BYTES": "1000"}
    settings = Settings.from_env(env)
    assert (settings.upload_grace_s, settings.min_upload_bytes_per_s, settings.receive_buffer_bytes) == (0.5, 0, 1000)
    with pytest.raises(SettingsError, match="RECEIVE_BUFFER_BYTES='0' must be at least 1"):
        Settings.from_env({"RECEIVE_BUFFER_BYTES": "0"})
    with pytest.raises(SettingsError, match="MIN_UPLOAD_BYTES_PER_S='-1' must be at least 0"):
        Settings.from_env({"MIN_UPLOAD_BYTES_PER_S": "-1"})

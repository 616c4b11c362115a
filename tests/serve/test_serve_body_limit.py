"""The body limit is enforced while reading the stream: nothing past the limit is ever pulled from the client,
whether Content-Length is right, missing (chunked) or lying. Driven at the ASGI level, because a test
client buffers the whole body before the app sees it."""

from __future__ import annotations

import json

import pytest

CHUNK = 64 * 1024
LIMIT = 10 * 1024 * 1024


def post_stream(client, headers: dict[str, str], chunks: int) -> tuple[int, dict, int]:
    """POST /classify with `chunks` chunks of CHUNK bytes; returns (status, JSON body, chunks pulled)."""
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"\0" * CHUNK, "more_body": pulled < chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/classify",
        "raw_path": b"/classify",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def call() -> None:
        await client.app(scope, receive, send)

    client.portal.call(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), pulled


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
    status, body, pulled = post_stream(client, headers, endless)
    assert status == 413
    assert body["error"] == "body_too_large"
    assert pulled == LIMIT // CHUNK + 1  # the first chunk past the limit, and not one more


def test_declared_too_large_is_refused_before_reading(client):
    status, body, pulled = post_stream(client, {"Content-Length": str(LIMIT + 1)}, 10_000)
    assert status == 413
    assert body["error"] == "body_too_large"
    assert pulled == 0


def test_exactly_the_limit_is_read_in_full(client):
    # LIMIT bytes of zeros is not an image, but it is not too large either: it is read and decoded.
    status, body, pulled = post_stream(client, {}, LIMIT // CHUNK)
    assert (status, body["error"]) == (415, "not_an_image")
    assert pulled == LIMIT // CHUNK


@pytest.mark.parametrize("declared", ["-1", "1e3", "²", "12 34", "0x10"])
def test_invalid_content_length_is_a_400(client, declared):
    status, body, pulled = post_stream(client, {"Content-Length": declared}, 1)
    assert (status, body["error"]) == (400, "bad_request")
    assert pulled == 0

"""Every kind of bad upload gets its own 4xx and a JSON error body (or an error fragment for htmx)."""

from __future__ import annotations

import struct
import time
import zlib

import pytest
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A few-KB PNG whose header claims width x height RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 200_000, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def test_empty_body(client):
    assert_error(client.post("/classify", content=b""), 400, "empty_body")
    assert_error(client.post("/classify", content=b"", headers={"Content-Type": "image/png"}), 400, "empty_body")


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is text and not a picture",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        b'{"image": "base64..."}',
        bytes(range(256)) * 4,
    ],
    ids=["text", "pdf", "json", "noise"],
)
def test_not_an_image(client, data):
    body = assert_error(
        client.post("/classify", content=data, headers={"Content-Type": "image/png"}), 415, "not_an_image"
    )
    assert "JPEG" in body["detail"]


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA"])
def test_image_format_we_do_not_read(client, encode, fmt):
    data = encode(Image.new("RGB", (16, 16), (255, 0, 0)), fmt)
    assert_error(client.post("/classify", content=data), 415, "not_an_image")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF", "GIF", "BMP", "TIFF"])
def test_truncated(client, encode, fmt):
    image = Image.effect_noise((200, 200), 64).convert("RGB")  # noise: nothing compresses away
    data = encode(image, fmt)
    assert_error(client.post("/classify", content=data[: len(data) // 2]), 422, "corrupt_image")


@pytest.mark.parametrize(("fmt", "keep"), [("PNG", 20), ("AVIF", 40), ("JPEG", 3), ("GIF", 6)])
def test_a_format_we_read_with_a_broken_header_is_corrupt_not_unknown(client, encode, fmt, keep):
    # The right magic bytes and then nothing readable: a damaged picture (422), not some other kind of file (415).
    data = encode(Image.new("RGB", (16, 16), (255, 0, 0)), fmt)
    assert_error(client.post("/classify", content=data[:keep]), 422, "corrupt_image")


def test_corrupt_pixel_data(client, red_png):
    broken = bytearray(red_png)
    idat = broken.index(b"IDAT")
    broken[idat + 4 : idat + 12] = b"\xff" * 8  # garbage where the zlib stream should start
    assert_error(client.post("/classify", content=bytes(broken)), 422, "corrupt_image")


def test_corrupt_header(client, red_png):
    broken = red_png[:16] + b"\x00" * 8 + red_png[24:]  # IHDR with width and height 0
    assert_error(client.post("/classify", content=broken), 422, "corrupt_image")


def test_body_over_the_limit_declared(make_client, red_png):
    client = make_client(max_body_bytes=1000)
    body = assert_error(client.post("/classify", content=b"x" * 1001), 413, "body_too_large")
    assert "1000" in body["detail"]
    assert client.post("/classify", content=red_png).status_code == 200  # under the limit still works


def test_multipart_over_the_limit(make_client, encode):
    client = make_client(max_body_bytes=5000)
    big = encode(Image.effect_noise((100, 100), 64).convert("RGB"), "PNG")
    assert len(big) > 5000
    assert_error(client.post("/classify", files={"file": ("a.png", big, "image/png")}), 413, "body_too_large")


def test_default_limit_is_10_mb(client):
    assert_error(client.post("/classify", content=b"\0" * (10 * 1024 * 1024 + 1)), 413, "body_too_large")


def test_invalid_content_length(client):
    response = client.post("/classify", content=b"abc", headers={"Content-Length": "-3"})
    assert_error(response, 400, "bad_request")


def test_decompression_bomb(client):
    bomb = png_declaring(50_000, 50_000)
    assert len(bomb) < 5_000
    started = time.perf_counter()
    body = assert_error(client.post("/classify", content=bomb), 413, "too_many_pixels")
    # 7.5 GB of pixels was never allocated: refused from the header, in milliseconds
    assert time.perf_counter() - started < 1.0
    assert "pixels" in body["detail"]


def test_pixel_limit_setting(make_client, encode):
    client = make_client(max_pixels=100 * 100)
    ok = encode(Image.new("RGB", (100, 100), (255, 0, 0)), "PNG")
    too_big = encode(Image.new("RGB", (101, 100), (255, 0, 0)), "PNG")
    assert client.post("/classify", content=ok).status_code == 200
    assert_error(client.post("/classify", content=too_big), 413, "too_many_pixels")


def test_avif_gets_half_the_pixel_budget(make_client, encode):
    # Decoding AVIF holds up to twice the bytes per pixel of the other formats (serve/imaging.py).
    client = make_client(max_pixels=100 * 100)
    square = Image.new("RGB", (100, 100), (255, 0, 0))
    assert client.post("/classify", content=encode(square, "PNG")).status_code == 200
    body = assert_error(client.post("/classify", content=encode(square, "AVIF")), 413, "too_many_pixels")
    assert "limit for AVIF is 5000" in body["detail"]
    half = Image.new("RGB", (70, 70), (255, 0, 0))  # 4,900 pixels
    assert client.post("/classify", content=encode(half, "AVIF")).status_code == 200


def test_bomb_below_pillows_own_limit_is_still_refused(client):
    # 60 MP: under Pillow's hard DecompressionBombError threshold (~179 MP) but over our MAX_PIXELS (50 MP)
    assert_error(client.post("/classify", content=png_declaring(10_000, 6_000)), 413, "too_many_pixels")


def test_multipart_without_file_field(client, red_png):
    response = client.post("/classify", files={"picture": ("a.png", red_png, "image/png")})
    assert_error(response, 400, "missing_file")


def test_multipart_file_field_is_text(client):
    response = client.post("/classify", data={"file": "not a file"}, files={"other": ("a.txt", b"x", "text/plain")})
    assert_error(response, 400, "missing_file")


def test_multipart_empty_file(client):
    assert_error(client.post("/classify", files={"file": ("a.png", b"", "image/png")}), 400, "empty_file")


def test_multipart_file_not_an_image(client):
    response = client.post("/classify", files={"file": ("a.txt", b"just text", "text/plain")})
    assert_error(response, 415, "not_an_image")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=file\r\n\r\nabc\r\n--x--\r\n"),
        ("multipart/form-data; boundary=xyz", b"this is not multipart at all"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nno headers and no end"),
    ],
    ids=["no-boundary", "garbage", "unterminated"],
)
def test_malformed_multipart(client, content_type, body):
    response = client.post("/classify", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("bad_request", "missing_file")


def test_two_files_in_multipart(client, red_png):
    files = [("file", ("a.png", red_png, "image/png")), ("file", ("b.png", red_png, "image/png"))]
    assert_error(client.post("/classify", files=files), 400, "bad_request")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method(client, method):
    response = client.request(method, "/classify")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_wrong_method_on_get_routes(client):
    response = client.post("/healthz", content=b"x")
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_unknown_route(client):
    body = assert_error(client.get("/nope"), 404, "not_found")
    assert "/docs" in body["detail"]


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (lambda c: c.post("/classify", content=b""), 400, "empty_body"),
        (lambda c: c.post("/classify", content=b"not an image"), 415, "not_an_image"),
        (lambda c: c.post("/classify", content=png_declaring(50_000, 50_000)), 413, "too_many_pixels"),
        (lambda c: c.get("/classify"), 405, "method_not_allowed"),
        (lambda c: c.get("/missing"), 404, "not_found"),
    ],
)
def test_errors_as_fragments_for_htmx(client, send, status, code):
    client.headers["HX-Request"] = "true"
    response = send(client)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert html.startswith(f'<div class="error" role="alert" data-error="{code}"><strong>')
    assert "</strong> <span>" in html
    assert html.endswith("</span></div>")
    assert "style=" not in html


def test_error_fragment_escapes_detail(client):
    response = client.get("/<img src=x onerror=alert(1)>", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert "<img" not in response.text
    assert "&lt;img" in response.text

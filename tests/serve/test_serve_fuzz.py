"""Property test: whatever bytes arrive at /classify, the answer is a 2xx or a 4xx with the error shape;
never a 5xx, never an exception (the test client re-raises any), and the service keeps serving."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from serve.app import create_app
from serve.settings import Settings


def seed_images() -> list[bytes]:
    image = Image.new("RGB", (24, 16), (200, 30, 30))
    image.paste((20, 20, 220), (0, 8, 24, 16))
    seeds = []
    for fmt, extra in [
        ("PNG", {}),
        ("JPEG", {"quality": 80}),
        ("GIF", {}),
        ("WEBP", {}),
        ("AVIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("JPEG", {"progressive": True}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **extra)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = seed_images()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_client(model_path):
    # A small pixel limit keeps mutated headers that claim huge sizes cheap to refuse.
    config = Settings(model_path=model_path, ort_threads=1, max_pixels=4_000_000)
    with TestClient(create_app(config)) as client:
        yield client


def check(client, data: bytes, multipart: bool) -> None:
    if multipart:
        response = client.post("/classify", files={"file": ("upload", data, "application/octet-stream")})
    else:
        response = client.post("/classify", content=data, headers={"Content-Type": "image/jpeg"})
    assert 200 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    if response.status_code == 200:
        assert 0 <= body["score"] <= 1
        assert body["label"]
    else:
        assert set(body) == {"error", "detail"}
        assert response.status_code in (400, 413, 415, 422)


# Pillow warns about the corrupt metadata this feeds it; that is the point, not a finding.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


@settings(max_examples=250, deadline=None)
@given(data=mutated(), multipart=st.booleans())
def test_mutated_images(fuzz_client, data, multipart):
    check(fuzz_client, data, multipart)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=4096), multipart=st.booleans())
def test_random_bytes(fuzz_client, data, multipart):
    check(fuzz_client, data, multipart)


def test_still_healthy_after_the_fuzzing(fuzz_client):
    assert fuzz_client.get("/readyz").status_code == 200
    assert fuzz_client.post("/classify", content=SEEDS[0]).json()["label"] == "airplane"


CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "multipart/form-data",
            "multipart/form-data; boundary=xyz",
            'multipart/form-data; boundary="a b"',
            "multipart/form-data; boundary=xyz; charset=no-such-charset",
            "multipart/form-data; boundary=xyz; charset=utf-16",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
        lambda params: "multipart/form-data; " + params
    ),
)


@st.composite
def multipart_bodies(draw) -> bytes:
    parts = [b"--xyz\r\n"]
    dispositions = [
        b'Content-Disposition: form-data; name="file"; filename="a"\r\n',
        b'Content-Disposition: form-data; name="file"\r\n',  # a text field named file
        b'Content-Disposition: form-data; name="\xff\xfe"\r\n',
        b"",
    ]
    parts.append(draw(st.sampled_from(dispositions)))
    parts.append(draw(st.binary(max_size=64)))
    parts.append(b"\r\n\r\n" if draw(st.booleans()) else b"")
    parts.append(draw(st.sampled_from([*SEEDS, b""]))[: draw(st.integers(0, 400))])
    parts.append(draw(st.sampled_from([b"\r\n--xyz--\r\n", b"\r\n--xyz", b"", b"--xyz--"])))
    return b"".join(parts)


@settings(max_examples=150, deadline=None)
@given(content_type=CONTENT_TYPES, body=multipart_bodies())
def test_malformed_multipart_and_headers(fuzz_client, content_type, body):
    response = fuzz_client.post("/classify", content=body, headers={"Content-Type": content_type})
    assert response.status_code in (200, 400, 413, 415, 422), response.text
    assert ("error" in response.json()) == (response.status_code != 200)

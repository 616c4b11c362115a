"""GET /site-config: the facts the page shows come from the service: formats, body limit, error titles, metric."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from contract import model_file
from serve.app import create_app
from serve.error_codes import titles
from serve.formats import ACCEPTED_FORMATS
from serve.schemas import HeadlineMetric
from serve.site_config import headline_metric

KEYS = {"formats", "max_body_bytes", "errors", "headline_metric"}


def test_site_config_states_the_services_facts(client):
    response = client.get("/site-config")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == KEYS
    assert [f["name"] for f in body["formats"]] == ["JPEG", "PNG", "WebP", "AVIF", "GIF", "BMP", "TIFF"]
    assert [f["media_type"] for f in body["formats"]] == [f.media_type for f in ACCEPTED_FORMATS]
    jpeg = body["formats"][0]
    assert jpeg == {"name": "JPEG", "media_type": "image/jpeg", "extensions": [".jpg", ".jpeg", ".jfif"]}
    assert body["max_body_bytes"] == 10 * 1024 * 1024
    assert body["errors"] == titles()
    assert body["errors"]["body_too_large"] == "The file is too big"
    # the tiny model's card has one top-1, its training one
    assert body["headline_metric"] == {"name": "test_top1", "value": 0.1}


def test_the_limit_is_the_configured_one(make_client):
    client = make_client(max_body_bytes=1234)
    assert client.get("/site-config").json()["max_body_bytes"] == 1234
    assert client.post("/classify", content=b"x" * 1235).json()["error"] == "body_too_large"


def test_answered_while_the_model_loads(make_settings):
    client = TestClient(create_app(make_settings()))  # lifespan not run: no model yet, not ready
    assert client.get("/readyz").status_code == 503
    response = client.get("/site-config")
    assert response.status_code == 200
    body = response.json()
    assert body["headline_metric"] is None
    assert body["max_body_bytes"] == 10 * 1024 * 1024
    assert len(body["formats"]) == len(ACCEPTED_FORMATS)


def test_readable_from_the_sites_origin(make_client):
    site = "https://site.example.run.app"
    client = make_client(cors_origins=(site,))
    response = client.get("/site-config", headers={"Origin": site, "Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == site


def test_an_int8_file_shows_its_int8_top1(make_client, make_model):
    metrics = {"test_top1_pytorch": 0.95, "test_top1_fp32": 0.951, "test_top1_int8": 0.948}
    path = make_model(
        "int8-metrics.onnx", meta={model_file.QUANTIZATION: "int8-static-qdq", model_file.METRICS: metrics}
    )
    client = make_client(model_path=path)
    assert client.get("/site-config").json()["headline_metric"] == {"name": "test_top1_int8", "value": 0.948}
    assert client.get("/model").json()["metrics"]["test_top1_int8"] == 0.948  # the same number GET /model shows


class Described:
    """Just what headline_metric reads of a loaded model: GET /model's answer."""

    def __init__(self, **described: Any) -> None:
        self._described = {"quantization": "none", **described}

    def describe(self) -> dict[str, Any]:
        return self._described


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        ({"metrics": {"test_top1_fp32": 0.93, "test_top1_int8": 0.92}}, {"name": "test_top1_fp32", "value": 0.93}),
        (
            {"quantization": "int8", "metrics": {"test_top1_fp32": 0.93, "test_top1_int8": 0.92}},
            {"name": "test_top1_int8", "value": 0.92},
        ),
        ({"quantization": "int8", "metrics": {"test_top1": 0.9}}, {"name": "test_top1", "value": 0.9}),
        ({"metrics": {"test_top1": 1}}, {"name": "test_top1", "value": 1}),
        ({"metrics": None}, None),
        ({"metrics": {}}, None),
        ({"metrics": {"test_top1_fp32": None, "test_top1": 0.9}}, None),  # the precision's own, or nothing
        ({"metrics": {"test_top1": 0}}, None),
        ({"metrics": {"test_top1": 93.1}}, None),  # a percentage is not a fraction: no line rather than a wrong one
        ({"metrics": {"test_top1": True}}, None),
        ({"metrics": {"test_top1": "0.9"}}, None),
        ({"metrics": [0.9]}, None),
    ],
)
def test_headline_metric(described, expected):
    assert headline_metric(Described(**described)) == (None if expected is None else HeadlineMetric(**expected))


def test_no_model_no_metric():
    assert headline_metric(None) is None

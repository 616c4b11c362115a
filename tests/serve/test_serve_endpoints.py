"""The GET endpoints, the Prometheus metrics, the API description and CORS."""

from __future__ import annotations

import re

import pytest

SITE = "https://site.example.run.app"
HTMX_HEADERS = ["hx-request", "hx-current-url", "hx-target", "hx-trigger", "hx-trigger-name", "hx-boosted", "hx-prompt"]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz(client):
    assert client.get("/readyz").json() == {"status": "ready"}


def test_model_describes_the_loaded_file(client):
    body = client.get("/model").json()
    assert body["labels"][:3] == ["airplane", "automobile", "bird"]
    assert len(body["labels"]) == 10
    assert body["input_size"] == [32, 32]
    assert body["name"] == "tiny-test"
    assert body["version"] == "0123abcd"
    assert body["resize"] == "center-crop-resize"
    assert body["quantization"] == "none"
    assert body["git_sha"] == "deadbeef"
    assert body["data_md5"] == "0" * 32
    assert body["config"] == {"model": "tiny"}
    assert body["metrics"] == {"test_top1": 0.1}
    assert body["parity"] == {"max_abs_logit_diff": 0.0}
    assert body["card"] == {"name": "tiny-test", "intended_use": "tests only"}  # parsed from metadata `card`


def test_head_works_on_get_routes(client):
    assert client.head("/healthz").status_code == 200


def metric(text: str, metric_name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(metric_name):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("{")[2]))
            if line.split("{")[0].split(" ")[0] == metric_name and found == labels:
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{metric_name}{labels} not in /metrics")


def test_metrics_show_the_requests(client, red_png):
    assert client.post("/classify", content=red_png).status_code == 200
    assert client.post("/classify", content=b"nope").status_code == 415
    client.get("/no/such/page")
    assert client.get("/classify").status_code == 405  # a known path, another method: counted under its route
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "serve_requests_total", route="/classify", method="POST", status="200") == 1
    assert metric(text, "serve_requests_total", route="/classify", method="POST", status="415") == 1
    assert metric(text, "serve_requests_total", route="unmatched", method="GET", status="404") == 1
    assert metric(text, "serve_requests_total", route="/classify", method="GET", status="405") == 1
    assert metric(text, "serve_request_duration_seconds_count", route="/classify") == 3
    assert metric(text, "serve_inference_duration_seconds_count") == 1
    assert metric(text, "serve_decode_duration_seconds_count") == 1
    assert metric(text, "serve_batch_size_count") == 1
    assert metric(text, "serve_batch_size_bucket", le="1.0") == 1
    assert metric(text, "serve_queue_depth") == 0
    assert metric(text, "serve_model_info", name="tiny-test", version="0123abcd", quantization="none") == 1


def test_metrics_label_routes_by_template_not_raw_path(client):
    for i in range(5):
        client.get(f"/random/{i}")
    text = client.get("/metrics").text
    assert "/random/" not in text


def test_openapi_lists_every_endpoint_and_status(client):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/classify",
        "/feedback",
        "/healthz",
        "/readyz",
        "/model",
        "/site-config",
        "/metrics",
        "/openapi.json",
        "/docs",
    }
    classify = spec["paths"]["/classify"]["post"]
    assert set(classify["responses"]) == {"200", "400", "405", "408", "413", "415", "422", "503"}
    assert "multipart/form-data" in classify["requestBody"]["content"]
    # every route of the app is described
    routes = {route.path for route in client.app.routes}
    assert routes == set(spec["paths"])


def test_docs_page_is_self_contained(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for path in ["/classify", "/healthz", "/readyz", "/model", "/site-config", "/metrics", "/openapi.json"]:
        assert f"> {path}</h2>" in html
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.fixture
def cors_client(make_client):
    return make_client(cors_origins=(SITE,))


def preflight(client, origin: str):
    return client.options(
        "/classify",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": ", ".join(HTMX_HEADERS),
        },
    )


def test_cors_preflight_from_the_site(cors_client):
    response = preflight(cors_client, SITE)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SITE
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(HTMX_HEADERS) <= allowed


def test_cors_preflight_from_elsewhere_is_refused(cors_client):
    response = preflight(cors_client, "https://evil.example")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_cors_headers_on_the_real_request(cors_client, red_png):
    response = cors_client.post("/classify", content=red_png, headers={"Origin": SITE, "HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SITE
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()
    other = cors_client.post("/classify", content=red_png, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_unless_configured(client, red_png):
    response = client.post("/classify", content=red_png, headers={"Origin": SITE})
    assert "access-control-allow-origin" not in response.headers
    assert preflight(client, SITE).status_code == 405

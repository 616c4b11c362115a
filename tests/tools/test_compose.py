"""compose.yaml wires the two services as Cloud Run does (two origins, each told the other's); its keys are
checked against the Compose specification by check-jsonschema in `make lint`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def environment(service: dict) -> dict[str, str]:
    return {str(k): str(v) for k, v in service["environment"].items()}


def published(service: dict) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) of each port ("IP:HOST:CONTAINER" or "HOST:CONTAINER")."""
    out = []
    for port in service["ports"]:
        *host, container = str(port).split(":")
        out.append((host[0] if len(host) == 2 else None, int(host[-1]), int(container.split("/")[0])))
    return out


@pytest.mark.parametrize("name", ["serve", "site"])
def test_service_builds_its_image_and_probes_its_own_port(name):
    service = SERVICES[name]
    assert service["build"]["dockerfile"] == f"docker/{name}.Dockerfile"
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    [(host_ip, _, container_port)] = published(service)
    assert host_ip == "127.0.0.1", "a development stack: published on the loopback only"
    assert environment(service)["PORT"] == str(container_port)
    test = service["healthcheck"]["test"]
    assert f":{container_port}/" in (" ".join(test) if isinstance(test, list) else test)


def test_the_two_origins_are_wired():
    serve, site = SERVICES["serve"], SERVICES["site"]
    serve_url, site_origin = (f"http://localhost:{published(s)[0][1]}" for s in (serve, site))
    origins = [o.strip().rstrip("/") for o in environment(serve)["CORS_ORIGINS"].split(",")]
    assert site_origin in origins, "serve must allow the page's origin"
    assert environment(site)["API_URL"].rstrip("/") == serve_url, "the page must be told serve's published URL"

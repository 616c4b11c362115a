"""CORS between the site and the real service, as the browser negotiates it: the preflight for the htmx POST
(multipart with the HX-Request header) succeeds from the site's origin and is refused from any other."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.slow

OTHER_ORIGIN = "http://127.0.0.1:9"  # not in CORS_ORIGINS


def request(url: str, method: str, headers: dict[str, str], data: bytes | None = None):
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


def preflight(url: str, origin: str):
    return request(
        url,
        "OPTIONS",
        {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "hx-request",
        },
    )


def test_preflight_from_the_site_origin_succeeds(service, site_origin):
    status, headers = preflight(f"{service.url}/classify", site_origin)
    assert status == 200
    assert headers.get("access-control-allow-origin") == site_origin
    assert "POST" in headers.get("access-control-allow-methods", "").upper()
    assert "hx-request" in headers.get("access-control-allow-headers", "").lower()


def test_preflight_from_another_origin_is_refused(service):
    status, headers = preflight(f"{service.url}/classify", OTHER_ORIGIN)
    assert status >= 400
    assert "access-control-allow-origin" not in headers


def test_post_answers_carry_the_origin_only_for_the_site(service, site_origin):
    body = b"not an image"
    headers = {"Content-Type": "text/plain", "HX-Request": "true"}
    status, answer = request(f"{service.url}/classify", "POST", {**headers, "Origin": site_origin}, body)
    assert 400 <= status < 500  # an error fragment, readable by the site
    assert answer.get("access-control-allow-origin") == site_origin
    status, answer = request(f"{service.url}/classify", "POST", {**headers, "Origin": OTHER_ORIGIN}, body)
    assert answer.get("access-control-allow-origin") in (None, "")  # the browser hides it from that page

"""The local site server (site/server.py) and the container's start hook (docker/site/) agree on the
runtime config and the security headers, and both refuse an API_URL that could inject anything. Fast: no browser,
no service."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Loaded from its path: site/ is not a package (`import site` is the standard library's).
_spec = importlib.util.spec_from_file_location("site_server", ROOT / "site" / "server.py")
site_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site_server)
HOOK = ROOT / "docker" / "site" / "40-site-runtime-config.sh"
TEMPLATE = ROOT / "docker" / "site" / "default.conf.template"

GOOD_URLS = [
    "http://127.0.0.1:8000",
    "http://localhost:8000/",
    "https://classifier-api-abc123-ew.a.run.app",
    "https://api.example.com/v1/",
]
BAD_URLS = [
    "",
    "127.0.0.1:8000",
    "ftp://example.com",
    "http://",
    "javascript:alert(1)",
    'http://x/"};alert(1);//',
    "http://x/'; script-src *",
    "http://x/ y",
    "http://x/?a=1",
    "http://x/#frag",
    "http://x;connect-src *",
]


@pytest.fixture(scope="module")
def server():
    srv = site_server.make_server("127.0.0.1", 0, "http://127.0.0.1:8123/", quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def fetch(url: str, method: str = "GET"):
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.mark.parametrize("url", GOOD_URLS)
def test_api_url_accepted_and_normalised(url):
    normalised = site_server.normalize_api_url(url)
    assert not normalised.endswith("/")
    assert site_server.api_origin(url) == "/".join(normalised.split("/")[:3])


@pytest.mark.parametrize("url", BAD_URLS)
def test_api_url_rejected(url):
    with pytest.raises(ValueError, match="API_URL"):
        site_server.normalize_api_url(url)


def test_config_js_is_the_json_the_page_reads():
    text = site_server.config_js("https://api.example.com/")
    match = re.fullmatch(r"window\.CLASSIFIER_CONFIG = (\{.*\});\n", text)
    assert match, text
    assert json.loads(match[1]) == {"apiUrl": "https://api.example.com"}


def test_csp_allows_only_what_the_page_needs():
    directives = dict(
        d.strip().split(" ", 1) for d in site_server.content_security_policy("https://api.example.com").split(";")
    )
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert directives["style-src"] == "'self'"
    assert directives["img-src"] == "'self' blob: data:"
    assert directives["connect-src"] == "'self' https://api.example.com"
    assert directives["frame-ancestors"] == "'none'"


def test_served_page_and_headers(server):
    status, headers, body = fetch(server + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'id="classify-form"' in body
    assert headers["Content-Security-Policy"] == site_server.content_security_policy("http://127.0.0.1:8123")
    for name, value in site_server.security_headers("http://127.0.0.1:8123").items():
        assert headers[name] == value, name
    # The page loads nothing from elsewhere: every script and stylesheet is a relative path on this origin.
    for src in re.findall(rb'(?:src|href)="([^"]+)"', body):
        assert not re.match(rb"^(https?:)?//", src), src


def test_config_js_is_generated_not_read_from_disk(server):
    status, headers, body = fetch(server + "/config.js")
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert body.decode() == site_server.config_js("http://127.0.0.1:8123")
    assert headers["Content-Security-Policy"]  # security headers on every response
    status, _, body = fetch(server + "/config.js", method="HEAD")
    assert (status, body) == (200, b"")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/vendor/htmx.min.js", "text/javascript"),
        ("/favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_with_correct_types(server, path, content_type):
    # X-Content-Type-Options: nosniff makes the browser refuse a script or stylesheet with a wrong type.
    status, headers, body = fetch(server + path)
    assert status == 200
    assert headers["Content-Type"].startswith(content_type)
    assert body


@pytest.mark.parametrize(
    "path", ["/vendor/", "/nope.html", "/../pyproject.toml", "/%2e%2e/pyproject.toml", "/server.py", "/./server.py?raw"]
)
def test_no_listing_no_escape(server, path):
    status, headers, _ = fetch(server + path)
    assert status == 404
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/index.html%00.png", "/%00", "/%ed%a0%80.js", "/vendor/%00/htmx.min.js"])
def test_a_path_no_file_can_have_is_answered_400(server, path):
    # Once dropped the connection without an answer (ValueError: embedded null byte).
    for method in ("GET", "HEAD"):
        status, headers, _ = fetch(server + path, method=method)
        assert status == 400
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(server + "/")[0] == 200  # and the server goes on serving


def test_only_get_and_head(server):
    status, _, _ = fetch(server + "/", method="POST")
    assert status == 501


def test_vendored_htmx_is_the_pinned_2x():
    htmx = (ROOT / "site" / "vendor" / "htmx.min.js").read_bytes()
    readme = (ROOT / "site" / "vendor" / "README.md").read_text()
    assert hashlib.sha256(htmx).hexdigest() in readme
    assert re.search(r"\*\*2\.\d+\.\d+\*\*", readme)
    assert (ROOT / "site" / "vendor" / "LICENSE").is_file()


def test_site_is_no_python_package():
    # site/__init__.py would shadow the standard library's `site` module. The one Python file is this server, a
    # script run by its path, which neither this server nor the site image (.dockerignore) serves.
    assert not list((ROOT / "site").rglob("__init__.py"))
    assert [p.relative_to(ROOT).as_posix() for p in (ROOT / "site").rglob("*.py")] == ["site/server.py"]
    assert site_server.SITE_DIR == ROOT / "site"


# --- the container's start hook: same rule, same headers -------------------------------------------------


def run_hook(api_url: str | None, out: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "SITE_RUNTIME_DIR": str(out)}
    if api_url is not None:
        env["API_URL"] = api_url
    return subprocess.run(["sh", str(HOOK)], env=env, capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("url", GOOD_URLS)
def test_container_hook_matches_site_server(url, tmp_path):
    proc = run_hook(url, tmp_path)
    assert proc.returncode == 0, proc.stderr
    config = (tmp_path / "config.js").read_text()
    match = re.fullmatch(r"window\.CLASSIFIER_CONFIG = (\{.*\});\n", config)
    assert match, config
    assert json.loads(match[1]) == {"apiUrl": site_server.normalize_api_url(url)}

    lines = (tmp_path / "security-headers.conf").read_text().splitlines()
    headers = dict(re.fullmatch(r'add_header (\S+) "(.*)" always;', line).groups() for line in lines)
    expected = site_server.security_headers(url)
    assert {k: headers[k] for k in expected} == expected
    assert set(headers) - set(expected) == {"Strict-Transport-Security"}  # HTTPS-only deployment extra


@pytest.mark.parametrize("url", [*BAD_URLS, None])
def test_container_hook_refuses_bad_api_url(url, tmp_path):
    proc = run_hook(url, tmp_path)
    assert proc.returncode != 0
    assert "API_URL" in proc.stderr
    assert not (tmp_path / "config.js").exists()


def test_nginx_template_reads_what_the_hook_writes():
    template = TEMPLATE.read_text()
    assert "listen ${PORT};" in template
    assert "alias ${SITE_RUNTIME_DIR}/config.js;" in template
    # add_header does not inherit into a location with its own add_header: each such location includes the set.
    blocks = re.findall(r"location [^{]*\{(?:[^{}]|\{[^{}]*\})*\}", template)
    for block in blocks:
        if "add_header" in block:
            assert "include ${SITE_RUNTIME_DIR}/security-headers.conf;" in block, block
    dockerfile = (ROOT / "docker" / "site.Dockerfile").read_text()
    assert "/docker-entrypoint.d/40-site-runtime-config.sh" in dockerfile
    assert re.search(r"^FROM nginxinc/nginx-unprivileged:\d+\.\d+\.\d+-alpine$", dockerfile, re.M)
    assert re.search(r"^USER 101$", dockerfile, re.M)


def test_only_the_pages_files_are_served_not_what_tools_leave_beside_them(tmp_path):
    """After the test suite the server once served site/__pycache__/server.cpython-311.pyc (200)."""
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (tmp_path / ".hidden").write_text("secret")
    (tmp_path / "vendor" / ".cache").mkdir(parents=True)
    (tmp_path / "vendor" / ".cache" / "x.js").write_text("x")
    srv = site_server.make_server("127.0.0.1", 0, "http://127.0.0.1:8123/", root=tmp_path, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        assert fetch(url + "/index.html")[0] == 200
        for path in ("/__pycache__/server.cpython-311.pyc", "/.hidden", "/vendor/.cache/x.js", "/%5f_pycache__/"):
            assert fetch(url + path)[0] == 404, path
    finally:
        srv.shutdown()
        srv.server_close()

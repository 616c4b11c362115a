"""Fixtures for the browser tests: the REAL service (`python -m serve`) and the REAL site server
(site/server.py) as subprocesses on 127.0.0.1, on different ports (so cross-origin, as deployed), and
Debian's headless Chromium driven by Playwright.

The model is the shipped one (shipped/model.int8.onnx) when it exists, otherwise the tiny contract-following model
that the serve tests build. Screenshots go to artifacts/site/.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.photos import CIFAR_TEST_TAR, cifar_test_jpeg
from tests.servers import SERVICE_READY_TIMEOUT, Proc, free_port, site_server, start

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = ROOT / "shipped" / "model.int8.onnx"
ARTIFACTS = ROOT / "artifacts" / "site"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


# --- the model and the pictures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    if SHIPPED_MODEL.is_file():
        return SHIPPED_MODEL
    from tests.serve.tiny_model import build_model  # the serve tests' tiny contract-following model

    return build_model(tmp_path_factory.mktemp("site-model") / "tiny.onnx")


@pytest.fixture(scope="session")
def model_labels(model_path) -> list[str]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return json.loads(session.get_modelmeta().custom_metadata_map["labels"])


@dataclass(frozen=True)
class Picture:
    name: str
    data: bytes
    mime: str
    true_label: str | None  # known for a CIFAR-10 test image


@pytest.fixture(scope="session")
def picture() -> Picture:
    """A real CIFAR-10 test image when data/raw is pulled; otherwise a real JPEG drawn here."""
    if CIFAR_TEST_TAR.is_file():
        return Picture("ship-0000.jpg", cifar_test_jpeg("test/ship/0000.jpg"), "image/jpeg", "ship")
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 96), (110, 170, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 60, 96, 96), fill=(30, 70, 140))
    draw.polygon([(20, 60), (76, 60), (66, 72), (30, 72)], fill=(200, 60, 50))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return Picture("drawn-boat.jpg", buffer.getvalue(), "image/jpeg", None)


# --- the servers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("site-logs")


@pytest.fixture(scope="session")
def site_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def site_origin(site_port) -> str:
    return f"http://127.0.0.1:{site_port}"


@pytest.fixture(scope="session")
def prediction_log(log_dir) -> Path:
    """The service's prediction log (PREDICTION_LOG): a line per answer and per feedback of every site test."""
    return log_dir / "predictions.jsonl"


@pytest.fixture(scope="session")
def service(model_path, site_origin, log_dir, prediction_log) -> Iterator[Proc]:
    """`python -m serve` on its own port, allowing the site's origin only, logging its answers to a file."""
    port = free_port()
    env = dict(
        os.environ,
        HOST="127.0.0.1",
        PORT=str(port),
        MODEL_PATH=str(model_path),
        CORS_ORIGINS=site_origin,
        LOG_LEVEL="warning",
        PREDICTION_LOG=str(prediction_log),
    )
    proc = start("service", [sys.executable, "-m", "serve"], env, f"http://127.0.0.1:{port}", log_dir)
    try:
        proc.wait_ready("/readyz", SERVICE_READY_TIMEOUT)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def site(service, site_port, log_dir) -> Iterator[Proc]:
    """The site on its own origin, talking to the service cross-origin."""
    with site_server(service.url, log_dir, port=site_port) as proc:
        yield proc


@pytest.fixture(scope="session")
def dead_api_url() -> Iterator[str]:
    """A URL where nothing listens: the port is held by a bound socket that never listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- the browser --------------------------------------------------------------------------------------------


# Module scope: while Playwright's sync API is open it runs an event loop in this thread, and any later test that
# calls asyncio.run() (the load-test tests) would fail if the browser outlived the site tests.
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (tools/setup-browser.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield browser
        browser.close()


# Recorded in the page before any of its scripts run: CSP violations, and whether the progress indicator was
# visible while a request was in flight (htmx adds .htmx-request just before htmx:beforeSend).
INIT_SCRIPT = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
window.__indicator = [];
document.addEventListener('htmx:beforeSend', () => {
  const el = document.getElementById('progress');
  window.__indicator.push(el ? getComputedStyle(el).display : 'missing');
});
"""


@dataclass
class PageSession:
    page: object
    errors: list[str]

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("window.__csp")

    def done(self, shot: str | None = None) -> None:
        """Screenshot (if named), then: no Content-Security-Policy violation, no uncaught error in the page."""
        if shot:
            self.shot(shot)
        assert self.csp_violations() == []
        assert self.errors == []


@pytest.fixture
def open_page(browser):
    """open_page(url, viewport=...) -> PageSession; closes its context after the test."""
    contexts = []

    def _open(url: str, width: int = 1280, height: int = 860, **kwargs) -> PageSession:
        context = browser.new_context(viewport={"width": width, "height": height}, **kwargs)
        contexts.append(context)
        context.set_default_timeout(20_000)
        context.add_init_script(INIT_SCRIPT)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/", wait_until="load")
        # app.js has pointed the form at the API once htmx is set up.
        page.wait_for_function("document.getElementById('classify-form').hasAttribute('hx-post')")
        # The page then asks the service for its facts (GET /site-config, GET /model) and applies them; let that
        # settle, and give the page the focus a person's window has, before a test types or clicks. Without it, a
        # keyboard-opened file chooser once never appeared in a full CI run (it does when the test runs alone).
        page.wait_for_load_state("networkidle")
        page.bring_to_front()
        return PageSession(page, errors)

    yield _open
    for context in contexts:
        context.close()

"""`make run` (run_local.py): both servers come up on the given ports, the URLs are printed, the site is
wired to the service (config.js, CORS), and SIGTERM stops both."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

from run_local import PREDICTION_LOG  # where the local run keeps answers and feedback by default
from tests.servers import ROOT, SERVICE_READY_TIMEOUT, free_port, http_status

pytestmark = pytest.mark.slow


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """stdout up to the line that contains marker (the reader is os.read on a non-blocking pipe)."""
    os.set_blocking(proc.stdout.fileno(), False)
    text, deadline = "", time.monotonic() + timeout
    while marker not in text:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"no {marker!r} from run_local.py (exit {proc.poll()}):\n{text}")
        try:
            chunk = os.read(proc.stdout.fileno(), 65536)
        except BlockingIOError:
            chunk = b""
        if chunk:
            text += chunk.decode(errors="replace")
        else:
            time.sleep(0.1)
    return text


def test_run_local_starts_both_and_stops_both(model_path):
    port, site_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_local.py"),
            "--port",
            str(port),
            "--site-port",
            str(site_port),
            "--model",
            str(model_path),
        ],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "PREDICTION_LOG"}, "LOG_LEVEL": "warning"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    api, site = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{site_port}"
    try:
        text = read_until(proc, "Press Ctrl-C", SERVICE_READY_TIMEOUT + 20)
        assert f"{site}/" in text
        assert f"{api}/" in text
        assert http_status(f"{api}/readyz") == 200
        with urllib.request.urlopen(f"{site}/config.js", timeout=5) as response:
            assert f'"apiUrl": "{api}"' in response.read().decode()
        # the service allows the site's origin, under both names a person may type
        for origin in (site, f"http://localhost:{site_port}"):
            preflight = {
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "hx-request",
            }
            assert http_status(f"{api}/classify", "OPTIONS", preflight) == 200
        # feedback is kept by default (a 202 that keeps nothing is not an answer): in build/run/predictions.jsonl
        before = PREDICTION_LOG.stat().st_size if PREDICTION_LOG.exists() else 0
        picture = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 30, 30)).save(picture, "PNG")
        request = urllib.request.Request(f"{api}/classify", data=picture.getvalue())
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        body = {"request_id": answer["request_id"], "token": answer["feedback_token"], "label": "cat"}
        request = urllib.request.Request(f"{api}/feedback", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        kept = PREDICTION_LOG.read_bytes()[before:].decode().splitlines()
        assert [json.loads(line)["kind"] for line in kept] == ["prediction", "feedback"]
        assert http_status(f"{api}/healthz") == 0  # nothing listens any more
        assert http_status(f"{site}/") == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

"""`make run` (run_local.py): both servers come up on the given ports, the URLs are printed, the site is
wired to the service (config.js, CORS), and SIGTERM stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

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
        env=dict(os.environ, LOG_LEVEL="warning"),
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

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert http_status(f"{api}/healthz") == 0  # nothing listens any more
        assert http_status(f"{site}/") == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

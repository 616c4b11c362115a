"""Start the real servers for the site tests as subprocesses on 127.0.0.1, and stop them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract.paths import PROJECT_ROOT
from loadtest.servers import free_port

ROOT = PROJECT_ROOT  # the name the site and end-to-end tests import
SERVICE_READY_TIMEOUT = 90.0  # model load + warm-up on a busy 2-core machine
SITE_READY_TIMEOUT = 15.0


def http_status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@dataclass
class Proc:
    """A server in a subprocess, with its log file for failure messages."""

    name: str
    url: str
    popen: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            if http_status(self.url + path) == 200:
                return
            time.sleep(0.2)
        pytest.fail(f"{self.name} not ready at {self.url}{path} after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def start(name: str, args: list[str], env: dict[str, str], url: str, log_dir: Path) -> Proc:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Proc(name, url, popen, log)


@contextlib.contextmanager
def site_server(api_url: str, log_dir: Path, name: str = "site", port: int | None = None) -> Iterator[Proc]:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, str(ROOT / "site" / "server.py"), "--port", str(port), "--api-url", api_url]
    proc = start(name, args, dict(os.environ), url, log_dir)
    try:
        proc.wait_ready("/", SITE_READY_TIMEOUT)
        yield proc
    finally:
        proc.stop()

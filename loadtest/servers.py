"""Start each server under test as its own process on a free 127.0.0.1 port, time start -> ready, read its memory
from /proc, and stop it with SIGTERM (what Cloud Run sends)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from contract.paths import PROJECT_ROOT
from serve.settings import Settings

# Every server runs with uvicorn's defaults as `python -m serve` sets them (1 worker, httptools, no server header) and
# logs at warning: an access-log line per request would be part of what is measured otherwise.
COMMON_ENV = {"HOST": "127.0.0.1", "LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
# Service settings in the caller's environment would silently change what is measured: only --serve-env sets them.
SERVE_SETTINGS = {f.name.upper() for f in fields(Settings)} | {"PORT", "HOST", "MODEL_PATH"}


@dataclass
class ServerSpec:
    name: str  # service | naive | noop
    argv: list[str]
    path: str  # the route the load goes to
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"


def service_spec(model: Path, env: dict[str, str] | None = None) -> ServerSpec:
    env = {"MODEL_PATH": str(model), **(env or {})}
    return ServerSpec("service", [sys.executable, "-m", "serve"], "/classify", env)


def naive_spec(checkpoint: Path) -> ServerSpec:
    argv = [sys.executable, "-m", "loadtest.baseline", "--checkpoint", str(checkpoint)]
    return ServerSpec("naive", argv, "/classify")


def noop_spec() -> ServerSpec:
    return ServerSpec("noop", [sys.executable, "-m", "loadtest.baseline"], "/noop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads together."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class Server:
    def __init__(self, spec: ServerSpec, timeout: float = 120) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{spec.path}"
        env = {k: v for k, v in os.environ.items() if k not in SERVE_SETTINGS}
        env.update(COMMON_ENV | spec.env | {"PORT": str(self.port)})
        # A file, not a pipe: nobody reads the output while the load runs. Closed by stop().
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        started = time.perf_counter()
        self.proc = subprocess.Popen(spec.argv, cwd=PROJECT_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        while self._status(spec.ready_path) != 200:
            if self.proc.poll() is not None or time.perf_counter() - started > timeout:
                output = self.output()
                self.stop()
                raise RuntimeError(f"{spec.name} did not become ready:\n{output[-3000:]}")
            time.sleep(0.005)
        self.ready_s = time.perf_counter() - started

    def _status(self, path: str) -> int | None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except OSError:
            return None
        finally:
            connection.close()

    def memory_kb(self) -> dict[str, int]:
        return memory_kb(self.proc.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (killed after `timeout`: the code is then negative). Idempotent."""
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.log.close()

"""Start each server under test as its own process on a free 127.0.0.1 port, time start -> ready, read its memory
and CPU from /proc (its whole process tree: loadtest/process_tree.py), and stop it with SIGTERM (what Cloud Run
sends)."""

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
from typing import Any

from contract.paths import PROJECT_ROOT
from loadtest import process_tree
from serve.settings import Settings

# Every server runs with uvicorn's defaults as `python -m serve` sets them (1 worker, httptools, no server header) and
# logs at warning: an access-log line per request would be part of what is measured otherwise.
COMMON_ENV = {"HOST": "127.0.0.1", "LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
# Service settings in the caller's environment would silently change what is measured: only --serve-env sets them.
SERVE_SETTINGS = {f.name.upper() for f in fields(Settings)} | {"PORT", "HOST", "MODEL_PATH"}


@dataclass
class ServerSpec:
    name: str  # service | naive | noop | a peer's name
    argv: list[str]
    path: str  # the route the load goes to
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    settings: dict[str, Any] = field(default_factory=dict)  # how it is set up, for the report


def service_spec(model: Path, env: dict[str, str] | None = None) -> ServerSpec:
    env = {"MODEL_PATH": str(model), **(env or {})}
    settings = Settings.from_env(env)
    description = {
        "framework": "this service (python -m serve: Starlette on uvicorn with httptools)",
        "route": "POST /classify",
        "ready": "GET /readyz",
        "max_batch_size": settings.batch_max_size,
        "max_wait_ms": settings.batch_max_wait_ms,
        "inference_workers": 1,
        "ort_threads": settings.ort_threads or "0 (onnxruntime's default: one per core)",
        "decode": f"thumbnails on the event loop, larger uploads in {settings.decode_concurrency} threads",
        "http_front": "uvicorn, one process, with the service's head limits",
    }
    return ServerSpec("service", [sys.executable, "-m", "serve"], "/classify", env, settings=description)


def naive_spec(checkpoint: Path) -> ServerSpec:
    argv = [sys.executable, "-m", "loadtest.baseline", "--checkpoint", str(checkpoint)]
    return ServerSpec("naive", argv, "/classify")


def noop_spec() -> ServerSpec:
    return ServerSpec("noop", [sys.executable, "-m", "loadtest.baseline"], "/noop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, spec: ServerSpec, timeout: float = 120, cpus: set[int] | None = None) -> None:
        """Started and ready; `cpus` pins it (and all it starts) to those CPUs, as an instance with that many."""
        self.spec = spec
        self.left_running: list[int] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{spec.path}"
        env = {k: v for k, v in os.environ.items() if k not in SERVE_SETTINGS}
        env.update(COMMON_ENV | spec.env | {"PORT": str(self.port)})
        # A file, not a pipe: nobody reads the output while the load runs. Closed by stop().
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        started = time.perf_counter()
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(
            spec.argv, cwd=PROJECT_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=pin
        )
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
        """VmRSS and VmHWM of the server's first process (the whole server, for a single-process one)."""
        return process_tree.status_kb(self.proc.pid)

    def tree_memory_kb(self) -> dict[str, int]:
        """Processes, RSS and PSS of the server's whole process tree."""
        return process_tree.tree_memory_kb(self.proc.pid)

    def cpu_seconds(self) -> float:
        """CPU seconds of the server's whole process tree."""
        return process_tree.tree_cpu_seconds(self.proc.pid)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (killed after `timeout`: the code is then negative). Idempotent. Processes of
        the server's tree still alive after it exited (a framework's orphaned workers) are listed in `left_running`,
        then killed, so no server outlives its turn."""
        members = process_tree.identities(self.proc.pid) if self.proc.poll() is None else {}
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.left_running = process_tree.reap_leftovers(members, self.proc.pid, grace=min(timeout, 10))
            self.log.close()

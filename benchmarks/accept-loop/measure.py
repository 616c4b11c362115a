"""The service's calm accept loop (serve/runtime/event_loop.py, an override of CPython's private accept methods)
against the public alternatives, when file descriptors run out: CPython's own loop, alone or with uvicorn's
`limit_concurrency` (503 once that many connections are open).

    .venv/bin/python benchmarks/accept-loop/measure.py OUT.json

Each arm: `python -m serve` (the shipped model) limited to 64 open files; 150 connections opened and held 4 s
(each is a file descriptor, idle: no request); then released. Measured: the log written while they were held, whether
a request is served again within 20 s, the time SIGTERM takes to stop the server, and its exit code.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from contract.paths import PROJECT_ROOT
from loadtest.reporting import machine
from loadtest.servers import free_port

HERE = Path(__file__).parent
ARMS = {"calm loop (the service)": ("calm", 0), "CPython's loop": ("asyncio", 0),
        "CPython's loop, limit_concurrency 32": ("asyncio", 32)}  # fmt: skip
OPEN_FILES, HELD, HOLD_S = 64, 150, 4.0


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def arm(loop: str, limit: int) -> dict:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "MODEL_PATH": str(PROJECT_ROOT / "shipped" /
           "model.int8.onnx"), "HEADER_TIMEOUT_S": "1", "PYTHONPATH": str(PROJECT_ROOT)}  # fmt: skip
    log = tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "serve_with.py"), loop, str(limit)], cwd=PROJECT_ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES)),
    )  # fmt: skip
    while not healthy(port):
        assert proc.poll() is None, "did not start"
        time.sleep(0.05)
    before = log.tell()
    held = []
    for _ in range(HELD):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    time.sleep(HOLD_S)
    log_bytes = log.seek(0, 2) - before
    alive = proc.poll() is None
    for sock in held:
        sock.close()
    started = time.monotonic()
    recovered = None
    while time.monotonic() - started < 20:
        if healthy(port):
            recovered = round(time.monotonic() - started, 2)
            break
        time.sleep(0.1)
    stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    log.seek(before)
    text = log.read().decode(errors="replace")
    return {
        "connections_opened": len(held),
        "alive_while_held": alive,
        "log_bytes_while_held": log_bytes,
        "log_tracebacks": text.count("Traceback"),
        "served_again_after_s": recovered,
        "stop_s": round(time.monotonic() - stop, 2),
        "exit_code": code,
    }


def main() -> None:
    report = {"machine": machine(), "open_files": OPEN_FILES, "held": HELD, "hold_s": HOLD_S, "arms": {}}
    for name, (loop, limit) in ARMS.items():
        report["arms"][name] = arm(loop, limit)
        print(name, report["arms"][name], flush=True)
    Path(sys.argv[1]).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

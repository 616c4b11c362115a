"""The service's own head limits (serve/runtime/http_protocol.py) against nginx in front of it (front.sh), the
maintained alternative: what each answers to the heads the limits exist for, and what the front costs under load.

    .venv/bin/python benchmarks/head-limits/measure.py OUT.json [--rounds 3] [--seconds 8]

Both arms are the shipped model on CIFAR-size JPEGs at 1 and 16 clients, loaded in alternation, a fresh server
each time; CPU per request is the whole process tree's (nginx's included), as the load test measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from contract.paths import PROJECT_ROOT
from loadtest import payloads
from loadtest.client import run_level
from loadtest.reporting import machine
from loadtest.servers import Server, ServerSpec

MODEL = PROJECT_ROOT / "shipped" / "model.int8.onnx"
FRONT = PROJECT_ROOT / "benchmarks" / "head-limits" / "front.sh"


def arms() -> dict[str, ServerSpec]:
    env = {"MODEL_PATH": str(MODEL), "PYTHON": sys.executable}
    return {
        "service": ServerSpec("service", [sys.executable, "-m", "serve"], "/classify", env),
        "nginx+service": ServerSpec("nginx+service", ["bash", str(FRONT)], "/classify", env),
    }


def probe(port: int, head: bytes, *, stall: bool = False, wait_s: float = 12.0) -> dict:
    """Send `head` (`stall`: all but its last two bytes, as a client that stops mid-head), then read what comes back
    and when: a status, or `closed` without an answer."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        try:
            sock.sendall(head[:-2] if stall else head)
            answer = sock.recv(200)
        except OSError as exc:
            answer = type(exc).__name__.encode()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else answer.decode("latin-1")[:40]
    return {"answer": status or "closed", "seconds": round(time.perf_counter() - started, 2)}


def probes(port: int) -> dict[str, dict]:
    line = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    return {
        "64 KiB header": probe(port, line + b"X-Big: " + b"a" * 65536 + b"\r\n\r\n"),
        "150 headers": probe(port, line + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"),
        "head never finished": probe(port, line + b"X-Slow: 1\r\n\r\n", stall=True),
    }


def load(server: Server, bodies: list[bytes], clients: int, seconds: float) -> dict:
    picker = payloads.Picker({"cifar": bodies}, "cifar")
    cpu = server.cpu_seconds()
    result = asyncio.run(
        run_level(server.url, picker, concurrency=clients, max_requests=10**6, max_seconds=seconds)
    ).summary()
    result["cpu_ms_per_request"] = round((server.cpu_seconds() - cpu) * 1000 / max(result["ok"], 1), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    bodies = payloads.cifar_images(256)
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    report: dict = {"machine": machine(), "nginx": nginx, "rounds": {}, "probes": {}}
    for name, spec in arms().items():
        server = Server(spec)
        try:
            report["probes"][name] = probes(server.port)
        finally:
            server.stop()
    for round_ in range(args.rounds):
        for name, spec in arms().items():
            server = Server(spec)
            try:
                for clients in (1, 16):
                    entry = load(server, bodies, clients, args.seconds)
                    report["rounds"].setdefault(f"{name} @{clients}", []).append(entry)
                    print(
                        f"round {round_ + 1} {name} @{clients}: {entry['throughput_rps']} req/s, "
                        f"{entry['cpu_ms_per_request']} ms CPU/req",
                        flush=True,
                    )
            finally:
                server.stop()
    report["medians"] = {
        key: {
            "throughput_rps": statistics.median(e["throughput_rps"] for e in entries),
            "p50_ms": statistics.median(e["latency_ms"]["p50"] for e in entries),
            "cpu_ms_per_request": statistics.median(e["cpu_ms_per_request"] for e in entries),
        }
        for key, entries in report["rounds"].items()
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"probes": report["probes"], "medians": report["medians"]}, indent=2))


if __name__ == "__main__":
    main()

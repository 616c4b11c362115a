"""Where the service's CPU goes per request: the whole process's CPU at 16 (and 1) clients, the engine's share of it
(the engine alone, timed per batch size by engine_cpu.py, times the batches the service ran, from its
`serve_batch_size` histogram), and the rest: the request path (HTTP, decoding, the batcher's hand-off, the answer,
metrics), and the event loop's own CPU (the main thread), which the engine's threads never use. Each engine in turn.

    .venv/bin/python benchmarks/request-path/measure.py OUT.json [--seconds 10] [--engines onnxruntime,openvino]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil

from contract.paths import PROJECT_ROOT
from loadtest import payloads
from loadtest.client import run_level
from loadtest.reporting import machine
from loadtest.servers import Server, service_spec

MODEL = PROJECT_ROOT / "shipped" / "model.int8.onnx"
BUCKET = re.compile(r'^serve_batch_size_bucket\{le="([^"]+)"\} (\S+)$', re.M)


def batch_buckets(port: int) -> dict[float, float]:
    """Cumulative batch counts per histogram bound."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {float(bound): float(count) for bound, count in BUCKET.findall(text)}


def engine_cpu_ms(before: dict, after: dict, cost: dict[int, float]) -> float:
    """CPU ms of the batches run between two scrapes: each histogram bucket's batches at the mean cost of the batch
    sizes it holds (1; 2; 3-4; 5-8; 9-16)."""
    total = 0.0
    bounds = sorted(after)
    previous = 0.0
    low = 1
    for bound in bounds:
        cumulative = after[bound] - before.get(bound, 0.0)
        batches, previous = cumulative - previous, cumulative
        high = 16 if bound == float("inf") else min(int(bound), 16)
        sizes = list(range(low, high + 1)) or [high]
        total += batches * sum(cost[size] for size in sizes) / len(sizes)
        low = high + 1
    return total


def batches_run(before: dict, after: dict) -> float:
    return after[float("inf")] - before.get(float("inf"), 0.0)


def event_loop_cpu(server: Server) -> float:
    """CPU seconds of the server's main thread: the event loop (HTTP, decoding thumbnails, answers, metrics)."""
    main = next(t for t in psutil.Process(server.proc.pid).threads() if t.id == server.proc.pid)
    return main.user_time + main.system_time


def load(server: Server, clients: int, seconds: float, bodies: list[bytes]) -> dict:
    before_loop = event_loop_cpu(server)
    before_cpu, before_batches = server.cpu_seconds(), batch_buckets(server.port)
    picker = payloads.Picker({"cifar": bodies}, "cifar")
    summary = asyncio.run(
        run_level(server.url, picker, concurrency=clients, max_requests=10**7, max_seconds=seconds)
    ).summary()
    cpu_ms = (server.cpu_seconds() - before_cpu) * 1000
    loop_ms = (event_loop_cpu(server) - before_loop) * 1000
    return {
        "summary": summary,
        "cpu_ms": cpu_ms,
        "loop_ms": loop_ms,
        "batches": (before_batches, batch_buckets(server.port)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--engines", default="onnxruntime,openvino")
    args = parser.parse_args()
    bodies = payloads.cifar_images(256)
    report: dict = {"machine": machine(), "model": str(MODEL.relative_to(PROJECT_ROOT)), "engines": {}}
    for engine in args.engines.split(","):
        alone = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("engine_cpu.py")), str(MODEL), engine],
            capture_output=True, text=True, check=True, cwd=PROJECT_ROOT,
        )  # fmt: skip
        cost = {int(k): v for k, v in json.loads(alone.stdout)["cpu_ms_per_batch"].items()}
        server = Server(service_spec(MODEL, {"ENGINE": engine}))
        levels = {}
        try:
            for clients in (16, 1):
                run = load(server, clients, args.seconds, bodies)
                ok = run["summary"]["ok"]
                engine_ms = engine_cpu_ms(*run["batches"], cost)
                levels[clients] = {
                    "req_s": run["summary"]["throughput_rps"],
                    "p50_ms": run["summary"]["latency_ms"]["p50"],
                    "cpu_ms_per_request": round(run["cpu_ms"] / ok, 3),
                    "engine_cpu_ms_per_request": round(engine_ms / ok, 3),
                    "request_path_cpu_ms_per_request": round((run["cpu_ms"] - engine_ms) / ok, 3),
                    "event_loop_cpu_ms_per_request": round(run["loop_ms"] / ok, 3),
                    "mean_batch": round(ok / max(1.0, batches_run(*run["batches"])), 2),
                }
                print(engine, clients, levels[clients], flush=True)
        finally:
            server.stop()
        report["engines"][engine] = {"engine_alone_cpu_ms_per_batch": cost, "clients": levels}
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Where the event loop's time goes under load: py-spy (requirements-dev.txt) samples the service while 16 clients
send CIFAR-size JPEGs, and the main thread's stacks are summed by function, inclusive and self.

    .venv/bin/python benchmarks/request-path/profile.py OUT.txt [--engine onnxruntime] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from contract.paths import PROJECT_ROOT
from loadtest import payloads
from loadtest.client import run_level
from loadtest.reporting import machine
from loadtest.servers import Server, service_spec

MODEL = PROJECT_ROOT / "shipped" / "model.int8.onnx"
SHOWN = 40


def frame_name(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`: lines apart, one function is one row."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].split('/')[-1]})"


def summarise(raw: Path) -> tuple[int, Counter, Counter]:
    inclusive, own, samples = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue
        samples += int(count)
        for name in {frame_name(f) for f in frames[1:]}:
            inclusive[name] += int(count)
        own[frame_name(frames[-1])] += int(count)
    return samples, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    bodies = payloads.cifar_images(256)
    server = Server(service_spec(MODEL, {"ENGINE": args.engine}))
    raw = Path(tempfile.mkdtemp()) / "raw.txt"
    try:
        picker = payloads.Picker({"cifar": bodies}, "cifar")
        level = run_level(server.url, picker, concurrency=16, max_requests=10**7, max_seconds=args.seconds + 6)
        load = threading.Thread(target=asyncio.run, args=(level,))
        load.start()
        command = [spy, "record", "-p", str(server.proc.pid), "--rate", "200", "--duration", str(int(args.seconds))]
        subprocess.run([*command, "--threads", "--format", "raw", "-o", str(raw)], check=True, capture_output=True)
        load.join()
    finally:
        server.stop()
    samples, inclusive, own = summarise(raw)
    cpu = machine()["cpu"]
    lines = [
        f"# The service's event loop (main thread) under 16 clients, ENGINE={args.engine}, {cpu}",
        f"# {samples} samples at 200 Hz; share of the main thread's samples (idle waits in select included)",
        "",
        "inclusive:",
    ]
    lines += [f"{100 * n / samples:5.1f}%  {name}" for name, n in inclusive.most_common(SHOWN)]
    lines += ["", "self:"] + [f"{100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(SHOWN)]
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

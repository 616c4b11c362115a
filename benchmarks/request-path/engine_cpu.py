"""The engine alone: CPU seconds per batch of each size 1..16, as the service runs it (same file, same engine choice,
same threads), in a process of its own. Prints a JSON object {batch size: CPU ms per batch}.

    python benchmarks/request-path/engine_cpu.py MODEL ENGINE
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from serve.model import load_model

RUNS = 40  # per batch size, after two warm-up runs


def main() -> None:
    model = load_model(sys.argv[1], engine=sys.argv[2])
    names = model.answer_outputs(embedding=False)  # what the service asks for without a prediction log
    rng = np.random.default_rng(0)
    cost = {}
    for size in range(1, 17):
        images = rng.integers(0, 256, (size, *model.input_size, 3), dtype=np.uint8)
        for _ in range(2):
            model.outputs(names, images)
        started = time.process_time()
        for _ in range(RUNS):
            model.outputs(names, images)
        cost[size] = (time.process_time() - started) * 1000 / RUNS
    print(json.dumps({"engine": model.engine, "cpu_ms_per_batch": cost}))


if __name__ == "__main__":
    main()

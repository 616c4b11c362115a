"""The model alone, in this one process and on the same number of threads: PyTorch eager fp32 (what the naive
server runs) against onnxruntime (int8, and fp32 when given) at batch 1, and onnxruntime's images/s per batch size,
whose best is the ceiling any server of this model can reach on this machine.

The batch-1 comparison interleaves the two runtimes in short bursts: on a shared VM the speed of the CPUs drifts
within a run, and timing one runtime after the other put that drift into their ratio (5.0x to 7.4x between runs)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contract.model_file import QUANTIZATION

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def physical_cores() -> int:
    """What onnxruntime's default (ORT_THREADS=0) picks: one thread per physical core we may run on."""
    cores = set()
    for cpu in os.sched_getaffinity(0):
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology / "physical_package_id").read_text() + (topology / "core_id").read_text())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def timed(run: Callable[[], object], seconds: float, min_calls: int = 5) -> dict:
    """Median and p99 of one call (ms) and calls/s, after a short warm-up."""
    for _ in range(3):
        run()
    times = []
    started = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < seconds:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return summary(times, time.perf_counter() - started)


def summary(times: list[float], elapsed: float) -> dict:
    ms = np.array(times) * 1000
    return {
        "calls": len(times),
        "median_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "calls_per_s": round(len(times) / elapsed, 2),
    }


def interleaved(runs: dict[str, Callable[[], object]], seconds: float, burst: int = 10) -> dict[str, dict]:
    """Each callable timed in turns of `burst` calls, alternating, until the slowest has run about `seconds`: each
    gets the same number of calls, and whatever the machine does meanwhile, every one of them sees it alike."""
    for run in runs.values():
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    spent = dict.fromkeys(runs, 0.0)
    while max(spent.values()) < seconds:
        for name, run in runs.items():
            started = time.perf_counter()
            for _ in range(burst):
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
            spent[name] += time.perf_counter() - started
    return {name: summary(times[name], spent[name]) for name in runs}


def torch_eager(checkpoint: Path, images: np.ndarray, threads: int) -> tuple[dict, Callable[[], object]]:
    """(what was loaded, one batch-1 forward pass of it). `checkpoint`: the committed weights (loadtest.baseline.
    WEIGHTS) or a Lightning checkpoint, loaded as the naive server loads them."""
    import torch

    from export.checkpoint import load

    torch.set_num_threads(threads)
    loaded = load(checkpoint)
    batch = torch.from_numpy(images[:1])

    def forward():
        with torch.inference_mode():
            return loaded.net(batch)

    return {"arch": loaded.arch, "arch_kwargs": loaded.hparams.get("arch_kwargs") or {}}, forward


def sweep(run: Callable[[np.ndarray], object], images: np.ndarray, seconds: float) -> dict:
    rates = {}
    for size in BATCH_SIZES:
        batch = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))
        result = timed(lambda b=batch: run(b), seconds, min_calls=3)
        rates[str(size)] = {**result, "images_per_s": round(result["calls_per_s"] * size, 1)}
    return rates


def onnx_model(path: Path, threads: int, seconds: float, sweep_batches: bool) -> tuple[dict, np.ndarray, Callable]:
    """(results, the random uint8 images used, shaped for this model, a batch-1 call of it)."""
    from serve.model import load_model  # the service's own session options

    model = load_model(path, threads=threads)
    images = np.random.default_rng(0).integers(0, 256, (64, *model.input_size, 3), dtype=np.uint8)
    out: dict = {"path": str(path), QUANTIZATION: model.quantization, "name": model.name}
    if sweep_batches:
        out["batches"] = sweep(model.run, images, seconds / 2)
        out["batch1"] = out["batches"]["1"]  # the sweep starts at batch 1: no second timing of it
        # Idle intra-op threads spinning: faster for the model alone, but the service keeps them asleep because
        # spinning threads take the CPUs its decoding needs (settings.ort_spinning).
        spinning = load_model(path, threads=threads, spinning=True)
        out["batches_spinning"] = sweep(spinning.run, images, seconds / 2)
        # The model's ceiling is the best of both: comparing the service with it must not flatter the service.
        best = max(
            (
                (options, size, rate["images_per_s"])
                for options in ("batches", "batches_spinning")
                for size, rate in out[options].items()
            ),
            key=lambda entry: entry[2],
        )
        out["peak"] = {"batch": int(best[1]), "images_per_s": best[2], "spinning": best[0] == "batches_spinning"}
    else:
        out["batch1"] = timed(lambda: model.run(images[:1]), seconds)
    return out, images, lambda: model.run(images[:1])


def benchmark_model(
    model: Path,
    checkpoint: Path | None,
    *,
    fp32_model: Path | None = None,
    threads: int = 0,
    seconds: float = 2.0,
) -> dict:
    """The model alone: onnxruntime's batch sweep and peak, fp32 at batch 1 when given, and PyTorch eager against
    onnxruntime at batch 1 when given the checkpoint."""
    threads = threads or physical_cores()
    result: dict = {"threads": threads}
    result["onnxruntime"], images, ort_batch1 = onnx_model(model, threads, seconds, sweep_batches=True)
    if fp32_model is not None and fp32_model.is_file():
        result["onnxruntime_fp32"], _, _ = onnx_model(fp32_model, threads, seconds, sweep_batches=False)
    if checkpoint is not None:
        loaded, torch_batch1 = torch_eager(checkpoint, images, threads)
        paired = interleaved({"onnxruntime": ort_batch1, "torch": torch_batch1}, seconds)
        result["torch_eager_fp32"] = {**loaded, **paired["torch"]}
        result["batch1_interleaved"] = paired
        ratio = paired["torch"]["median_ms"] / paired["onnxruntime"]["median_ms"]
        result["speedup_batch1"] = round(ratio, 2)
    return result

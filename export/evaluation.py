"""Shared by verify and quantize: the real test images, onnxruntime sessions, accuracy and latency measurements."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contract.cpu import add_int8_entries
from contract.model_file import INPUT_NAME, OUTPUT_NAME
from contract.paths import PROCESSED_DIR
from export.errors import ExportError


def load_split(split: str, data_dir: Path = PROCESSED_DIR) -> tuple[np.ndarray, np.ndarray]:
    images, labels = data_dir / f"{split}_images.npy", data_dir / f"{split}_labels.npy"
    if not images.is_file():
        raise ExportError(f"{images} is missing: run `dvc pull` and `python -m train.prepare` (or `dvc repro`)")
    return np.load(images), np.load(labels)


def session(path: Path | bytes, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session of a file (or a serialized model's bytes)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    add_int8_entries(options)  # int8 files computed exactly on this CPU (contract/cpu.py)
    try:
        source = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        where = "the model" if isinstance(path, bytes) else path
        raise ExportError(f"{where}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from exc


def infer_logits(sess: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 logits [N, C], through the contract's tensor names."""
    return sess.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


def predict_logits(sess: ort.InferenceSession, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([infer_logits(sess, images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def latency_ms(sess: ort.InferenceSession, image_shape: tuple[int, ...], batch: int, repeats: int = 50) -> dict:
    """Median and p90 wall time of one onnxruntime call on random uint8 input, after a warm-up."""
    x = np.random.default_rng(0).integers(0, 256, (batch, *image_shape), dtype=np.uint8)
    for _ in range(5):
        infer_logits(sess, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        infer_logits(sess, x)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "batch": batch,
        "p50_ms": round(float(np.median(times)), 3),
        "p90_ms": round(float(np.percentile(times, 90)), 3),
    }

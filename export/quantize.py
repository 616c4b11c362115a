"""int8: onnxruntime static quantization (QDQ, per-channel weights) calibrated on training images, behind a gate.

The gate evaluates fp32 and int8 on the full test set with onnxruntime: int8 top-1 must be within `max_drop` of fp32.
The file is written only when the gate passes, so a failed quantization never replaces a good model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from contract import model_file
from contract.paths import PROCESSED_DIR
from export import metadata
from export.errors import ExportError
from export.evaluation import latency_ms, load_split, predict_logits, session, top1

MAX_DROP = 0.005  # 0.5 percentage points
SCHEME = "int8 static QDQ, per-channel weights (QInt8), QUInt8 activations, MinMax calibration"


class ImageReader(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch_size: int = 64) -> None:
        self._batches = iter([images[i : i + batch_size] for i in range(0, len(images), batch_size)])

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {model_file.INPUT_NAME: batch}


def calibration_images(count: int, data_dir: Path, seed: int = 0) -> np.ndarray:
    images, _ = load_split("train", data_dir)
    return images[np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False)]


def quantize(fp32_path: Path, calibration: np.ndarray, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            ImageReader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def gate(fp32_path: Path, int8_path: Path, data_dir: Path, max_drop: float = MAX_DROP) -> dict:
    images, labels = load_split("test", data_dir)
    fp32 = top1(predict_logits(session(fp32_path), images), labels)
    int8 = top1(predict_logits(session(int8_path), images), labels)
    return {
        "fp32_top1": fp32,
        "int8_top1": int8,
        "drop_pp": round((fp32 - int8) * 100, 3),
        "max_drop_pp": max_drop * 100,
        "test_images": len(labels),
        "passed": fp32 - int8 <= max_drop,
    }


def performance(path: Path, image_shape: tuple[int, ...]) -> dict:
    sess = session(path)
    return {
        "size_bytes": path.stat().st_size,
        "latency": [latency_ms(sess, image_shape, batch) for batch in (1, 32)],
    }


def quantize_behind_gate(
    fp32_path: Path,
    out: Path,
    data_dir: Path = PROCESSED_DIR,
    calibration_count: int = 1024,
    max_drop: float = MAX_DROP,
) -> dict:
    """Quantize, gate, and (only if the gate passes) write `out` with its metadata. Returns the report."""
    meta = metadata.read(fp32_path)
    image_shape = (*meta[model_file.INPUT_SIZE], model_file.INPUT_CHANNELS)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "candidate.onnx"
        quantize(fp32_path, calibration_images(calibration_count, data_dir), candidate)
        report = gate(fp32_path, candidate, data_dir, max_drop)
        report["fp32"] = performance(fp32_path, image_shape)
        report["int8"] = performance(candidate, image_shape)
        report["scheme"] = SCHEME
        report["calibration_images"] = calibration_count
        if not report["passed"]:
            raise QuantizationRejected(report)
        model = metadata.load_model(candidate)
        metadata.set_props(model, {**meta, model_file.QUANTIZATION: SCHEME})
        metadata.save_checked(model, out)
    return report


class QuantizationRejected(ExportError):
    def __init__(self, report: dict) -> None:
        self.report = report
        super().__init__(
            f"int8 rejected: top-1 {report['int8_top1']:.2%} vs fp32 {report['fp32_top1']:.2%} "
            f"(drop {report['drop_pp']:.2f} pp > {report['max_drop_pp']:.2f} pp)"
        )

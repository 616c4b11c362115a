"""Parity: PyTorch (from the checkpoint) and onnxruntime (from the ONNX file) must agree.

On real test images and on random uint8 input, at batch 1 and 64: max |delta logit| <= tolerance and identical
top-1. The numbers go into the ONNX metadata (`parity`); a failure exits non-zero with a readable report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from contract import model_file
from contract.paths import PROCESSED_DIR
from export import calibration, metadata
from export.checkpoint import LoadedCheckpoint
from export.evaluation import load_split, session
from export.onnx_export import graph_module

TOLERANCE = 1e-4
BATCHES = (1, 64)


@dataclass
class ParityReport:
    passed: bool
    max_abs_diff: float
    top1_agreement: float
    cases: list[dict]

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "max_abs_logit_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "tolerance": TOLERANCE,
            "cases": self.cases,
        }

    def text(self) -> str:
        lines = [f"parity {'PASSED' if self.passed else 'FAILED'} (tolerance {TOLERANCE:g}, top-1 must agree 100%)"]
        for c in self.cases:
            mark = "ok " if c["passed"] else "BAD"
            lines.append(
                f"  {mark} {c['input']:<6} batch {c['batch']:>3}: max|dlogit| {c['max_abs_diff']:.2e}, "
                f"top-1 agreement {c['top1_agreement']:.2%}"
            )
        return "\n".join(lines)


def inputs(num_images: int, data_dir: Path, seed: int = 0) -> dict[str, np.ndarray]:
    images, _ = load_split("test", data_dir)
    num_images = min(num_images, len(images))
    rng = np.random.default_rng(seed)
    real = images[rng.choice(len(images), size=num_images, replace=False)]
    random = rng.integers(0, 256, real.shape, dtype=np.uint8)
    return {"test": real, "random": random}


def check(
    loaded: LoadedCheckpoint, onnx_path: Path, data_dir: Path = PROCESSED_DIR, num_images: int = 256
) -> ParityReport:
    meta = metadata.read(onnx_path)
    module = graph_module(loaded, hflip_tta=meta.get(model_file.TTA) == model_file.TTA_HFLIP)
    # A calibrated file's `logits` are calibrated log-probabilities: parity is about the network, its raw logits.
    calibrated = meta.get(model_file.CALIBRATION) is not None
    if calibrated:
        sess = session(calibration.with_raw_logits(metadata.load_model(onnx_path)).SerializeToString())
    else:
        sess = session(onnx_path)
    output = calibration.RAW_LOGITS if calibrated else model_file.OUTPUT_NAME
    cases = []
    for name, images in inputs(num_images, data_dir).items():
        for batch in BATCHES:
            diffs, agree = [], []
            for i in range(0, len(images) - batch + 1, batch):
                x = images[i : i + batch]
                with torch.inference_mode():
                    expected = module(torch.from_numpy(x)).numpy()
                (got,) = sess.run([output], {model_file.INPUT_NAME: x})
                diffs.append(float(np.abs(expected - got).max()))
                agree.extend(expected.argmax(1) == got.argmax(1))
            max_diff, agreement = max(diffs), float(np.mean(agree))
            cases.append(
                {
                    "input": name,
                    "batch": batch,
                    "images": len(agree),
                    "max_abs_diff": max_diff,
                    "top1_agreement": agreement,
                    "passed": max_diff <= TOLERANCE and agreement == 1.0,
                }
            )
    return ParityReport(
        passed=all(c["passed"] for c in cases),
        max_abs_diff=max(c["max_abs_diff"] for c in cases),
        top1_agreement=min(c["top1_agreement"] for c in cases),
        cases=cases,
    )

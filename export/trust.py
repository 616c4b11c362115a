"""The export step that makes answers trustworthy: calibrated scores and the "none of the ten" score, each fitted on
validation pictures (never the test set) and folded into the file, with what they achieve for the model card.

    python -m export.trust build/export/model.int8.onnx     # in place (export runs it on both files)
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from scipy.special import softmax

from contract import model_file
from contract.input_summary import LUMA
from contract.paths import PROCESSED_DIR
from export import calibration, metadata, outlier_score
from export.errors import ExportError
from export.evaluation import load_split, session
from train.datamodule import CIFAR10DataModule, validation_split

FIT_IMAGES = 10_000  # training pictures (outside validation) the class means and covariances are fitted on
FIT_SEED = 1
BATCH = 500


def split_of(config: dict | None) -> tuple[int, int]:
    """(val_size, split_seed) of the training run, from its config, else the data module's defaults."""
    defaults = inspect.signature(CIFAR10DataModule).parameters
    data = (config or {}).get("data") or {}
    return int(data.get("val_size", defaults["val_size"].default)), int(
        data.get("split_seed", defaults["split_seed"].default)
    )


def grayscale(images: np.ndarray) -> np.ndarray:
    luma = (images.astype(np.float64) @ np.array(LUMA)).round().clip(0, 255).astype(np.uint8)
    return np.repeat(luma[..., None], 3, axis=3)


def _outputs(sess: ort.InferenceSession, names: list[str], images: np.ndarray) -> list[np.ndarray]:
    runs = [sess.run(names, {model_file.INPUT_NAME: images[i : i + BATCH]}) for i in range(0, len(images), BATCH)]
    return [np.concatenate([run[k] for run in runs]) for k in range(len(names))]


def add_trust(path: Path, data_dir: Path = PROCESSED_DIR, config: dict | None = None) -> dict:
    """Fit, fold and measure, in place. Returns the card's `calibration` and `outliers` sections."""
    images, labels = load_split("train", data_dir)
    val_size, seed = split_of(config)
    val_idx, train_idx = validation_split(len(labels), val_size, seed)
    fit_idx = np.sort(np.random.default_rng(FIT_SEED).choice(train_idx, min(FIT_IMAGES, len(train_idx)), False))
    test_images, test_labels = load_split("test", data_dir)
    model = metadata.load_model(path)
    classes = len(model_file.decode(metadata.raw_props(model))[model_file.LABELS])
    chosen = outlier_score.taps(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    tap_names = outlier_score.add_tap_outputs(probe, chosen)
    probed = session(probe.SerializeToString())
    fit_features = _outputs(probed, tap_names, images[fit_idx])
    val_logits, *val_features = _outputs(probed, [model_file.OUTPUT_NAME, *tap_names], images[val_idx])
    (test_logits,) = _outputs(probed, [model_file.OUTPUT_NAME], test_images)
    gaussians = tuple(
        outlier_score.standardise(outlier_score.fit_gaussian(fit, labels[fit_idx], classes), val)
        for fit, val in zip(fit_features, val_features, strict=True)
    )
    fitted = calibration.fit(val_logits, labels[val_idx])
    outlier_score.add_score(model, chosen, gaussians)
    calibration.fold(model, fitted)

    # The threshold and the numbers are the folded graph's own, measured before the file is written once.
    folded = session(model.SerializeToString())
    names = [model_file.OUTPUT_NAME, model_file.OUTLIER_SCORE_NAME]
    val_probabilities, val_scores = _outputs(folded, names, images[val_idx])
    test_probabilities, test_scores = _outputs(folded, names, test_images)
    _, gray_scores = _outputs(folded, names, grayscale(test_images))
    threshold = outlier_score.threshold(val_scores)
    outlier = outlier_score.describe(chosen, threshold, len(val_idx), len(fit_idx))
    ece = calibration.expected_calibration_error
    calibrated = {
        **fitted.as_dict(),
        "validation_images": len(val_idx),
        "ece_bins": calibration.ECE_BINS,
        "ece_validation": {
            "before": round(ece(softmax(val_logits, axis=1), labels[val_idx]), 4),
            "after": round(ece(softmax(val_probabilities, axis=1), labels[val_idx]), 4),
        },
        "ece_test": {
            "before": round(ece(softmax(test_logits, axis=1), test_labels), 4),
            "after": round(ece(softmax(test_probabilities, axis=1), test_labels), 4),
        },
        "top1_unchanged": True,
    }
    for name, before, after in (
        ("validation", val_logits, val_probabilities),
        ("test", test_logits, test_probabilities),
    ):
        changed = int((before.argmax(1) != after.argmax(1)).sum())
        if changed:
            raise ExportError(f"{path}: calibration changed the answer of {changed} {name} pictures")
    metadata.set_props(model, {model_file.CALIBRATION: calibrated, model_file.OUTLIER: outlier})
    metadata.save_checked(model, path)
    return {
        "calibration": calibrated,
        "outliers": {
            **outlier,
            "validation_flagged": round(float((val_scores > threshold).mean()), 4),
            "test_flagged": round(float((test_scores > threshold).mean()), 4),
            "test_grayscale_flagged": round(float((gray_scores > threshold).mean()), 4),
        },
    }


# The gate against the shipped card: a candidate may be no worse calibrated (test ECE, with this much room for the
# noise of 10,000 pictures) and may flag no larger a share of clean test pictures.
MAX_ECE_RISE = 0.005
MAX_FLAGGED_RISE = 0.01


class TrustRefused(ExportError):
    """The candidate is worse calibrated, or flags more clean pictures, than the shipped model."""


def _split(report: dict) -> tuple:
    return report["calibration"].get("validation_images"), report["outliers"].get("fit_images")


def gate(report: dict, baseline_card: Path | None) -> None:
    """Raises TrustRefused when `report` is worse than the baseline card's. A card without the sections (a model
    from before them), or fitted on another split (other validation or fitting sizes: a development data set, whose
    few validation pictures make the flagged share noisy), cannot be compared and refuses nothing."""
    if baseline_card is None or not baseline_card.is_file():
        return
    baseline = json.loads(baseline_card.read_text())
    old_cal, old_out = baseline.get("calibration"), baseline.get("outliers")
    if old_cal and old_out and _split(baseline) != _split(report):
        return
    ece = report["calibration"]["ece_test"]["after"]
    if old_cal and ece > old_cal["ece_test"]["after"] + MAX_ECE_RISE:
        raise TrustRefused(
            f"calibration refused: test ECE {ece:.2%} against {old_cal['ece_test']['after']:.2%} for the shipped model"
        )
    flagged = report["outliers"]["test_flagged"]
    if old_out and flagged > old_out["test_flagged"] + MAX_FLAGGED_RISE:
        raise TrustRefused(
            f"outlier score refused: flags {flagged:.1%} of clean test pictures against {old_out['test_flagged']:.1%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.trust", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported ONNX file (with its embedding output), in place")
    parser.add_argument("--data-dir", type=Path, default=PROCESSED_DIR, help="prepared data")
    args = parser.parse_args(argv)
    try:
        config = metadata.read(args.model).get(model_file.CONFIG)
        report = add_trust(args.model, args.data_dir, config)
    except ExportError as exc:
        print(f"export.trust: {exc}", file=sys.stderr)
        return 1
    print(trust_line(report))
    return 0


def trust_line(report: dict) -> str:
    cal, out = report["calibration"], report["outliers"]
    return (
        f"calibration: test ECE {cal['ece_test']['before']:.2%} -> {cal['ece_test']['after']:.2%}; outliers: "
        f"threshold {out[model_file.OUTLIER_THRESHOLD]:.3f}, flags {out['test_flagged']:.1%} of test pictures, "
        f"{out['test_grayscale_flagged']:.1%} of them in grayscale"
    )


def benchmark_line(table: dict) -> str:
    """The outlier benchmark (evaluation/outliers.py) in one line: mean AUROC and what each group had caught."""
    caught = ", ".join(f"{name} {row['caught']:.0%}" for name, row in table["groups"].items())
    gate = table.get("gate") or {}
    verdict = f"; gate {'passed' if gate.get('passed') else 'REFUSED'}" if gate.get("compared") else ""
    return f"outlier benchmark: mean AUROC {table['mean_auroc']:.3f}; caught {caught}{verdict}"


if __name__ == "__main__":
    sys.exit(main())

"""python -m export CHECKPOINT: export -> parity check -> int8 quantization + gate -> robustness gate -> model card.

CHECKPOINT is a Lightning checkpoint of `python -m train` or a committed weights file (.safetensors with its JSON
sidecar, export/weights_file.py): the shipped model is exported from shipped/weights/resnet18-cifar10.safetensors.

Writes into --out-dir: model.onnx (fp32), model.int8.onnx and model-card.json, each carrying the card, and
reference.json (what the served model sees on test images, for the drift check). Both ONNX files also answer the
optional `embedding` output and carry golden answers, which the service checks its engine against at start
(export/golden.py). Nothing in --out-dir is replaced unless every step passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from contract import model_file
from contract.input_summary import REFERENCE_FILE
from contract.paths import PROCESSED_DIR, PROJECT_ROOT
from export import (
    card,
    checkpoint,
    drift_reference,
    embedding,
    explain,
    golden,
    metadata,
    onnx_export,
    quantize,
    trust,
    verify,
    weights_file,
)
from export.benchmark_gates import ROBUSTNESS_KEY, SHIPPED_CARD, measure_outliers, measure_robustness, robustness_line
from export.errors import ExportError

FP32, INT8, CARD = "model.onnx", "model.int8.onnx", "model-card.json"


def weights_provenance(loaded: checkpoint.LoadedCheckpoint) -> dict | None:
    """The card's `weights`: the committed file the model was exported from and where its tensors came from."""
    if loaded.origin is None:
        return None
    path = loaded.path.resolve()
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    return {"file": str(shown), "sha256": weights_file.file_sha256(path), "origin": loaded.origin}


def with_weights(model_card: dict, weights: dict | None) -> dict:
    """The card with `weights` right after `training` (nothing added for a training checkpoint)."""
    if weights is None:
        return model_card
    items = list(model_card.items())
    at = [key for key, _ in items].index("training") + 1
    return dict([*items[:at], ("weights", weights), *items[at:]])


def export_checkpoint(
    ckpt_path: Path,
    out_dir: Path,
    *,
    data_dir: Path = PROCESSED_DIR,
    hflip_tta: bool = False,
    quantize_int8: bool = True,
    calibration: int = 1024,
    robustness: bool = False,
    robustness_baseline: Path | None = None,
) -> dict:
    """The whole chain into `out_dir`, replacing nothing there unless every step passes. Returns the model card.
    robustness adds the served model's robustness table to the card, refused when its mean corrupted top-1
    is more than 1 pp below robustness_baseline's (a model card; export/benchmark_gates.py)."""
    loaded = checkpoint.load(ckpt_path)
    training = dict(loaded.training)
    if training.get("config"):
        training["config"] = card.portable(training["config"])  # no path of this machine in the file or the card
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    except OSError as exc:
        raise ExportError(f"{out_dir}: output folder is not writable ({exc.strerror})") from exc
    try:
        fp32 = stage / FP32
        metrics = {model_file.TOP1_PYTORCH: training.get("test_top1")} if training else {}
        meta = onnx_export.export(loaded, fp32, hflip_tta=hflip_tta, metrics=metrics, config=training.get("config"))
        print(f"exported {ckpt_path} -> {FP32} (version {meta[model_file.VERSION]})")

        report = verify.check(loaded, fp32, data_dir)
        print(report.text())
        if not report.passed:
            raise ExportError(f"{ckpt_path}: parity check failed, max |dlogit| {report.max_abs_diff:.2e}")
        parity = report.as_dict()
        metadata.update(fp32, {model_file.PARITY: parity})

        quant = None
        if quantize_int8:
            quant = quantize.quantize_behind_gate(fp32, stage / INT8, data_dir, calibration_count=calibration)
            print(
                f"int8 accepted: top-1 {quant['int8_top1']:.2%} vs fp32 {quant['fp32_top1']:.2%} "
                f"(drop {quant['drop_pp']:.2f} pp); {quant['fp32']['size_bytes'] / 1e6:.1f} MB -> "
                f"{quant['int8']['size_bytes'] / 1e6:.1f} MB"
            )
            metrics |= {model_file.TOP1_FP32: quant["fp32_top1"], model_file.TOP1_INT8: quant["int8_top1"]}

        served = {}
        for name in (FP32, INT8) if quant else (FP32,):
            embedding.add_to_file(stage / name)  # an extra output: the logits stay bit for bit the same
            explain.add_to_file(stage / name)  # the class activation map, computed only when asked for
            # Calibrated scores and the outlier score, each file fitted on its own validation outputs.
            served = trust.add_trust(stage / name, data_dir, training.get("config"))
            # Last of the graph's changes: the answers the service checks its engine against at start.
            answers = golden.add_to_file(stage / name, data_dir)
        print(trust.trust_line(served))
        print(golden.golden_line(answers))
        trust.gate(served, robustness_baseline)  # the shipped card, as for robustness
        drift_reference.write(stage / (INT8 if quant else FP32), stage / REFERENCE_FILE, data_dir)
        robust = outliers = None
        if robustness:
            robust = measure_robustness(stage / (INT8 if quant else FP32), data=data_dir, baseline=robustness_baseline)
            print(robustness_line(robust))
            outliers = measure_outliers(stage / (INT8 if quant else FP32), data=data_dir, baseline=robustness_baseline)
            print(trust.benchmark_line(outliers))

        model_card = card.build({**meta, model_file.METRICS: metrics}, training, parity, quant)
        model_card = with_weights(model_card, weights_provenance(loaded))
        model_card |= served  # `calibration` and `outliers`: the served (last) file's
        if robust is not None:
            model_card[ROBUSTNESS_KEY] = robust
            model_card[model_file.CARD_OUTLIER_BENCHMARK] = outliers
        for name in (FP32, INT8) if quant else (FP32,):
            metadata.update(stage / name, {model_file.METRICS: metrics, model_file.CARD: model_card})
        card.write(model_card, stage / CARD)
        for name in (FP32, INT8, CARD, REFERENCE_FILE):
            if (stage / name).exists():
                os.replace(stage / name, out_dir / name)
        return model_card
    finally:
        for leftover in stage.iterdir():
            leftover.unlink()
        stage.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkpoint", type=Path, help="Lightning checkpoint of `python -m train`, or a .safetensors weights file"
    )
    parser.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "build" / "export", help="output folder")
    parser.add_argument(
        "--data-dir", type=Path, default=PROCESSED_DIR, help="prepared data (parity, calibration, gate)"
    )
    parser.add_argument("--hflip-tta", action="store_true", help="average the logits of the image and its mirror")
    parser.add_argument("--no-quantize", action="store_true", help="stop after the fp32 export and parity check")
    parser.add_argument("--calibration-images", type=int, default=1024, help="training images to calibrate int8")
    parser.add_argument("--no-robustness", action="store_true", help="skip the robustness benchmark and its gate")
    parser.add_argument(
        "--robustness-baseline", type=Path, default=SHIPPED_CARD, help="the card the robustness gate beats"
    )
    args = parser.parse_args(argv)
    try:
        export_checkpoint(
            args.checkpoint,
            args.out_dir,
            data_dir=args.data_dir,
            hflip_tta=args.hflip_tta,
            quantize_int8=not args.no_quantize,
            calibration=args.calibration_images,
            robustness=not args.no_robustness,
            robustness_baseline=args.robustness_baseline if args.robustness_baseline.is_file() else None,
        )
    except ExportError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

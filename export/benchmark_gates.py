"""The robustness gate of the export chain, and the robustness table in the model card.

    python -m export.benchmark_gates shipped/model.int8.onnx --card shipped/model-card.json [--docs docs/robustness.md]

measures a model with the torch-free benchmarks of evaluation/ (robustness.py, outliers.py), called directly, and
records the table under `robustness` in the card file and in the card inside the ONNX file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contract import model_file
from contract.paths import SHIPPED_DIR
from evaluation import outliers, robustness, robustness_report
from evaluation.robustness import DataError, ModelLoadError
from export import card, metadata
from export.errors import ExportError

ROBUSTNESS_KEY = "robustness"  # in the model card (a JSON value of the contract's `card` key, so free to extend)
SHIPPED_CARD = SHIPPED_DIR / "model-card.json"


class RobustnessRefused(ExportError):
    """The model's mean corrupted top-1, or its outlier benchmark's mean AUROC, is too far below the shipped
    model's."""


def measure_robustness(model: Path, *, data: Path | None = None, baseline: Path | None = None, **options) -> dict:
    """The robustness table of `model` (with its `gate` result when a baseline card is given); `options` are
    evaluation.robustness.evaluate's (images, photos, seed). Raises RobustnessRefused when the gate refuses,
    ExportError when the benchmark cannot run."""
    return _gated(robustness.evaluate, robustness.gate_line, model, data=data, baseline=baseline, **options)


def measure_outliers(model: Path, *, data: Path | None = None, baseline: Path | None = None) -> dict:
    """The "none of the ten" table of `model` (evaluation/outliers.py), gated like robustness."""
    return _gated(outliers.evaluate, outliers.gate_line, model, data=data, baseline=baseline)


def _gated(evaluate, gate_line, model: Path, **arguments) -> dict:
    try:
        table = evaluate(model, **arguments)
    except (ModelLoadError, DataError, OSError, ValueError) as exc:
        raise ExportError(f"{model}: the benchmark {evaluate.__module__} failed ({exc})") from exc
    gate = table.get("gate")
    if gate is not None and not gate["passed"]:
        raise RobustnessRefused(f"{model}: {gate_line(gate, table)}")
    return table


def robustness_line(table: dict) -> str:
    gate = table.get("gate")
    line = f"robustness: clean {table['clean_top1']:.2%}, mean corrupted {table['mean_corrupted_top1']:.2%}"
    if gate is None:
        return line
    if not gate["compared"]:
        return f"{line}; gate {gate['reason']}"
    return f"{line}; gate passed ({gate['drop_pp']:+.2f} pp vs {gate['baseline_mean_corrupted_top1']:.2%})"


def record(table: dict, model: Path, card_path: Path) -> dict:
    """Put the table into the card file and the card inside the ONNX file; returns the new card."""
    inside = metadata.read(model).get(model_file.CARD) or {}
    metadata.update(model, {model_file.CARD: inside | {ROBUSTNESS_KEY: table}})
    model_card = json.loads(card_path.read_text()) | {ROBUSTNESS_KEY: table}
    card.write(model_card, card_path)
    return model_card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.benchmark_gates", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the ONNX file to measure and record into")
    parser.add_argument("--card", type=Path, default=SHIPPED_CARD, help="its model card (JSON)")
    parser.add_argument("--data", type=Path, help="prepared data folder or test tarball (the benchmark's default)")
    parser.add_argument("--docs", type=Path, help="also rewrite the table in this Markdown file")
    args = parser.parse_args(argv)
    try:
        described = json.loads(args.card.read_text())
        if described.get(model_file.VERSION) != metadata.read(args.model).get(model_file.VERSION):
            raise ExportError(f"{args.card} describes another model than {args.model}")
        if args.docs:
            robustness_report.check_markers(args.docs)  # say so now, not after minutes of measuring
        table = measure_robustness(args.model, data=args.data)
        if args.docs:
            robustness_report.update_docs(args.docs, robustness_report.markdown(table, robustness.worst(table)))
        record(table, args.model, args.card)
    except (ExportError, OSError, ValueError) as exc:
        print(f"export.benchmark_gates: {exc}", file=sys.stderr)
        return 1
    print(f"{robustness_line(table)}; recorded in {args.card} and {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

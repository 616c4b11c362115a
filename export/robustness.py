"""The robustness gate of the export chain, and the robustness table in the model card.

    python -m export.robustness shipped/model.int8.onnx --card shipped/model-card.json [--docs docs/robustness.md]

measures a model with the torch-free benchmark (monitor/robustness.py) and records the table under `robustness` in
the card file and in the card inside the ONNX file. The benchmark decodes uploads with the service's own code,
which export must never import (pyproject.toml's import rules), so it runs as its own process: that process also
shows the numbers come from onnxruntime, numpy and Pillow alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from contract import model_file
from contract.paths import PROJECT_ROOT, SHIPPED_DIR
from export import card, metadata
from export.errors import ExportError

ROBUSTNESS_KEY = "robustness"  # in the model card (a JSON value of the contract's `card` key, so free to extend)
SHIPPED_CARD = SHIPPED_DIR / "model-card.json"
EXIT_REFUSED = 1  # the exit code of monitor.robustness and monitor.outliers when their gate refuses
# 2,000 images x 27 corruption cells + the upload path: a few minutes on 2 cores (monitor/robustness.py).
TIMEOUT_S = 3600


class RobustnessRefused(ExportError):
    """The model's mean corrupted top-1, or its outlier benchmark's mean AUROC, is too far below the shipped
    model's."""


def measure_robustness(
    model: Path, *, data: Path | None = None, baseline: Path | None = None, extra: tuple[str, ...] = ()
) -> dict:
    """The robustness table of `model` (with its `gate` result when a baseline card is given). Raises
    RobustnessRefused when the gate refuses, ExportError when the benchmark cannot run."""
    return run_benchmark("monitor.robustness", model, data=data, baseline=baseline, extra=extra)


def measure_outliers(model: Path, *, data: Path | None = None, baseline: Path | None = None) -> dict:
    """The "none of the ten" table of `model` (monitor/outliers.py), gated like robustness."""
    return run_benchmark("monitor.outliers", model, data=data, baseline=baseline)


def run_benchmark(
    module: str, model: Path, *, data: Path | None = None, baseline: Path | None = None, extra: tuple[str, ...] = ()
) -> dict:
    """Run a torch-free benchmark of monitor/ on `model` in its own process; its JSON table. Both benchmarks share
    the command line (--out, --data, --baseline) and the exit codes (EXIT_REFUSED when the gate refuses)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "table.json"
        command = [sys.executable, "-m", module, str(model), "--out", str(out), *extra]
        command += ["--data", str(data)] if data else []
        command += ["--baseline", str(baseline)] if baseline else []
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
        if done.returncode not in (0, EXIT_REFUSED) or not out.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"{model}: the benchmark {module} failed ({last})")
        table = json.loads(out.read_text())
    if done.returncode == EXIT_REFUSED:
        raise RobustnessRefused(f"{model}: {done.stdout.strip().splitlines()[-1]}")
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
    parser = argparse.ArgumentParser(prog="python -m export.robustness", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the ONNX file to measure and record into")
    parser.add_argument("--card", type=Path, default=SHIPPED_CARD, help="its model card (JSON)")
    parser.add_argument("--data", type=Path, help="prepared data folder or test tarball (monitor.robustness's default)")
    parser.add_argument("--docs", type=Path, help="also rewrite the table in this Markdown file")
    args = parser.parse_args(argv)
    try:
        described = json.loads(args.card.read_text())
        if described.get(model_file.VERSION) != metadata.read(args.model).get(model_file.VERSION):
            raise ExportError(f"{args.card} describes another model than {args.model}")
        table = measure_robustness(args.model, data=args.data, extra=("--docs", str(args.docs)) if args.docs else ())
        record(table, args.model, args.card)
    except (ExportError, OSError, ValueError) as exc:
        print(f"export.robustness: {exc}", file=sys.stderr)
        return 1
    print(f"{robustness_line(table)}; recorded in {args.card} and {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

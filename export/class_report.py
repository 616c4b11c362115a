"""python -m export.class_report MODEL.onnx: the model's test-set numbers for docs/training.md, from onnxruntime.

Writes a confusion-matrix PNG and prints a Markdown table of per-class accuracy (rows: true class).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np

from contract import model_file
from contract.paths import PROCESSED_DIR, PROJECT_ROOT
from export import metadata
from export.errors import ExportError
from export.evaluation import load_split, predict_logits, session

matplotlib.use("Agg")  # files only, no display
from matplotlib import pyplot as plt


def confusion(predicted: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def plot(matrix: np.ndarray, labels: list[str], title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=110)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def markdown(matrix: np.ndarray, labels: list[str]) -> str:
    per_class = matrix.diagonal() / matrix.sum(1)
    lines = ["| class | accuracy | most often mistaken for |", "| --- | ---: | --- |"]
    for i, label in enumerate(labels):
        errors = matrix[i].copy()
        errors[i] = 0
        lines.append(f"| {label} | {per_class[i]:.1%} | {labels[int(errors.argmax())]} ({errors.max()}) |")
    lines.append(f"| **all** | **{matrix.diagonal().sum() / matrix.sum():.2%}** | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.class_report", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported ONNX file")
    parser.add_argument("--data-dir", type=Path, default=PROCESSED_DIR, help="prepared data (its test split)")
    parser.add_argument("--png", type=Path, default=PROJECT_ROOT / "docs" / "confusion-matrix.png")
    args = parser.parse_args(argv)
    try:
        meta = metadata.read(args.model)
        images, truth = load_split("test", args.data_dir)
        predicted = predict_logits(session(args.model), images).argmax(1)
    except ExportError as exc:
        print(f"export.class_report: {exc}", file=sys.stderr)
        return 1
    labels = meta[model_file.LABELS]
    matrix = confusion(predicted, truth, len(labels))
    quantization = meta.get(model_file.QUANTIZATION, model_file.QUANTIZATION_NONE)
    precision = "fp32" if quantization == model_file.QUANTIZATION_NONE else "int8"
    name, version = meta[model_file.MODEL_NAME], meta[model_file.VERSION]
    title = f"{name} {version} ({precision}): CIFAR-10 test confusion matrix"
    plot(matrix, labels, title, args.png)
    print(markdown(matrix, labels))
    print(f"\nconfusion matrix: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

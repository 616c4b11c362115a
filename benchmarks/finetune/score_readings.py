"""Which outlier reading a fine-tune moved: for each model file, the AUROC of the graph's outlier score (feature
distances, export/outlier_score.py), of the softmax's doubt (log(1 - top probability), what outlier exposure
trains) and of their sum, each standardised on the inliers, per group of the outlier benchmark and on crops of the
real-photo bank (train/outlier_photos.py), all on the training run's validation pictures.

    python benchmarks/finetune/score_readings.py MODEL.onnx [...] --bank build/outlier-photos.npy --out FILE.json

A diagnosis, not a gate: the benchmark's groups are reported, never chosen on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from contract.model_file import OUTLIER_SCORE_NAME, OUTPUT_NAME
from evaluation.outliers import BATCH, TEST_IMAGES, as_uploaded, auroc, groups, load_test_set, stratified_subset
from serve.model import LoadedModel, load_model
from serve.scoring import softmax

BANK_CROPS = 600  # drawn from the bank with a fixed seed


def readings(model: LoadedModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(graph outlier score, log softmax doubt) of every model-input picture, from one pass of the model."""
    names = [OUTLIER_SCORE_NAME, OUTPUT_NAME]
    batches = [model.outputs(names, images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
    graph, logits = (np.concatenate(parts) for parts in zip(*batches, strict=True))
    return graph.astype(np.float64), np.log1p(1e-6 - softmax(logits).max(axis=1))


def measure(path: Path, data: Path, bank: np.ndarray | None) -> dict:
    model = load_model(path)
    images, truth = load_test_set(data, model.labels)
    chosen = stratified_subset(truth, TEST_IMAGES, seed=0)
    graph_in, doubt_in = readings(model, as_uploaded(model, list(images[chosen])))

    def standardised_sum(graph: np.ndarray, doubt: np.ndarray) -> np.ndarray:
        return (graph - graph_in.mean()) / graph_in.std() + (doubt - doubt_in.mean()) / doubt_in.std()

    sum_in = standardised_sum(graph_in, doubt_in)

    named = {name: pictures for name, (_, pictures) in groups(images[chosen]).items()}
    if bank is not None:
        pick = np.random.default_rng(0).choice(len(bank), min(BANK_CROPS, len(bank)), replace=False)
        named["photo_bank"] = list(bank[pick])
    table = {}
    for name, pictures in named.items():
        graph, doubt = readings(model, as_uploaded(model, pictures))
        table[name] = {
            "graph": round(auroc(graph_in, graph), 4),
            "softmax": round(auroc(doubt_in, doubt), 4),
            "sum": round(auroc(sum_in, standardised_sum(graph, doubt)), 4),
        }
    return {"model": str(path), "version": model.version, "groups": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("build/val-data"), help="validation_folder.py's output")
    parser.add_argument("--bank", type=Path, help="the real-photo bank, to read its crops too")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    bank = np.load(args.bank) if args.bank else None
    rows = []
    for path in args.models:
        rows.append(measure(path, args.data, bank))
        table = rows[-1]["groups"].items()
        print(path, " ".join(f"{name}:{r['graph']}/{r['softmax']}/{r['sum']}" for name, r in table))
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

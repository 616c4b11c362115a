"""The reference statistics a drift check compares the prediction log with: reference.json next to the model.

The same numbers the service logs (contract.prediction_log: input features, top score, predicted label, compact
embedding), computed on test images the model never trained on. data/processed holds exactly what the service's
decode + resize gives a 32x32 CIFAR JPEG (checked by the drift benchmark, whose clean traffic goes through the
service's own path), so no re-encoding happens here.

Only the test images with an even index (data/processed order) are used: the odd half stays out of the reference, so
the drift benchmark (evaluation/benchmark.py) can measure false alarms on clean traffic the reference has not seen.

    python -m export.drift_reference shipped/model.int8.onnx                   # -> shipped/reference.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from contract import input_summary
from contract import prediction_log as plog
from contract.cpu import add_int8_entries
from contract.model_file import (
    EMBEDDING_NAME,
    INPUT_NAME,
    LABELS,
    MODEL_NAME,
    OUTLIER,
    OUTLIER_SCORE_NAME,
    OUTPUT_NAME,
    VERSION,
    outlier_threshold,
)
from contract.paths import PROCESSED_DIR
from export.embedding import add_embedding_output
from export.errors import ExportError

# Sample sizes kept in the file (from the 5,000 reference images): the two-sample tests' power is set mostly by the
# smaller sample, the 400-request window, so 2,000 feature rows and 500 embeddings lose little and keep the file at
# ~0.15 MB. 500, not more, because the MMD permutation test costs (500 + window)^2 per permutation: 1,000 made the
# detection benchmark 3x slower for no detection it lacked (benchmarks/drift-detection.md).
FEATURE_SAMPLE = 2000
EMBEDDING_SAMPLE = 500
SAMPLE_SEED = 0
BATCH = 250


def reference_half(count: int) -> np.ndarray:
    """Indices of the test images the reference uses: the even ones (the test set is sorted by class, so both halves
    hold every class equally)."""
    return np.arange(0, count, 2)


def session(model_path: Path, threads: int = 2) -> ort.InferenceSession:
    """The model with its embedding output (added in memory when the file lacks it)."""
    model = add_embedding_output(onnx.load(str(model_path)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    add_int8_entries(options)  # int8 files computed exactly on this CPU (contract/cpu.py)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """uint8 [N, H, W, 3] -> (softmax probabilities [N, C], compact embeddings [N, EMBEDDING_DIMS], outlier scores
    [N] or None for a file without them)."""
    names = [OUTPUT_NAME, EMBEDDING_NAME]
    names += [OUTLIER_SCORE_NAME] if OUTLIER_SCORE_NAME in {out.name for out in sess.get_outputs()} else []
    probabilities, embeddings, scores = [], [], []
    for start in range(0, len(images), BATCH):
        logits, embedding, *score = sess.run(names, {INPUT_NAME: images[start : start + BATCH]})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities.append(shifted / shifted.sum(axis=1, keepdims=True))
        embeddings.append(input_summary.compact_embedding(embedding))
        scores += score
    return np.concatenate(probabilities), np.concatenate(embeddings), np.concatenate(scores) if scores else None


def build(model_path: Path, data_dir: Path = PROCESSED_DIR) -> dict:
    images_path = data_dir / "test_images.npy"
    if not images_path.is_file():
        raise ExportError(f"{images_path} is missing: run `python -m train.prepare` (or `dvc repro prepare`)")
    images = np.load(images_path)[reference_half(len(np.load(images_path, mmap_mode="r")))]
    sess = session(model_path)
    meta = sess.get_modelmeta().custom_metadata_map
    probabilities, embeddings, scores = run(sess, images)
    flagged = None if scores is None else scores > outlier_threshold({OUTLIER: json.loads(meta[OUTLIER])})
    model = {"name": meta.get(MODEL_NAME), "version": meta.get(VERSION)}
    return from_arrays(images, probabilities, embeddings, json.loads(meta[LABELS]), model, flagged=flagged)


def from_arrays(
    images: np.ndarray,
    probabilities: np.ndarray,
    embeddings: np.ndarray | None,
    labels: list[str],
    model: dict,
    *,
    flagged: np.ndarray | None = None,
) -> dict:
    """The reference file's content from the model's outputs on `images` (compact embeddings, or None; whether each
    is flagged as none of the ten, or None for a model without an outlier score)."""
    values = input_summary.features(images)
    rng = np.random.default_rng(SAMPLE_SEED)
    rows = np.sort(rng.choice(len(images), min(FEATURE_SAMPLE, len(images)), replace=False))
    embedded = np.sort(rng.choice(len(images), min(EMBEDDING_SAMPLE, len(images)), replace=False))
    predicted = probabilities.argmax(axis=1)
    return {
        "reference_version": input_summary.REFERENCE_VERSION,
        "model": model,
        "labels": labels,
        "source": {
            "data": "CIFAR-10 test set, data/processed (what the service's decode + resize gives its 32x32 JPEGs)",
            "split": "even indices of data/processed/test_images.npy; the odd half is the drift benchmark's traffic",
            "images": len(images),
            "feature_sample": len(rows),
            "embedding_sample": len(embedded) if embeddings is not None else 0,
            "sample_seed": SAMPLE_SEED,
        },
        "features": {
            "names": list(input_summary.FEATURES),
            "sample": input_summary.pack_array(values[rows], "float32"),
        },
        "score": input_summary.pack_array(probabilities.max(axis=1)[rows], "float32"),
        "label_counts": np.bincount(predicted, minlength=len(labels)).tolist(),
        # The shares the alert rules and the drift report compare live traffic with (over every reference image).
        "shares": {
            "not_sure": round(float(np.mean(probabilities.max(axis=1) < plog.NOT_SURE_BELOW)), 4),
            "outlier": None if flagged is None else round(float(np.mean(flagged)), 4),
        },
        # float16 keeps 3 significant digits: far finer than the kernel bandwidth the MMD test uses.
        "embedding": None
        if embeddings is None
        else {
            "dims": input_summary.EMBEDDING_DIMS,
            "sample": input_summary.pack_array(embeddings[embedded], "float16"),
        },
        "summary": {
            name: {
                q: round(float(np.quantile(values[:, i], p)), 5)
                for q, p in (("p05", 0.05), ("p50", 0.5), ("p95", 0.95))
            }
            for i, name in enumerate(input_summary.FEATURES)
        },
    }


def write(model_path: Path, out: Path | None = None, data_dir: Path = PROCESSED_DIR) -> Path:
    """reference.json beside the model (or at `out`)."""
    out = out or model_path.with_name(input_summary.REFERENCE_FILE)
    reference = build(model_path, data_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(reference, indent=1) + "\n")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.drift_reference", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the ONNX file the reference is for")
    parser.add_argument(
        "--out", type=Path, help=f"output file (default: {input_summary.REFERENCE_FILE} beside the model)"
    )
    parser.add_argument("--data-dir", type=Path, default=PROCESSED_DIR, help="prepared data (its test set)")
    args = parser.parse_args(argv)
    try:
        out = write(args.model, args.out, args.data_dir)
    except ExportError as exc:
        print(f"export.drift_reference: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the model holds up on pictures that are not clean CIFAR-10 thumbnails: test-set top-1 under CIFAR-10-C-style
corruptions (evaluation/corruptions.py) and through the upload path (evaluation/upload_path.py), as one table.

    python -m evaluation.robustness shipped/model.int8.onnx [--out table.json] [--baseline CARD] [--docs FILE]

Exit codes: 0 measured (and not refused); 1 the gate refused it (mean corrupted top-1 more than MAX_DROP_PP below
the --baseline card's); 2 the model or the data cannot be used.

Torch-free (onnxruntime, numpy, Pillow and the service's own decoding), so the numbers are the served model's.
The table goes into the model card (export/benchmark_gates.py records it and gates on it) and into docs/robustness.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contract.paths import PROCESSED_DIR, RAW_DIR
from evaluation import robustness_report
from evaluation.corruptions import CORRUPTIONS, corrupt
from evaluation.upload_path import PHOTO_SIZES, photo_name, uploaded
from serve.model import LoadedModel, ModelLoadError, load_model

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2

# The int8 ResNet-18 costs ~11 ms of CPU an image here (AVX2, no VNNI), so 28 passes (clean + 27 cells) over
# 1,000 test images (100 a class) take ~3 minutes on 2 cores; a 12-MP photo ~0.25 s to make, so 200 of them.
DEFAULT_IMAGES = 1000
DEFAULT_PHOTOS = 200
BATCH = 250
# The export gate: a model whose mean corrupted top-1 is more than this below the shipped model's is refused.
MAX_DROP_PP = 1.0


class DataError(Exception):
    """The test data cannot be read or does not fit the model; the message is one line."""


def load_test_set(data: Path, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, H, W, 3], class index in the model's label order [N]) from a prepared folder (test_images.npy,
    test_labels.npy and meta.json's class names) or from the raw tarball (`test/<class>/<file>.jpg`, sorted)."""
    if data.is_dir():
        try:
            images, indices = np.load(data / "test_images.npy"), np.load(data / "test_labels.npy")
            names = [json.loads((data / "meta.json").read_text())["classes"][int(i)] for i in indices]
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise DataError(f"{data}: not a prepared data folder ({exc}); run `python -m train.prepare`") from None
    else:
        images, names = _read_tarball(data)
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise DataError(f"{data}: classes the model does not know: {', '.join(unknown)}")
    return images, np.array([labels.index(name) for name in names], dtype=np.int64)


def _read_tarball(path: Path) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    members: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 3 and parts[0] == "test":
                    members.append((member.name, tar.extractfile(member).read()))
    except (OSError, tarfile.TarError) as exc:
        raise DataError(f"{path}: not a readable test tarball ({exc}); run `dvc pull data.dvc`") from None
    members.sort()
    images = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for _, data in members]
    if not images:
        raise DataError(f"{path}: no test/<class>/<file> images in it")
    return np.stack(images), [name.split("/")[1] for name, _ in members]


def stratified_subset(truth: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of `count` images, the same number from every class (all of a class that has fewer)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(truth)
    per_class = max(1, count // len(classes))
    chosen = []
    for label in classes:
        members = np.flatnonzero(truth == label)
        chosen.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def fingerprint(images: np.ndarray, truth: np.ndarray) -> str:
    """Names the exact images and labels measured: tables are comparable only when this matches."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(truth, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def predict(model: LoadedModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(the predicted class [N], whether each picture is flagged as none of the ten [N] — None for a file without an
    outlier score), from one pass."""
    names = model.answer_outputs(embedding=False)
    runs = [model.outputs(names, images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
    predicted = np.concatenate([run[0].argmax(1) for run in runs])
    if not model.has_outlier_score:
        return predicted, None
    return predicted, np.concatenate([run[1] for run in runs]) > model.outlier_threshold


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return round(float((predicted == truth).mean()), 4)


def share(flagged: np.ndarray | None) -> float | None:
    return None if flagged is None else round(float(flagged.mean()), 4)


def measure(
    model: LoadedModel,
    images: np.ndarray,
    truth: np.ndarray,
    *,
    count: int = DEFAULT_IMAGES,
    photos: int = DEFAULT_PHOTOS,
    seed: int = 0,
    log: Callable[[str], None] = lambda line: None,
) -> dict:
    """The robustness table of `model` on a stratified, seeded subset of the test images."""
    if images.shape[1:3] != model.input_size:
        raise DataError(f"test images are {images.shape[1]}x{images.shape[2]}, the model takes {model.input_size}")
    chosen = stratified_subset(truth, count, seed)
    images, truth = images[chosen], truth[chosen]
    started = time.perf_counter()
    clean_predicted, clean_flagged = predict(model, images)
    clean = accuracy(clean_predicted, truth)
    log(f"clean: {clean:.2%} on {len(images)} images")
    table: dict = {
        "version": model.version,
        "test_images": len(images),
        "seed": seed,
        "data": fingerprint(images, truth),
        "clean_top1": clean,
        "mean_corrupted_top1": None,
        # The share the outlier flag calls none of the ten (a file with an outlier score): a blurred cat is a cat.
        "clean_flagged": share(clean_flagged),
        "corruptions": {},
        "upload": {},
    }
    for corruption in CORRUPTIONS:
        levels = range(len(corruption.levels))
        runs = [predict(model, corrupt(images, corruption.name, level, seed)) for level in levels]
        scores = [accuracy(predicted, truth) for predicted, _ in runs]
        table["corruptions"][corruption.name] = {
            "parameter": corruption.parameter,
            "levels": list(corruption.levels),
            "top1": scores,
            "mean_top1": round(float(np.mean(scores)), 4),
            "flagged": [share(flagged) for _, flagged in runs],
        }
        log(f"{corruption.name}: {' '.join(f'{s:.1%}' for s in scores)} ({time.perf_counter() - started:.0f} s)")
    cells = [score for row in table["corruptions"].values() for score in row["top1"]]
    table["mean_corrupted_top1"] = round(float(np.mean(cells)), 4)

    for size in PHOTO_SIZES:
        # The 640x480 photos are cheap enough for every image; the 12-MP ones use a stratified part.
        part = np.arange(len(images)) if size == PHOTO_SIZES[0] else stratified_subset(truth, photos, seed)
        seen = uploaded(images[part], size, input_size=model.input_size, policy=model.resize)
        table["upload"][photo_name(size)] = {
            "images": len(part),
            "top1": accuracy(predict(model, seen)[0], truth[part]),
            "clean_top1": accuracy(clean_predicted[part], truth[part]),
        }
        log(f"{photo_name(size)}: {table['upload'][photo_name(size)]} ({time.perf_counter() - started:.0f} s)")
    return table


def worst(table: dict, count: int = 3) -> list[tuple[str, float, float]]:
    """The `count` corruption cells the model does worst on: (corruption, level, top-1)."""
    cells = [
        (name, level, score)
        for name, row in table["corruptions"].items()
        for level, score in zip(row["levels"], row["top1"], strict=True)
    ]
    return sorted(cells, key=lambda cell: cell[2])[:count]


def comparable(candidate: dict, baseline: dict) -> str | None:
    """None when two tables measured the same images under the same corruptions; otherwise why not."""
    if candidate.get("data") != baseline.get("data") or candidate.get("seed") != baseline.get("seed"):
        return "it was measured on other test images (or another seed)"
    levels = {name: row.get("levels") for name, row in candidate["corruptions"].items()}
    if levels != {name: row.get("levels") for name, row in baseline.get("corruptions", {}).items()}:
        return "it was measured under other corruptions or levels"
    return None


def gate(candidate: dict, baseline_card: dict | None, max_drop_pp: float = MAX_DROP_PP) -> dict:
    """Compare the candidate's mean corrupted top-1 with the baseline card's robustness table. Refused (passed
    False) when it is more than max_drop_pp below. A baseline without a table, or one measured on other images
    or corruptions, cannot be compared: the result says so (compared False) and does not refuse."""
    baseline = (baseline_card or {}).get("robustness")
    result: dict = {"max_drop_pp": max_drop_pp, "baseline_version": (baseline_card or {}).get("version")}
    reason = "the baseline card has no robustness table" if not baseline else comparable(candidate, baseline)
    if reason is not None:
        return result | {"compared": False, "passed": True, "reason": f"not compared: {reason}"}
    drop_pp = round((baseline["mean_corrupted_top1"] - candidate["mean_corrupted_top1"]) * 100, 2)
    return result | {
        "compared": True,
        "passed": drop_pp <= max_drop_pp,
        "baseline_mean_corrupted_top1": baseline["mean_corrupted_top1"],
        "drop_pp": drop_pp,
    }


def gate_line(result: dict, candidate: dict) -> str:
    mean = f"mean corrupted top-1 {candidate['mean_corrupted_top1']:.2%}"
    if not result["compared"]:
        return f"robustness gate: {mean}; {result['reason']}"
    verdict = "passed" if result["passed"] else "REFUSED"
    return (
        f"robustness gate {verdict}: {mean} vs {result['baseline_mean_corrupted_top1']:.2%} for the shipped model "
        f"{result['baseline_version']} (drop {result['drop_pp']:.2f} pp, at most {result['max_drop_pp']:.1f} pp)"
    )


def default_data() -> Path:
    """The prepared test split when there is one (fast), else the raw tarball (after `dvc pull data.dvc` only)."""
    return PROCESSED_DIR if (PROCESSED_DIR / "test_images.npy").is_file() else RAW_DIR / "cifar10-test.tar.gz"


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.robustness", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an ONNX file that follows the model-file contract")
    parser.add_argument("--data", type=Path, default=None, help="prepared data folder or test tarball")
    parser.add_argument("--images", type=_count, default=DEFAULT_IMAGES, help="test images (stratified subset)")
    parser.add_argument("--photos", type=_count, default=DEFAULT_PHOTOS, help="of them, sent as 4000x3000 photos")
    parser.add_argument("--seed", type=int, default=0, help="picks the subset and seeds the corruptions")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: all cores)")
    parser.add_argument("--out", type=Path, help="write the table (JSON) here")
    parser.add_argument("--baseline", type=Path, help="gate against this model card's robustness table")
    parser.add_argument("--docs", type=Path, help="rewrite the table between the markers in this Markdown file")
    return parser


def evaluate(
    model_path: Path,
    *,
    data: Path | None = None,
    baseline: Path | None = None,
    images: int = DEFAULT_IMAGES,
    photos: int = DEFAULT_PHOTOS,
    seed: int = 0,
    threads: int = 0,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict:
    """The robustness table of the model file, with its `gate` against the `baseline` model card when one is given.
    Raises ModelLoadError, DataError, OSError or ValueError when it cannot measure."""
    reference = json.loads(baseline.read_text()) if baseline else None
    model = load_model(model_path, threads=threads)
    test_images, truth = load_test_set(data or default_data(), model.labels)
    started = time.perf_counter()
    table = measure(model, test_images, truth, count=images, photos=photos, seed=seed, log=log)
    log(f"measured in {time.perf_counter() - started:.0f} s")
    return table | ({"gate": gate(table, reference)} if reference is not None else {})


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.docs:
            robustness_report.check_markers(args.docs)  # say so now, not after minutes of measuring
        table = evaluate(
            args.model, data=args.data, baseline=args.baseline, images=args.images, photos=args.photos,
            seed=args.seed, threads=args.threads,
        )  # fmt: skip
    except (ModelLoadError, DataError, OSError, ValueError) as exc:
        print(f"evaluation.robustness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = robustness_report.markdown(table, worst(table))
    return conclude(table, text, gate_line, docs=args.docs, update_docs=robustness_report.update_docs, out=args.out)


def conclude(
    table: dict,
    text: str,
    gate_line: Callable[[dict, dict], str],
    *,
    docs: Path | None,
    update_docs: Callable[[Path, str], None],
    out: Path | None,
) -> int:
    """What a benchmark command does once it has measured (this one and evaluation.outliers): print the table's
    Markdown `text` (and rewrite it in `docs`), say the gate's verdict, write the table to `out`; the exit code."""
    print(text)
    if docs:
        update_docs(docs, text)
    result = table.get("gate")
    if result:
        print(gate_line(result, table))
    if out:
        out.write_text(json.dumps(table, indent=2) + "\n")
    return EXIT_REFUSED if result and not result["passed"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

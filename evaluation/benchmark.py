"""How well the drift check detects: false alarms on clean traffic and detection of shifted traffic, per window size.

    python -m evaluation.benchmark          # -> benchmarks/drift-detection.json and .md (about 2-3 minutes, 2 cores)

Traffic: CIFAR-10 test images the reference has not seen (the odd half of the test set; the shipped reference is
built from the even half, export/drift_reference.py), as the JPEG bytes of data/raw, sent through the service's own
decode + resize (serve.imaging) and the shipped model (onnxruntime, in process), then written as log lines and read
back (contract.prediction_log), so rounding and parsing are the real ones. Shifted traffic: the same images
darkened x0.5, grayscale, blurred, re-encoded as heavy JPEG (quality 8); and pictures unlike CIFAR-10: crops of
large photos (matplotlib's sample photos) and screenshots of text (rendered with Pillow). Each kind is a pool of
images; every window is a random sample of the pool without repeats (windows of one pool overlap).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from contract import input_summary
from contract import prediction_log as plog
from contract.cpu import add_int8_entries
from contract.model_file import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAME, RESIZE_CENTER_CROP
from contract.paths import PROJECT_ROOT, RAW_DIR, SHIPPED_DIR
from monitor import drift
from monitor.reference import load
from serve.imaging import to_model_input

TEST_TAR = RAW_DIR / "cifar10-test.tar.gz"
MODEL = SHIPPED_DIR / "model.int8.onnx"
OUT = PROJECT_ROOT / "benchmarks" / "drift-detection"
SIZES = (10, 25, 50, 100, 200, 400)
TARGET_SIZE = 400  # the window the issue sets the targets for
MAX_FALSE_ALARMS, MIN_DETECTION = 0.05, 0.95
MAX_PIXELS = 50_000_000  # serve.settings' default
# Words for the text screenshots.
WORDS = (
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "model", "drift", "report", "error"),
    *("invoice", "total", "meeting", "notes", "monday", "deploy", "service", "latency", "request", "http"),
    *("json", "python", "window", "reference", "label", "score", "feedback"),
)


# ---------------------------------------------------------------------------------------------------------------
# Traffic


def odd_half_jpegs() -> list[bytes]:
    """The test JPEGs in data/processed order (sorted by class, then name), odd indices only."""
    if not TEST_TAR.is_file():
        raise SystemExit(f"{TEST_TAR} is missing: run `dvc pull data.dvc` (or `make data`)")
    with tarfile.open(TEST_TAR) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile()),
            key=lambda m: (Path(m.name).parts[1], Path(m.name).parts[2]),
        )
        return [tar.extractfile(m).read() for m in members[1::2]]


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def darkened(data: bytes) -> bytes:
    return _jpeg(Image.eval(_open(data), lambda v: v // 2))


def grayscale(data: bytes) -> bytes:
    return _jpeg(ImageOps.grayscale(_open(data)))


def blurred(data: bytes) -> bytes:
    return _jpeg(_open(data).filter(ImageFilter.GaussianBlur(1.0)))


def heavy_jpeg(data: bytes) -> bytes:
    return _jpeg(_open(data), quality=8)


def photo_crops(count: int, rng: np.random.Generator) -> list[bytes]:
    """Square-ish crops, 64 px to the whole picture, of the large photos matplotlib ships as sample data."""
    import matplotlib.cbook

    photos = [Image.open(matplotlib.cbook.get_sample_data(name)).convert("RGB") for name in ("grace_hopper.jpg",)]
    crops = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        side = int(rng.integers(64, min(photo.size) + 1))
        width = min(photo.width, int(side * rng.uniform(0.8, 1.25)))
        left = int(rng.integers(0, photo.width - width + 1))
        top = int(rng.integers(0, photo.height - side + 1))
        crop = photo.crop((left, top, left + width, top + side))
        crops.append(_jpeg(ImageOps.mirror(crop) if rng.random() < 0.5 else crop))
    return crops


def text_screenshots(count: int, rng: np.random.Generator) -> list[bytes]:
    """Screenshots of text: light or dark theme, a few lines of words, PNG as a screenshot tool writes it."""
    shots = []
    for _ in range(count):
        width, height = int(rng.integers(320, 900)), int(rng.integers(200, 700))
        dark = rng.random() < 0.3
        background = tuple(int(v) for v in (rng.integers(0, 40, 3) if dark else rng.integers(225, 256, 3)))
        ink = tuple(int(v) for v in (rng.integers(200, 256, 3) if dark else rng.integers(0, 60, 3)))
        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        size = int(rng.integers(12, 32))
        font = ImageFont.load_default(size=size)
        for y in range(int(size * 0.8), height - size, int(size * 1.5)):
            words = " ".join(rng.choice(WORDS, int(rng.integers(3, 14))))
            draw.text((int(rng.integers(8, 40)), y), words, fill=ink, font=font)
        shots.append(_png(image))
    return shots


# ---------------------------------------------------------------------------------------------------------------
# Through the service's path to log lines


def model_session(path: Path = MODEL) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    add_int8_entries(options)  # int8 files computed exactly on this CPU (contract/cpu.py)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if EMBEDDING_NAME not in {output.name for output in session.get_outputs()}:
        raise SystemExit(f"{path} has no {EMBEDDING_NAME!r} output: run `python -m export.embedding {path}`")
    return session


def log_lines(uploads: list[bytes], session: ort.InferenceSession, labels: list[str], meta: dict) -> list[dict]:
    """Uploads -> the parsed log lines the service would write for them."""
    images = np.stack(
        [to_model_input(data, size=(32, 32), policy=RESIZE_CENTER_CROP, max_pixels=MAX_PIXELS) for data in uploads]
    )
    lines = []
    for start in range(0, len(images), 250):
        batch = images[start : start + 250]
        logits, embedding = session.run([OUTPUT_NAME, EMBEDDING_NAME], {INPUT_NAME: batch})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        for i, (summary, compact) in enumerate(
            zip(input_summary.summarize_input(batch), input_summary.embedding_for_log(embedding), strict=True)
        ):
            order = np.argsort(-probabilities[i])[:3]
            line = plog.build_prediction(
                request_id=plog.new_request_id(),
                model_name=meta["name"],
                model_version=meta["version"],
                label=labels[order[0]],
                score=float(probabilities[i, order[0]]),
                top_k=[{"label": labels[j], "score": float(probabilities[i, j])} for j in order],
                latency_ms=0.0,
                upload={"format": None, "width": 32, "height": 32, "bytes": len(uploads[start + i])},
                summary=summary,
                embedding=compact,
            )
            lines.append(plog.parse_line(plog.dumps(line)))
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Windows


def rates(pool: list[dict], reference, sizes, windows: int, rng: np.random.Generator) -> dict[int, dict]:
    """For each window size: the share of `windows` random windows flagged, and which tests flagged them."""
    data = drift.arrays(pool, reference)
    result = {}
    for size in sizes:
        flagged, by_test = 0, {}
        for w in range(windows):
            pick = rng.choice(len(pool), size, replace=False)
            window = {key: (value[pick] if value is not None else None) for key, value in data.items()}
            tests, _ = drift.compare(window, reference, seed=w)
            flagged += any(test["drift"] for test in tests)
            for test in tests:
                by_test[test["name"]] = by_test.get(test["name"], 0) + test["drift"]
        result[size] = {
            "windows": windows,
            "flagged": flagged,
            "rate": flagged / windows,
            "flagged_by_test": {name: count for name, count in by_test.items() if count},
        }
    return result


def run(pool_size: int, clean_pool: int, windows: int, clean_windows: int, sizes, seed: int) -> dict:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    reference = load()
    session = model_session()
    meta = {"name": reference.model.get("name"), "version": reference.version}
    jpegs = odd_half_jpegs()
    clean_pick = rng.choice(len(jpegs), clean_pool, replace=False)
    shift_pick = rng.choice(len(jpegs), pool_size, replace=False)
    kinds = {
        "clean": [jpegs[i] for i in clean_pick],
        "darkened_x0.5": [darkened(jpegs[i]) for i in shift_pick],
        "grayscale": [grayscale(jpegs[i]) for i in shift_pick],
        "blur_gaussian_r1": [blurred(jpegs[i]) for i in shift_pick],
        "jpeg_quality_8": [heavy_jpeg(jpegs[i]) for i in shift_pick],
        "photo_crops": photo_crops(pool_size, rng),
        "text_screenshots": text_screenshots(pool_size, rng),
    }
    results = {}
    for kind, uploads in kinds.items():
        pool = log_lines(uploads, session, reference.labels, meta)
        count = clean_windows if kind == "clean" else windows
        results[kind] = {"pool": len(pool), "sizes": rates(pool, reference, sizes, count, rng)}
        print(f"{kind}: " + ", ".join(f"{s}: {r['rate']:.0%}" for s, r in results[kind]["sizes"].items()))
    shifted = [kind for kind in kinds if kind != "clean"]
    smallest = {
        kind: next((s for s in sizes if results[kind]["sizes"][s]["rate"] >= MIN_DETECTION), None) for kind in shifted
    }
    passing = [
        s
        for s in sizes
        if results["clean"]["sizes"][s]["rate"] <= MAX_FALSE_ALARMS
        and all(results[k]["sizes"][s]["rate"] >= MIN_DETECTION for k in shifted)
    ]
    at_target = {kind: results[kind]["sizes"].get(TARGET_SIZE, {}).get("rate") for kind in kinds}
    return {
        "description": __doc__.strip().splitlines()[0],
        "model": meta,
        "reference": {"path": str(reference.path.relative_to(PROJECT_ROOT)), "images": reference.images},
        "method": {
            "alpha": drift.ALPHA,
            "correction": "holm",
            "permutations": drift.PERMUTATIONS,
            "tests": [*input_summary.FEATURES, "confidence", "predicted_label", "embedding"],
        },
        "targets": {"window": TARGET_SIZE, "max_false_alarms": MAX_FALSE_ALARMS, "min_detection": MIN_DETECTION},
        "seed": seed,
        "kinds": results,
        "at_target_window": at_target,
        "passed_at_target_window": TARGET_SIZE in passing,
        "smallest_window_per_kind": smallest,
        "smallest_window_all": passing[0] if passing else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(result: dict) -> str:
    sizes = list(next(iter(result["kinds"].values()))["sizes"])
    head = "| traffic | pool | " + " | ".join(f"window {s}" for s in sizes) + " |"
    rows = [head, "|" + "---|" * (len(sizes) + 2)]
    for kind, data in result["kinds"].items():
        cells = [
            f"{data['sizes'][s]['rate']:.0%} ({data['sizes'][s]['flagged']}/{data['sizes'][s]['windows']})"
            for s in sizes
        ]
        rows.append(f"| {kind} | {data['pool']} | " + " | ".join(cells) + " |")
    smallest = ", ".join(f"{kind}: {size}" for kind, size in result["smallest_window_per_kind"].items())
    target = result["targets"]
    return f"""# Drift detection benchmark

Generated by `python -m evaluation.benchmark` ({result["seconds"]} s); the numbers are in
[drift-detection.json](drift-detection.json), the method in [docs/monitoring.md](../docs/monitoring.md).
Model {result["model"]["name"]} {result["model"]["version"]}, reference `{result["reference"]["path"]}`
({result["reference"]["images"]} test images, the even half), traffic from the odd half of the test set through the
service's decode + resize. Family-wise alpha {result["method"]["alpha"]} (Holm) over
{len(result["method"]["tests"])} tests.

Share of windows flagged as drift (clean row: false alarms, target at most {target["max_false_alarms"]:.0%};
others: detection, target at least {target["min_detection"]:.0%}, at window {target["window"]}):

{chr(10).join(rows)}

Targets met at window {target["window"]}: **{"yes" if result["passed_at_target_window"] else "no"}**.
Smallest window reaching {target["min_detection"]:.0%} detection: {smallest}.
Smallest window meeting every target at once: **{result["smallest_window_all"]}**.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output path without suffix (.json and .md)")
    parser.add_argument("--pool", type=int, default=800, help="images per shifted kind")
    parser.add_argument("--clean-pool", type=int, default=2000, help="clean test images")
    parser.add_argument("--windows", type=int, default=20, help="windows per shifted kind and size")
    parser.add_argument("--clean-windows", type=int, default=40, help="clean windows per size")
    parser.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")), default=SIZES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(args.pool, args.clean_pool, args.windows, args.clean_windows, args.sizes, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {args.out.with_suffix('.json')} and .md ({result['seconds']} s)")
    return 0 if result["passed_at_target_window"] else 1


if __name__ == "__main__":
    sys.exit(main())

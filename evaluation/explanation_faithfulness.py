"""Where the model looked, measured: how faithful the class activation map the service answers with is, against
occlusion, and what each costs. Torch-free, on the served file, through the service's own model code.

    python -m evaluation.explanation_faithfulness shipped/model.int8.onnx [--images 500] [--out table.json]

Faithfulness is deletion: blank the k cells a method calls most important (each 8 x 8 block of the 32 x 32 picture
is one cell of the 4 x 4 map; blanked to the picture's mean colour) and see how far the answer's probability falls,
against blanking k cells at random. A faithful map makes the fall large. Occlusion computes exactly this fall for
one cell at a time, so it is the bar the cheaper map is held to, not a rival on equal terms. Cost: server CPU per
explained request (process time, one picture at a time, as the service does it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from contract.model_file import CAM_NAME
from evaluation.robustness import DataError, default_data, load_test_set, stratified_subset
from serve.model import LoadedModel, ModelLoadError, load_model

DELETE = (1, 2, 4)  # cells blanked, of 16
COST_REPEATS = 100


def probabilities(model: LoadedModel, images: np.ndarray) -> np.ndarray:
    logits = model.run(images).astype(np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def cells(size: int, grid: int) -> list[tuple[slice, slice]]:
    step = size // grid
    return [
        (slice(r * step, (r + 1) * step), slice(c * step, (c + 1) * step)) for r in range(grid) for c in range(grid)
    ]


def blank(image: np.ndarray, chosen: list[tuple[slice, slice]]) -> np.ndarray:
    out = image.copy()
    for rows, columns in chosen:
        out[rows, columns] = image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    return out


def cam_map(model: LoadedModel, image: np.ndarray, label: int) -> np.ndarray:
    (maps,) = model.outputs([CAM_NAME], image[None])
    return maps[0, :, :, label].ravel()


def occlusion_map(model: LoadedModel, image: np.ndarray, label: int, grid: int) -> np.ndarray:
    """The fall of the label's probability when each cell alone is blanked: one batch of grid x grid pictures."""
    parts = cells(image.shape[0], grid)
    batch = np.stack([image] + [blank(image, [part]) for part in parts])
    p = probabilities(model, batch)[:, label]
    return p[0] - p[1:]


def measure(model: LoadedModel, images: np.ndarray, seed: int = 0) -> dict:
    if not model.has_class_activation:
        raise DataError(f"{model.path}: the model file has no class activation map (re-export it)")
    rng = np.random.default_rng(seed)
    (probe,) = model.outputs([CAM_NAME], images[:1])
    grid = probe.shape[1]
    parts = cells(images.shape[1], grid)
    falls: dict[str, dict[int, list[float]]] = {m: {k: [] for k in DELETE} for m in ("cam", "occlusion", "random")}
    for image in images:
        p = probabilities(model, image[None])[0]
        label = int(p.argmax())
        ranked = {
            "cam": np.argsort(-cam_map(model, image, label)),
            "occlusion": np.argsort(-occlusion_map(model, image, label, grid)),
            "random": rng.permutation(len(parts)),
        }
        for method, order in ranked.items():
            blanked = np.stack([blank(image, [parts[i] for i in order[:k]]) for k in DELETE])
            after = probabilities(model, blanked)[:, label]
            for k, value in zip(DELETE, after, strict=True):
                falls[method][k].append(float(p[label] - value))
    image = images[0]
    cost = {}
    runs = {"cam": lambda: cam_map(model, image, 0), "occlusion": lambda: occlusion_map(model, image, 0, grid)}
    for method, run in runs.items():
        run()
        started = time.process_time()
        for _ in range(COST_REPEATS):
            run()
        cost[method] = round((time.process_time() - started) / COST_REPEATS * 1000, 2)
    return {
        "version": model.version,
        "images": len(images),
        "grid": grid,
        "fall_of_the_answer_probability": {
            method: {str(k): round(float(np.mean(values)), 4) for k, values in by_k.items()}
            for method, by_k in falls.items()
        },
        "cpu_ms_per_explanation": cost,
    }


def markdown(table: dict) -> str:
    falls, cost = table["fall_of_the_answer_probability"], table["cpu_ms_per_explanation"]
    lines = [
        f"Model `{table['version']}`, {table['images']} CIFAR-10 test pictures, {table['grid']} x {table['grid']} "
        "cells. "
        "Mean fall of the answer's probability when the k most important cells (by each method) are blanked:",
        "",
        "| method | k = " + " | k = ".join(str(k) for k in DELETE) + " | server CPU per explanation |",
        "|---|" + "---:|" * (len(DELETE) + 1),
    ]
    for method, name in (("cam", "class activation map (served)"), ("occlusion", "occlusion"), ("random", "random")):
        spent = f"{cost[method]:.2f} ms" if method in cost else ""
        lines.append(f"| {name} | " + " | ".join(f"{falls[method][str(k)]:.3f}" for k in DELETE) + f" | {spent} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.explanation_faithfulness", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", type=Path, help="an ONNX file with a class activation map")
    parser.add_argument("--data", type=Path, default=None, help="prepared data folder or test tarball")
    parser.add_argument("--images", type=int, default=500, help="test pictures (stratified)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (the service's default here)")
    parser.add_argument("--out", type=Path, help="write the table (JSON) here")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, threads=args.threads)
        images, truth = load_test_set(args.data or default_data(), model.labels)
        table = measure(model, images[stratified_subset(truth, args.images, seed=0)])
    except (ModelLoadError, DataError, OSError, ValueError) as exc:
        print(f"evaluation.explanation_faithfulness: {exc}", file=sys.stderr)
        return 2
    print(markdown(table))
    if args.out:
        args.out.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

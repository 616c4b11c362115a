"""Synthetic prediction logs and a reference built the way export builds one, without a model: a picture's
"embedding" is its pixels pooled to 8x8, its answer its class with a confidence that falls on dull pictures. Fast,
and independent of the shipped model."""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract import input_summary
from contract import prediction_log as plog
from export.drift_reference import from_arrays
from tests.synthetic import CLASSES, class_image

MODEL = {"name": "synthetic", "version": "v1"}
START = "2025-03-01T12:00:00Z"


def pictures(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, len(CLASSES), count)
    return np.stack([class_image(int(c), rng) for c in classes]), classes


def outputs(images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [N, 10], raw embeddings [N, 192])."""
    pooled = images.reshape(len(images), 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(len(images), -1) / 255.0
    confidence = np.clip(0.35 + 0.9 * input_summary.features(images)[:, 7], 0.11, 0.99)
    probabilities = np.repeat(((1 - confidence) / (len(CLASSES) - 1))[:, None], len(CLASSES), axis=1)
    probabilities[np.arange(len(images)), classes] = confidence
    return probabilities, pooled


def write_reference(path: Path, count: int = 2000, seed: int = 0) -> Path:
    images, classes = pictures(count, seed)
    probabilities, embeddings = outputs(images, classes)
    reference = from_arrays(images, probabilities, input_summary.compact_embedding(embeddings), CLASSES, MODEL)
    path.write_text(json.dumps(reference))
    return path


def thumbnail(image: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def time_at(seconds: float) -> str:
    moment = plog.parse_time(START) + timedelta(seconds=seconds)
    return moment.isoformat().replace("+00:00", "Z")


def prediction_lines(images: np.ndarray, classes: np.ndarray, *, start: float = 0, version: str = "v1") -> list[dict]:
    """The lines the service would log for these pictures, one a second from START + start."""
    probabilities, embeddings = outputs(images, classes)
    lines = []
    rows = zip(
        input_summary.summarize_input(images), input_summary.embedding_for_log(embeddings), probabilities, strict=True
    )
    for i, (summary, embedding, probs) in enumerate(rows):
        order = np.argsort(-probs)[:3]
        lines.append(
            plog.build_prediction(
                request_id=f"req-{int(start) + i:05d}",
                model_name=MODEL["name"],
                model_version=version,
                label=CLASSES[order[0]],
                score=float(probs[order[0]]),
                top_k=[{"label": CLASSES[j], "score": float(probs[j])} for j in order],
                latency_ms=3.5,
                upload={"format": "JPEG", "width": 32, "height": 32, "bytes": 900},
                summary=summary,
                embedding=embedding,
                time=time_at(start + i),
            )
        )
    return lines


def write_log(path: Path, lines: list, extra: list[str] = ()) -> Path:
    path.write_text(
        "".join(plog.dumps(line) + "\n" if isinstance(line, dict) else line for line in lines) + "".join(extra)
    )
    return path


@pytest.fixture(scope="session")
def reference_file(tmp_path_factory) -> Path:
    return write_reference(tmp_path_factory.mktemp("reference") / "reference.json")


@pytest.fixture(scope="session")
def clean_pictures():
    return pictures(400, seed=7)


@pytest.fixture
def clean_log(tmp_path, clean_pictures) -> Path:
    return write_log(tmp_path / "clean.jsonl", prediction_lines(*clean_pictures))


@pytest.fixture
def dark_log(tmp_path, clean_pictures) -> Path:
    images, classes = clean_pictures
    return write_log(tmp_path / "dark.jsonl", prediction_lines(images // 2, classes))

"""The reference statistics (reference.json, written by `python -m export.drift_reference`), loaded for the drift
tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract import input_summary
from contract import prediction_log as plog
from contract.paths import SHIPPED_DIR
from monitor.stats import gaussian_kernel, median_bandwidth

DEFAULT_REFERENCE = SHIPPED_DIR / input_summary.REFERENCE_FILE


class ReferenceError(Exception):
    """The reference file is missing or not one this monitor reads (exit code 2)."""


@dataclass(frozen=True)
class Reference:
    path: Path
    model: dict[str, Any]
    labels: list[str]
    images: int
    features: np.ndarray  # [rows, len(FEATURES)]
    scores: np.ndarray  # [rows]
    label_counts: np.ndarray  # [classes], over every reference image
    embeddings: np.ndarray | None  # [rows, EMBEDDING_DIMS]
    bandwidth: float | None  # the Gaussian kernel's scale for the MMD test, from the reference embeddings
    kernel: np.ndarray | None  # the reference embeddings' own kernel block, the same for every window
    # The shares of "not sure" and outlier answers on the reference images (None: a reference from before them).
    shares: dict[str, float | None] = field(default_factory=lambda: {"not_sure": None, "outlier": None})

    @property
    def version(self) -> str | None:
        return self.model.get("version")


def load(path: Path = DEFAULT_REFERENCE) -> Reference:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ReferenceError(f"{path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ReferenceError(f"{path}: not JSON") from None
    try:
        if raw.get("reference_version") != input_summary.REFERENCE_VERSION:
            raise ReferenceError(
                f"{path}: reference_version {raw.get('reference_version')!r} is not {input_summary.REFERENCE_VERSION}"
            )
        if list(raw["features"]["names"]) != list(input_summary.FEATURES):
            raise ReferenceError(
                f"{path}: its features {raw['features']['names']} are not the log's {list(input_summary.FEATURES)}"
            )
        embedding = raw.get("embedding")
        embeddings = input_summary.unpack_array(embedding["sample"]) if embedding else None
        bandwidth = median_bandwidth(embeddings) if embeddings is not None else None
        return Reference(
            path=Path(path),
            model=raw.get("model") or {},
            labels=list(raw["labels"]),
            images=int(raw["source"]["images"]),
            features=input_summary.round_like_log(
                input_summary.unpack_array(raw["features"]["sample"]), input_summary.FEATURE_DIGITS
            ),
            scores=input_summary.round_like_log(input_summary.unpack_array(raw["score"]), plog.SCORE_DIGITS),
            label_counts=np.asarray(raw["label_counts"], dtype=np.float64),
            embeddings=embeddings,
            bandwidth=bandwidth,
            kernel=gaussian_kernel(embeddings, embeddings, bandwidth) if embeddings is not None else None,
            shares={"not_sure": None, "outlier": None} | (raw.get("shares") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceError(f"{path}: not a reference file ({type(exc).__name__}: {exc})") from None

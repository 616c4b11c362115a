"""Logits -> probabilities -> the answer the client sees."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serve.schemas import Classification, ModelId, Score


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable: subtracting the max keeps exp() from overflowing on large logits."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def answer(
    logits: np.ndarray,
    labels: Sequence[str],
    k: int,
    model: ModelId,
    *,
    outlier_score: float | None = None,
    outlier_threshold: float | None = None,
) -> Classification:
    """The best guess and the top k (calibrated probabilities when the file is calibrated), and whether the picture
    looks like none of the classes (`outlier`: None when the file has no outlier score)."""
    probs = softmax(logits)
    # Stable sort so equal scores keep label order, which makes answers reproducible.
    order = np.argsort(-probs, kind="stable")[: min(k, len(labels))]
    top = [Score(labels[i], float(probs[i])) for i in order]
    known = outlier_score is not None and outlier_threshold is not None
    return Classification(
        label=top[0].label,
        score=top[0].score,
        top_k=top,
        outlier=bool(outlier_score > outlier_threshold) if known else None,
        outlier_score=round(float(outlier_score), 4) if known else None,
        model=model,
    )

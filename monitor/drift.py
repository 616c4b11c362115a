"""The drift check: a window of the prediction log against the model's reference statistics.

Tests (each a p-value; docs/monitoring.md explains the choice):
- each input feature of contract.prediction_log.FEATURES: two-sample Kolmogorov-Smirnov;
- the top score (confidence): Kolmogorov-Smirnov;
- the predicted labels: chi-square on the 2 x classes table of counts;
- the compact embedding: MMD with a Gaussian kernel, p-value from its permutation null.
Holm's correction keeps the chance that clean traffic raises any flag at `alpha` (family-wise), so `drift` is true
when at least one test rejects after the correction. The model-dependent tests (score, labels, embedding) use only
lines of the reference's model version; the input features do not depend on the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from contract import input_summary
from contract import prediction_log as plog
from monitor import logs
from monitor.reference import Reference
from monitor.stats import chi2_counts, holm, ks_2samp, mmd_test

ALPHA = 0.01  # family-wise false-alarm rate per check: a daily job raises a false alarm about 4 times a year
PERMUTATIONS = 100  # enough to fit the null's mean and variance (the benchmark's false-alarm rate is measured)
MIN_EMBEDDINGS = 20  # fewer and the MMD test is skipped: its null is too coarse
OVER_TIME_BINS = 24  # the outlier share over time: the window cut into this many equal spans of time


@dataclass
class Window:
    predictions: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    first: str | None
    last: str | None


def select(
    read: logs.LogRead, *, size: int | None = None, since: datetime | None = None, until: datetime | None = None
) -> Window:
    """The predictions in [since, until) (lines without a time only when neither is given), the last `size` of them
    by time; the feedback given from the window's first prediction on (and before `until`)."""

    def inside(line: dict[str, Any]) -> bool:
        time = logs.when(line)
        if time is None:
            return since is None and until is None
        return (since is None or time >= since) and (until is None or time < until)

    predictions = logs.chronological([line for line in read.predictions if inside(line)])
    if size is not None:
        predictions = predictions[-size:] if size > 0 else []
    times = [t for t in (logs.when(line) for line in predictions) if t is not None]
    start = min(times) if times else since
    feedback = [
        line
        for line in read.feedback
        if inside(line) and (start is None or logs.when(line) is None or logs.when(line) >= start)
    ]
    return Window(
        predictions=predictions,
        feedback=feedback,
        first=_iso(min(times)) if times else None,
        last=_iso(max(times)) if times else None,
    )


def _iso(time: datetime) -> str:
    return time.isoformat().replace("+00:00", "Z")


def same_model(line: dict[str, Any], reference: Reference) -> bool:
    """The line was answered by the reference's model (any line, for a reference without a version)."""
    return reference.version is None or line["model"]["version"] == reference.version


def arrays(predictions: list[dict[str, Any]], reference: Reference) -> dict[str, np.ndarray | None]:
    """The window as arrays: every line's features; score, label index and embedding of the reference's model."""
    features = np.array(
        [[line["input"][name] for name in input_summary.FEATURES] for line in predictions], dtype=np.float64
    )
    same = [line for line in predictions if same_model(line, reference)]
    index = {label: i for i, label in enumerate(reference.labels)}
    labels = np.array([index.get(line["label"], -1) for line in same], dtype=np.int64)
    with_embedding = [line["embedding"] for line in same if line["embedding"] is not None]
    width = reference.embeddings.shape[1] if reference.embeddings is not None else None
    embeddings = np.array([e for e in with_embedding if len(e) == width], dtype=np.float64) if width else None
    return {
        "features": features.reshape(len(predictions), len(input_summary.FEATURES)),
        "scores": np.array([line["score"] for line in same], dtype=np.float64),
        "labels": labels,
        "embeddings": embeddings if embeddings is not None and len(embeddings) else None,
    }


def outlier_share(predictions: list[dict[str, Any]], bins: int = OVER_TIME_BINS) -> dict[str, Any]:
    """The share of answers flagged as none of the ten: over the window, and over time (the window's span cut into
    `bins` equal parts; empty parts left out). Lines of a model without an outlier score do not count."""
    timed = [(logs.when(line), line["outlier"]) for line in predictions if line["outlier"] is not None]
    flags = [flag for _, flag in timed]
    result: dict[str, Any] = {"answers": len(flags), "share": float(np.mean(flags)) if flags else None, "over_time": []}
    times = [time.timestamp() for time, _ in timed if time is not None]
    if not times:
        return result
    edges = np.linspace(min(times), max(times), bins + 1)
    part = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, bins - 1)
    flagged = np.array([flag for time, flag in timed if time is not None], dtype=float)
    for k in range(bins):
        inside = part == k
        if inside.any():
            start = datetime.fromtimestamp(edges[k], tz=UTC)
            result["over_time"].append(
                {"start": _iso(start), "answers": int(inside.sum()), "share": float(flagged[inside].mean())}
            )
    return result


def compare(
    window: dict[str, np.ndarray | None],
    reference: Reference,
    *,
    alpha: float = ALPHA,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every test that the window has data for. Returns (tests as drift.json lists them, extras for plots)."""
    tests: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    features = window["features"]
    if len(features):
        for i, name in enumerate(input_summary.FEATURES):
            statistic, p = ks_2samp(reference.features[:, i], features[:, i])
            tests.append(
                _test(name, "ks", statistic, p, np.median(reference.features[:, i]), np.median(features[:, i]))
            )
    scores = window["scores"]
    if len(scores):
        statistic, p = ks_2samp(reference.scores, scores)
        tests.append(_test("confidence", "ks", statistic, p, np.median(reference.scores), np.median(scores)))
        extras["not_sure_share"] = float(np.mean(scores < plog.NOT_SURE_BELOW))
        labels = window["labels"]
        known = labels[labels >= 0]
        counts = np.bincount(known, minlength=len(reference.labels)).astype(np.float64)
        statistic, p, dof = chi2_counts(reference.label_counts, counts)
        test = _test("predicted_label", "chi2", statistic, p)
        test["dof"] = dof
        test["unknown_labels"] = int(np.sum(labels < 0))
        tests.append(test)
        extras["label_counts"] = counts
    embeddings = window["embeddings"]
    if embeddings is not None and reference.embeddings is not None and len(embeddings) >= MIN_EMBEDDINGS:
        result = mmd_test(
            reference.embeddings,
            embeddings,
            reference.bandwidth,
            permutations=permutations,
            seed=seed,
            reference_kernel=reference.kernel,
        )
        test = _test("embedding", "mmd", result["statistic"], result["p_value"])
        test |= {
            "permutation_p": result["permutation_p"],
            "permutations": permutations,
            "null_mean": result["null_mean"],
            "null_std": result["null_std"],
            "bandwidth": reference.bandwidth,
            "embeddings": len(embeddings),
        }
        tests.append(test)
        extras["mmd_null"] = result["null"]
    rejected, adjusted = holm([test["p_value"] for test in tests], alpha)
    for test, drift, p in zip(tests, rejected, adjusted, strict=True):
        test["p_adjusted"] = p
        test["drift"] = drift
    return tests, extras


def _test(name: str, kind: str, statistic: float, p: float, reference_median=None, window_median=None) -> dict:
    test = {"name": name, "test": kind, "statistic": float(statistic), "p_value": float(p)}
    if reference_median is not None:
        test |= {"reference_median": float(reference_median), "window_median": float(window_median)}
    return test


def feedback_summary(feedback: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracy people report: one answer per request (the last), right / (right + wrong + none of these)."""
    latest, replaced = logs.latest_feedback(feedback)
    verdicts = [line["verdict"] for line in latest.values()]
    counts = {verdict: verdicts.count(verdict) for verdict in plog.VERDICTS}
    confusions: dict[str, int] = {}
    for line in latest.values():
        if line["verdict"] != plog.VERDICT_RIGHT and line["predicted"]:
            pair = f"{line['predicted']} -> {line['label']}"
            confusions[pair] = confusions.get(pair, 0) + 1
    return {
        "requests": len(latest),
        "replaced": replaced,
        **counts,
        "reported_accuracy": counts[plog.VERDICT_RIGHT] / len(latest) if latest else None,
        "with_thumbnail": sum(1 for line in latest.values() if line["thumbnail"]),
        "confusions": dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:10]),
    }


def upload_summary(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """What people send (not tested: the reference is 32x32 JPEGs, real uploads are photos of any size)."""
    formats: dict[str, int] = {}
    for line in predictions:
        name = line["upload"]["format"] or "unknown"
        formats[name] = formats.get(name, 0) + 1
    sizes = [
        (line["upload"]["width"], line["upload"]["height"])
        for line in predictions
        if line["upload"]["width"] and line["upload"]["height"]
    ]
    latency = [line["latency_ms"] for line in predictions if line["latency_ms"] is not None]
    return {
        "formats": formats,
        "median_width": float(np.median([w for w, _ in sizes])) if sizes else None,
        "median_height": float(np.median([h for _, h in sizes])) if sizes else None,
        "median_latency_ms": float(np.median(latency)) if latency else None,
    }


def check(
    read: logs.LogRead,
    reference: Reference,
    *,
    size: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    alpha: float = ALPHA,
    permutations: int = PERMUTATIONS,
) -> tuple[dict[str, Any], Window, dict[str, Any], dict[str, np.ndarray | None]]:
    """The whole check; returns (drift.json's content, the window, plot extras, the window's arrays)."""
    window = select(read, size=size, since=since, until=until)
    data = arrays(window.predictions, reference)
    tests, extras = compare(data, reference, alpha=alpha, permutations=permutations) if window.predictions else ([], {})
    other_version = sum(
        1 for line in window.predictions if reference.version and line["model"]["version"] != reference.version
    )
    result = {
        "drift": any(test["drift"] for test in tests),
        "status": "empty" if not window.predictions else ("drift" if any(t["drift"] for t in tests) else "no_drift"),
        "alpha": alpha,
        "correction": "holm",
        "window": {
            "predictions": len(window.predictions),
            "feedback": len(window.feedback),
            "first": window.first,
            "last": window.last,
            "requested_size": size,
            "since": _iso(since) if since else None,
            "until": _iso(until) if until else None,
        },
        "reference": {
            "path": str(reference.path),
            "model": reference.model,
            "images": reference.images,
        },
        "lines": {
            "read": read.lines,
            "files": read.files,
            "predictions": len(read.predictions),
            "feedback": len(read.feedback),
            "skipped": {reason: read.skipped.get(reason, 0) for reason in (plog.CORRUPT, plog.FOREIGN, plog.MALFORMED)},
            "blank": read.skipped.get(plog.BLANK, 0),
            "other_model_version": other_version,
        },
        "tests": tests,
        "drifted": [test["name"] for test in tests if test["drift"]],
        "not_sure_share": extras.get("not_sure_share"),
        # The reference's shares (the test set) beside the window's: what the alert rules compare with too.
        "reference_shares": reference.shares,
        "outliers": outlier_share([line for line in window.predictions if same_model(line, reference)]),
        "feedback": feedback_summary(window.feedback),
        "uploads": upload_summary(window.predictions),
    }
    if not window.predictions:
        result["message"] = "the window holds no prediction lines: nothing to compare"
    return result, window, extras, data

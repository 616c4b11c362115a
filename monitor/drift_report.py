"""DIR/report.html: the drift check for a person. Self-contained (plots are inline PNGs drawn with matplotlib), so it
can be mailed, attached to a CI run or opened from a bucket without a server."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from typing import Any

import numpy as np

from contract import input_summary
from monitor.reference import Reference

REFERENCE_COLOR, WINDOW_COLOR = "#4c72b0", "#dd8452"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _plots(result: dict[str, Any], reference: Reference, data: dict[str, Any], extras: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {test["name"]: test for test in result["tests"]}
    images = []
    features = data["features"]
    columns = [*input_summary.FEATURES, "confidence"]
    figure, axes = plt.subplots(2, 5, figsize=(16, 6.4), layout="constrained")
    for ax, name in zip(axes.flat, columns, strict=True):
        if name == "confidence":
            ref, win = reference.scores, data["scores"]
        else:
            i = input_summary.FEATURES.index(name)
            ref, win = reference.features[:, i], features[:, i]
        low, high = np.quantile(np.concatenate([ref, win]) if len(win) else ref, [0.005, 0.995])
        bins = np.linspace(low, high if high > low else low + 1e-6, 30)
        ax.hist(np.clip(ref, low, high), bins=bins, density=True, alpha=0.55, color=REFERENCE_COLOR, label="reference")
        if len(win):
            ax.hist(np.clip(win, low, high), bins=bins, density=True, alpha=0.55, color=WINDOW_COLOR, label="window")
        test = by_name.get(name)
        flag = " DRIFT" if test and test["drift"] else ""
        ax.set_title(f"{name}{flag}\np={test['p_value']:.2g}" if test else name, fontsize=10,
                     color="#c0392b" if flag else "black")  # fmt: skip
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle("What the model saw: reference vs window (density)")
    images.append(_png(figure))

    if "label_counts" in extras:
        figure, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
        x = np.arange(len(reference.labels))
        ref = reference.label_counts / max(reference.label_counts.sum(), 1)
        win = extras["label_counts"] / max(extras["label_counts"].sum(), 1)
        ax.bar(x - 0.2, ref, 0.4, color=REFERENCE_COLOR, label="reference")
        ax.bar(x + 0.2, win, 0.4, color=WINDOW_COLOR, label="window")
        ax.set_xticks(x, reference.labels, rotation=30, fontsize=8)
        ax.set_ylabel("share of answers")
        ax.set_title("Predicted labels")
        ax.legend(fontsize=8)
        images.append(_png(figure))

    over_time = result["outliers"]["over_time"]
    if over_time:
        figure, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
        starts = [datetime.fromisoformat(part["start"].replace("Z", "+00:00")) for part in over_time]
        ax.plot(starts, [part["share"] for part in over_time], marker="o", color=WINDOW_COLOR, label="window")
        expected = result["reference_shares"].get("outlier")
        if expected is not None:
            ax.axhline(expected, color=REFERENCE_COLOR, linestyle="--", label="reference (test set)")
        ax.set_ylim(0, 1)
        ax.set_ylabel("share flagged")
        ax.set_title("Answers flagged as none of the ten, over time")
        ax.legend(fontsize=8)
        figure.autofmt_xdate()
        images.append(_png(figure))

    embeddings = data.get("embeddings")
    if embeddings is not None and reference.embeddings is not None:
        figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
        centre = reference.embeddings.mean(axis=0)
        _, _, axes_pc = np.linalg.svd(reference.embeddings - centre, full_matrices=False)
        ref2, win2 = (reference.embeddings - centre) @ axes_pc[:2].T, (embeddings - centre) @ axes_pc[:2].T
        left.scatter(ref2[:, 0], ref2[:, 1], s=4, alpha=0.4, color=REFERENCE_COLOR, label="reference")
        left.scatter(win2[:, 0], win2[:, 1], s=6, alpha=0.6, color=WINDOW_COLOR, label="window")
        left.set_title("Embedding, first two principal axes of the reference")
        left.legend(fontsize=8)
        test = by_name.get("embedding")
        if test and "mmd_null" in extras:
            right.hist(extras["mmd_null"], bins=25, color="#999999", label="permutation null")
            right.axvline(test["statistic"], color="#c0392b", label=f"window (p={test['p_value']:.2g})")
            right.set_title("MMD² of the window vs its permutation null")
            right.legend(fontsize=8)
        images.append(_png(figure))
    return images


def _table(tests: list[dict[str, Any]]) -> str:
    rows = []
    for test in tests:
        medians = f"{test['reference_median']:.4g} → {test['window_median']:.4g}" if "reference_median" in test else ""
        rows.append(
            f"<tr class={'drift' if test['drift'] else 'ok'}><td>{html.escape(test['name'])}</td>"
            f"<td>{test['test']}</td><td>{test['statistic']:.4g}</td><td>{test['p_value']:.3g}</td>"
            f"<td>{test['p_adjusted']:.3g}</td><td>{medians}</td><td>{'drift' if test['drift'] else '—'}</td></tr>"
        )
    names = ("test", "kind", "statistic", "p", "p (Holm)", "median ref → window", "")
    head = "<tr>" + "".join(f"<th>{name}</th>" for name in names) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _feedback(summary: dict[str, Any]) -> str:
    if not summary["requests"]:
        return "<p>No feedback in this window.</p>"
    accuracy = summary["reported_accuracy"]
    confusions = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in summary["confusions"].items())
    return (
        f"<p><strong>{accuracy:.0%}</strong> right, as people report it, over {summary['requests']} answers "
        f"(right {summary['right']}, wrong {summary['wrong']}, none of these {summary['none_of_these']}; "
        f"{summary['replaced']} earlier answers replaced by a later one; {summary['with_thumbnail']} shared "
        f"thumbnails). Feedback comes from the few who answer: a lower bound on attention, not an unbiased "
        f"accuracy.</p>"
        + (f"<p>Most frequent corrections (answer → person):</p><ul>{confusions}</ul>" if confusions else "")
    )


def _share(window: float | None, reference: float | None) -> str:
    shown = "—" if window is None else f"{window:.1%}"
    return shown if reference is None else f"{shown} (reference {reference:.1%})"


def render(result: dict[str, Any], reference: Reference, data: dict[str, Any], extras: dict[str, Any]) -> str:
    window, lines = result["window"], result["lines"]
    status = result["status"]
    banner = {
        "drift": f"Drift: {', '.join(result['drifted'])}",
        "no_drift": "No drift",
        "empty": "Empty window: no prediction lines to compare",
    }[status]
    skipped = ", ".join(f"{count} {reason}" for reason, count in lines["skipped"].items())
    plots = (
        "".join(f"<figure>{image}</figure>" for image in _plots(result, reference, data, extras))
        if window["predictions"]
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {html.escape(banner)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #222 }}
.banner {{ padding: .8rem 1rem; border-radius: .4rem; font-size: 1.3rem; font-weight: 600 }}
.drift {{ background: #fdecea }} .no_drift {{ background: #e8f5e9 }} .empty {{ background: #fff8e1 }}
table {{ border-collapse: collapse; margin: 1rem 0 }} td, th {{ padding: .25rem .7rem; border-bottom: 1px solid #ddd;
text-align: left }} tr.drift td {{ color: #b71c1c; font-weight: 600 }}
img {{ max-width: 100% }} figure {{ margin: 1rem 0 }}
</style></head><body>
<h1>Drift report</h1>
<p class="banner {status}">{html.escape(banner)}</p>
<p>Window: {window["predictions"]} predictions from {window["first"] or "—"} to {window["last"] or "—"}
against the reference of model {html.escape(str(reference.model.get("name")))} {html.escape(str(reference.version))}
({reference.images} test images). Tests at family-wise α = {result["alpha"]} (Holm).
Log lines read: {lines["read"]}; skipped: {skipped}; lines of another model version: {lines["other_model_version"]}.
Not sure (top score &lt; 0.5): {_share(result["not_sure_share"], result["reference_shares"]["not_sure"])}.
None of the ten (the outlier flag): {_share(result["outliers"]["share"], result["reference_shares"]["outlier"])}.</p>
<h2>Tests</h2>
{_table(result["tests"]) if result["tests"] else "<p>No test ran.</p>"}
<h2>What people say</h2>
{_feedback(result["feedback"])}
<h2>Plots</h2>
{plots or "<p>Nothing to plot.</p>"}
</body></html>
"""

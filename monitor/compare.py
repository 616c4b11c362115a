"""Champion against shadow challenger on logged traffic (`python -m monitor compare LOG...`): how often they agree,
each one's accuracy on the requests people confirmed or corrected (feedback joined by request id), each one's
outlier share and its catch of "none of these", and latency, as compare.json and report.html, with an exit status a
release pipeline can gate on.

Only prediction lines that carry a `shadow` answer count (SHADOW_MODEL_PATH, serve/shadow.py). The truth of a
request is what its last feedback says: `right` confirms the champion's label, `wrong` gives the person's label,
`none_of_these` says no class is right (judged by the outlier flag). The gate refuses a challenger less accurate than
the champion by more than MAX_ACCURACY_DROP on those requests, or flagging a larger share as outliers by more than
MAX_OUTLIER_RISE; with fewer than MIN_JUDGED confirmed or corrected requests it cannot judge.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from contract import prediction_log as plog
from monitor.logs import LogRead, latest_feedback

MIN_JUDGED = 30
MAX_ACCURACY_DROP = 0.01
MAX_OUTLIER_RISE = 0.05
PASS, FAIL, NO_SHADOW, TOO_LITTLE_FEEDBACK = "pass", "fail", "no_shadow", "too_little_feedback"


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


def _side(answers: list[dict[str, Any]], truths: list[str | None], judged: list[bool]) -> dict[str, Any]:
    """One model's figures over the shadowed requests: answers[i] is its {label, outlier} for request i."""
    labelled = [(a, t) for a, t, j in zip(answers, truths, judged, strict=True) if j and t is not None]
    none_of_these = [a for a, t, j in zip(answers, truths, judged, strict=True) if j and t is None]
    known = [a["outlier"] for a in answers if a.get("outlier") is not None]  # a file without an outlier score: none
    return {
        "versions": sorted({str(a.get("version")) for a in answers}),
        "judged": len(labelled),
        "accuracy": _share(sum(a["label"] == t for a, t in labelled), len(labelled)),
        "none_of_these": len(none_of_these),
        "none_of_these_caught": _share(sum(bool(a.get("outlier")) for a in none_of_these), len(none_of_these)),
        "outlier_share": _share(sum(known), len(known)),
    }


def compare(read: LogRead) -> dict[str, Any]:
    """The comparison of every shadowed request in `read`, and the gate's verdict."""
    shadowed = [line for line in read.predictions if line.get("shadow")]
    feedback, _ = latest_feedback(read.feedback)
    truths: list[str | None] = []
    judged: list[bool] = []
    for line in shadowed:
        said = feedback.get(line["request_id"])
        judged.append(said is not None)
        if said is None or said["verdict"] == plog.VERDICT_NONE:
            truths.append(None)
        else:
            truths.append(line["label"] if said["verdict"] == plog.VERDICT_RIGHT else said["label"])
    champion_answers = [{"label": ln["label"], "outlier": ln["outlier"], "version": ln["model"]["version"]}
                        for ln in shadowed]  # fmt: skip
    challenger_answers = [line["shadow"] for line in shadowed]
    champion = _side(champion_answers, truths, judged) | {
        "latency_ms": _percentiles([ln["latency_ms"] for ln in shadowed if ln.get("latency_ms") is not None])
    }
    challenger = _side(challenger_answers, truths, judged) | {
        "inference_ms": _percentiles([s["inference_ms"] for s in challenger_answers if s.get("inference_ms")])
    }
    agree = sum(ln["label"] == ln["shadow"]["label"] for ln in shadowed)
    result = {
        "predictions": len(read.predictions),
        "shadowed": len(shadowed),
        "agreement": _share(agree, len(shadowed)),
        "feedback_joined": sum(judged),
        "champion": champion,
        "challenger": challenger,
        "gate": {
            "min_judged": MIN_JUDGED,
            "max_accuracy_drop": MAX_ACCURACY_DROP,
            "max_outlier_rise": MAX_OUTLIER_RISE,
        },
        "lines_skipped": dict(read.skipped),
    }
    result["verdict"], result["reason"] = _verdict(result)
    return result


def _verdict(result: dict[str, Any]) -> tuple[str, str]:
    champion, challenger = result["champion"], result["challenger"]
    if not result["shadowed"]:
        return NO_SHADOW, "no prediction line carries a shadow answer (is SHADOW_MODEL_PATH set?)"
    if champion["outlier_share"] is not None and challenger["outlier_share"] is not None:
        rise = challenger["outlier_share"] - champion["outlier_share"]
        if rise > MAX_OUTLIER_RISE:
            return FAIL, f"the challenger flags {rise:.1%} more requests as outliers"
    if champion["judged"] < MIN_JUDGED:
        return TOO_LITTLE_FEEDBACK, f"{champion['judged']} confirmed or corrected requests, {MIN_JUDGED} needed"
    drop = champion["accuracy"] - challenger["accuracy"]
    if drop > MAX_ACCURACY_DROP:
        return FAIL, (f"the challenger is {drop:.1%} less accurate on {champion['judged']} confirmed or corrected "
                      "requests")  # fmt: skip
    return PASS, (f"accuracy {challenger['accuracy']:.1%} against {champion['accuracy']:.1%} on "
                  f"{champion['judged']} requests; agreement {result['agreement']:.1%}")  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value <= 1:
        return f"{value:.1%}"
    return html.escape(str(value))


def render(result: dict[str, Any]) -> str:
    """A page a person reads before promoting the challenger."""
    rows = [
        ("version", ", ".join(result["champion"]["versions"]), ", ".join(result["challenger"]["versions"])),
        ("accuracy on confirmed or corrected requests", result["champion"]["accuracy"],
         result["challenger"]["accuracy"]),
        ("requests judged", result["champion"]["judged"], result["challenger"]["judged"]),
        ('"none of these" caught', result["champion"]["none_of_these_caught"],
         result["challenger"]["none_of_these_caught"]),
        ("outlier share", result["champion"]["outlier_share"], result["challenger"]["outlier_share"]),
        ("latency p50 / p95 (ms): request / challenger's inference",
         "{p50} / {p95}".format(**result["champion"]["latency_ms"]),
         "{p50} / {p95}".format(**result["challenger"]["inference_ms"])),
    ]  # fmt: skip
    body = "".join(f"<tr><th scope=row>{html.escape(name)}</th><td>{_cell(a)}</td><td>{_cell(b)}</td></tr>"
                   for name, a, b in rows)  # fmt: skip
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Champion against challenger</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto}td,th{padding:.3rem .8rem;"
        "text-align:left;border-bottom:1px solid #ccc}</style><h1>Champion against challenger</h1>"
        f"<p><strong>{html.escape(result['verdict'])}</strong>: {html.escape(result['reason'])}</p>"
        f"<p>{result['shadowed']} of {result['predictions']} answers shadowed; agreement "
        f"{_cell(result['agreement'])}; {result['feedback_joined']} with feedback.</p>"
        f"<table><thead><tr><th></th><th scope=col>champion</th><th scope=col>challenger</th></tr></thead>"
        f"<tbody>{body}</tbody></table></html>\n"
    )

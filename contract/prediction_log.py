"""The prediction log: one JSON line per answered /classify and per /feedback, written by serve, read by monitor.

Stdlib only. This module owns the line's fields, the writing side (`build_prediction`, `build_feedback`) and the
reading side (`parse_line`); what the model saw is summarised by contract/input_summary.py, so the service, the
reference statistics that export writes, and the drift check all compute the same numbers the same way.

Every line is also a Cloud Logging structured entry: `severity` and `message` are set, and `time` is RFC 3339, which
Cloud Logging moves into the entry's `timestamp` (so `parse_line` takes the time from there when it reads a
BigQuery export of a log sink, whose rows hold the line under `jsonPayload`).

A prediction line (docs/monitoring.md lists each field):
    {"log_version": 1, "kind": "prediction", "severity": "INFO", "message": "...", "time": "...Z",
     "request_id": "...", "model": {"name": ..., "version": ...}, "label": ..., "score": ..., "top_k": [...],
     "outlier": true | false | null, "outlier_score": <number> | null,            <- null if the model has no score
     "input_digest": "<32 hex>",                          <- contract.feedback_token.input_digest of the model input
     "latency_ms": ..., "upload": {"format", "width", "height", "bytes"},
     "input": {"mean_r", ..., "sharpness"}, "embedding": [32 floats]}            <- embedding only if the model has one
A feedback line:
    {"log_version": 1, "kind": "feedback", "severity": "INFO", "message": "...", "time": "...Z",
     "request_id": "...", "label": <the person's label or "none_of_these">, "predicted": <label or null>,
     "verdict": "right" | "wrong" | "none_of_these", "model_version": <the answering model's>,
     "input_digest": <the answer's, from its token>, "token": <the answer's feedback token>,
     "share_thumbnail": bool, "thumbnail": <base64 PNG, consent only>}
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from contract.input_summary import FEATURES

LOG_VERSION = 1  # bump when a field changes meaning; parse_line reads this version and older
KIND_PREDICTION = "prediction"
KIND_FEEDBACK = "feedback"
KINDS = (KIND_PREDICTION, KIND_FEEDBACK)
SEVERITY = "INFO"

# ---- feedback: what the person said, and how it compares with the answer.
NONE_OF_THESE = "none_of_these"  # "No, it's none of these"
VERDICT_RIGHT, VERDICT_WRONG, VERDICT_NONE = "right", "wrong", NONE_OF_THESE
VERDICTS = (VERDICT_RIGHT, VERDICT_WRONG, VERDICT_NONE)  # the values of serve_feedback_total{verdict}
# A 32x32 RGB PNG is at most ~3.2 kB (raw pixels plus headers); base64 adds a third. Anything longer is not one.
THUMBNAIL_MAX_CHARS = 8 * 1024

# ---- request ids: from X-Request-ID, Cloud Run's trace id, or new_request_id(). They name harvested files
# (<label>/<request_id>.png), so no path separators, no leading dot, bounded length.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

# Decimals of the scores in the log. A reader compares samples at this precision (see round_like_log): a reference
# kept at float32 would put its many scores just under 1.0 above the log's rounded 1.0, a false shift.
SCORE_DIGITS = 6
# Under this top score an answer is "not sure": the page says so, the drift report and the alert rules count them
# (monitor/alerts/serve-rules.yaml reads the confidence histogram's le="0.5" bucket: keep the two together).
NOT_SURE_BELOW = 0.5


def new_request_id() -> str:
    return uuid.uuid4().hex


def valid_request_id(value: object) -> bool:
    return isinstance(value, str) and REQUEST_ID_PATTERN.fullmatch(value) is not None


def now() -> str:
    """RFC 3339 UTC with milliseconds, the form Cloud Logging reads as the entry's timestamp."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------------------------
# Writing


def build_prediction(
    *,
    request_id: str,
    model_name: str,
    model_version: str,
    label: str,
    score: float,
    top_k: Sequence[Mapping[str, Any]],
    latency_ms: float,
    upload: Mapping[str, Any],
    summary: Mapping[str, float],
    embedding: Sequence[float] | None = None,
    outlier: bool | None = None,
    outlier_score: float | None = None,
    input_digest: str | None = None,
    shadow: Mapping[str, Any] | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """One prediction line (`outlier` and `outlier_score` null when the model has no outlier score).
    `upload` = {"format", "width", "height", "bytes"} of what was sent; `summary` = one
    item of summarize_input(); `embedding` = one item of embedding_for_log(), or None when the model has none."""
    line: dict[str, Any] = {
        "log_version": LOG_VERSION,
        "kind": KIND_PREDICTION,
        "severity": SEVERITY,
        "message": f"classify {request_id}: {label} {score:.2f} ({latency_ms:.0f} ms)",
        "time": time or now(),
        "request_id": request_id,
        "model": {"name": model_name, "version": model_version},
        "label": label,
        "score": round(float(score), SCORE_DIGITS),
        "top_k": [{"label": item["label"], "score": round(float(item["score"]), SCORE_DIGITS)} for item in top_k],
        "outlier": None if outlier is None else bool(outlier),
        "outlier_score": None if outlier_score is None else round(float(outlier_score), SCORE_DIGITS),
        "input_digest": input_digest,
        "latency_ms": round(float(latency_ms), 3),
        "upload": {key: upload.get(key) for key in ("format", "width", "height", "bytes")},
        "input": {key: float(summary[key]) for key in FEATURES},
    }
    if embedding is not None:
        line["embedding"] = [float(v) for v in embedding]
    if shadow is not None:  # the shadow challenger's: version, label, score, inference_ms (+ outlier, outlier_score)
        line["shadow"] = dict(shadow)
    return line


def verdict(label: str, predicted: str | None, correct: bool | None) -> str | None:
    """What a piece of feedback says: none_of_these, or right/wrong by comparing the person's label with the answer
    (the `correct` flag decides only when the answer is not given); None when neither is given."""
    if label == NONE_OF_THESE:
        return VERDICT_NONE
    if predicted is not None:
        return VERDICT_RIGHT if label == predicted else VERDICT_WRONG
    if correct is not None:
        return VERDICT_RIGHT if correct else VERDICT_WRONG
    return None


def build_feedback(
    *,
    request_id: str,
    label: str,
    predicted: str | None = None,
    correct: bool | None = None,
    thumbnail: str | None = None,
    share_thumbnail: bool = False,
    model_version: str | None = None,
    input_digest: str | None = None,
    token: str | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """One feedback line. `thumbnail` (base64 PNG of the 32x32 model input) is written only with share_thumbnail.
    Raises ValueError when the verdict cannot be told (neither `predicted` nor `correct`)."""
    said = verdict(label, predicted, correct)
    if said is None:
        raise ValueError("feedback needs the predicted label or `correct` to tell right from wrong")
    line: dict[str, Any] = {
        "log_version": LOG_VERSION,
        "kind": KIND_FEEDBACK,
        "severity": SEVERITY,
        "message": f"feedback {request_id}: {said} ({label})",
        "time": time or now(),
        "request_id": request_id,
        "label": label,
        "predicted": predicted,
        "verdict": said,
        "model_version": model_version,
        "input_digest": input_digest,
        "token": token,
        "share_thumbnail": bool(share_thumbnail and thumbnail),
    }
    if share_thumbnail and thumbnail:
        line["thumbnail"] = thumbnail
    return line


def dumps(line: Mapping[str, Any]) -> str:
    """One line of JSON, no newline inside (the log is JSONL)."""
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ---------------------------------------------------------------------------------------------------------------
# Reading

CORRUPT = "corrupt"  # not JSON, or not an object
FOREIGN = "foreign"  # JSON, but not a line of this log (another program's, or a newer log_version)
MALFORMED = "malformed"  # claims to be ours, but a field is missing or of the wrong type
BLANK = "blank"


def parse_line(text: str | bytes) -> dict[str, Any] | None:
    """A log line (ours, or a BigQuery/Cloud Logging row holding it under `jsonPayload`) -> the normalised line, or
    None for anything else. Numbers and booleans written as strings (as `bq` prints them) are accepted."""
    return classify_line(text)[0]


def classify_line(text: str | bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(line, None) for a line of this log; (None, reason) otherwise, reason one of CORRUPT/FOREIGN/MALFORMED/BLANK."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        text = text.strip()
        if not text:
            return None, BLANK
        row = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, CORRUPT
    if not isinstance(row, dict):
        return None, CORRUPT
    payload = _unwrap(row)
    if payload is None:
        return None, FOREIGN
    try:
        return _normalise(payload), None
    except _Foreign:
        return None, FOREIGN
    except (_Malformed, TypeError, ValueError, KeyError, AttributeError):
        return None, MALFORMED


class _Foreign(Exception):
    pass


class _Malformed(Exception):
    pass


def _unwrap(row: dict[str, Any]) -> dict[str, Any] | None:
    """Our line itself, or the payload of a Cloud Logging entry / BigQuery row, with the entry's timestamp."""
    for key in ("jsonPayload", "json_payload"):  # log sink tables; Log Analytics names it json_payload (JSON type)
        if key in row:
            payload = row[key]
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except ValueError:
                    return None
            if not isinstance(payload, dict):
                return None
            payload = dict(payload)
            if "time" not in payload and row.get("timestamp") is not None:
                payload["time"] = row["timestamp"]  # Cloud Logging moved our `time` here
            return payload
    return row


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    if "log_version" not in payload or payload.get("kind") not in KINDS:
        raise _Foreign
    version = _integer(payload["log_version"])
    if version is None or not 1 <= version <= LOG_VERSION:
        raise _Foreign
    request_id = payload.get("request_id")
    if not valid_request_id(request_id):
        raise _Malformed
    time = parse_time(payload.get("time"))
    line: dict[str, Any] = {
        "log_version": version,
        "kind": payload["kind"],
        "request_id": request_id,
        "time": time.isoformat().replace("+00:00", "Z") if time else None,
    }
    if payload["kind"] == KIND_PREDICTION:
        return line | _prediction_fields(payload)
    return line | _feedback_fields(payload)


def _prediction_fields(payload: dict[str, Any]) -> dict[str, Any]:
    model = payload.get("model") or {}
    label, score = payload.get("label"), _number(payload.get("score"))
    if not isinstance(label, str) or score is None or not isinstance(model, dict):
        raise _Malformed
    summary = payload.get("input") or {}
    values = {key: _number(summary.get(key)) for key in FEATURES}
    if any(v is None for v in values.values()):
        raise _Malformed
    embedding = payload.get("embedding")
    if embedding in (None, []):
        embedding = None
    else:
        embedding = [_number(v) for v in embedding]
        if any(v is None for v in embedding):
            raise _Malformed
    upload = payload.get("upload") or {}
    top_k = [
        {"label": item.get("label"), "score": _number(item.get("score"))}
        for item in payload.get("top_k") or []
        if isinstance(item, dict)
    ]
    return {
        "model": {"name": _text(model.get("name")), "version": _text(model.get("version"))},
        "label": label,
        "score": score,
        "top_k": top_k,
        "outlier": _boolean(payload.get("outlier")),
        "outlier_score": _number(payload.get("outlier_score")),
        "input_digest": _text(payload.get("input_digest")),
        "latency_ms": _number(payload.get("latency_ms")),
        "upload": {
            "format": _text(upload.get("format")),
            **{key: _integer(upload.get(key)) for key in ("width", "height", "bytes")},
        },
        "input": values,
        "embedding": embedding,
        "shadow": _shadow(payload.get("shadow")),
    }


def _shadow(value: Any) -> dict[str, Any] | None:
    """The shadow challenger's answer of a line, or None (no shadow, or not one this reader understands)."""
    if not isinstance(value, dict) or not isinstance(value.get("label"), str):
        return None
    return {
        "version": _text(value.get("version")),
        "label": value["label"],
        "score": _number(value.get("score")),
        "outlier": _boolean(value.get("outlier")),
        "outlier_score": _number(value.get("outlier_score")),
        "inference_ms": _number(value.get("inference_ms")),
    }


def _feedback_fields(payload: dict[str, Any]) -> dict[str, Any]:
    label, said = payload.get("label"), payload.get("verdict")
    if not isinstance(label, str) or said not in VERDICTS:
        raise _Malformed
    thumbnail = payload.get("thumbnail")
    share = _boolean(payload.get("share_thumbnail"))
    valid_thumbnail = isinstance(thumbnail, str) and 0 < len(thumbnail) <= THUMBNAIL_MAX_CHARS
    return {
        "label": label,
        "predicted": _text(payload.get("predicted")),
        "verdict": said,
        "model_version": _text(payload.get("model_version")),
        "input_digest": _text(payload.get("input_digest")),
        "token": _text(payload.get("token")),
        "share_thumbnail": bool(share),
        "thumbnail": thumbnail if share and valid_thumbnail else None,
    }


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 ("...Z"), BigQuery's "YYYY-MM-DD HH:MM:SS[.ffffff] UTC", or epoch seconds -> aware UTC datetime."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and _number(value) is not None):
        seconds = float(value)
        return datetime.fromtimestamp(seconds, UTC) if math.isfinite(seconds) else None
    if not isinstance(value, str):
        return None
    text = value.strip().replace(" UTC", "+00:00")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

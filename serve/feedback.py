"""POST /feedback: a person says whether an answer was right, and may share the 32x32 picture the model saw.

    {"request_id": "...", "label": "<one of the model's labels>" | "none_of_these",
     "predicted": "<the answer's label>" (optional), "correct": true | false (optional),
     "share_thumbnail": false (default), "thumbnail": "<base64 PNG of the model's input>" (read only with consent)}

Stateless (Cloud Run runs several instances; the answer may have come from another one): nothing is looked up or
kept. The request is checked, counted in serve_feedback_total{verdict}, and written as one "feedback" line to the
prediction log; an unknown or repeated request id is accepted like any other (harvesting keeps one per request).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contract import prediction_log as plog
from serve.errors import ApiError, not_ready
from serve.thumbnails import BadThumbnail, checked_thumbnail
from serve.uploads import UploadPace, read_body, upload_budget

# A 32x32 thumbnail is at most ~4.3 KB of base64 (contract THUMBNAIL_MAX_CHARS allows 8 KiB); the rest of the JSON is
# a few hundred bytes. 16 KiB leaves room for both and nothing else.
FEEDBACK_MAX_BYTES = 16 * 1024
JSON_TYPES = ("application/json",)
FIELDS = ("request_id", "label", "predicted", "correct", "share_thumbnail", "thumbnail")


def bad(detail: str) -> ApiError:
    return ApiError(400, "bad_feedback", detail)


async def feedback(request: Request) -> Response:
    state = request.app.state
    if state.model is None:
        raise not_ready()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise ApiError(415, "not_json", "send the feedback as JSON with `Content-Type: application/json`")
    settings = state.settings
    pace = UploadPace(settings.body_timeout_s, settings.upload_grace_s, settings.min_upload_bytes_per_s)
    with upload_budget(state).reservation() as reservation:
        body = await read_body(request, FEEDBACK_MAX_BYTES, pace, reservation)
    line = feedback_line(parse(body), state.model)
    state.metrics.feedback.labels(line["verdict"]).inc()
    if state.prediction_log is not None:
        state.prediction_log.submit(line)
    return JSONResponse({"status": "accepted", "request_id": line["request_id"], "verdict": line["verdict"]}, 202)


def parse(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise bad(f"unknown fields: {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    return data


def feedback_line(data: dict[str, Any], model: Any) -> dict[str, Any]:
    """The checked request -> the log line (contract.prediction_log.build_feedback)."""
    request_id = data.get("request_id")
    if not plog.valid_request_id(request_id):
        raise ApiError(
            400, "bad_request_id", "`request_id` must be the answer's id: 1-128 letters, digits, '_', '.' or '-'"
        )
    known = (*model.labels, plog.NONE_OF_THESE)
    label = data.get("label")
    if not isinstance(label, str) or label not in known:
        raise ApiError(422, "unknown_label", f"`label` must be one of {', '.join(known)}")
    predicted = data.get("predicted")
    if predicted is not None and predicted not in model.labels:
        raise ApiError(422, "unknown_label", f"`predicted` must be one of {', '.join(model.labels)}, or absent")
    correct, share = data.get("correct"), data.get("share_thumbnail", False)
    if correct is not None and not isinstance(correct, bool):
        raise bad("`correct` must be true, false or absent")
    if not isinstance(share, bool):
        raise bad("`share_thumbnail` must be true or false")
    thumbnail = None
    if share:  # without consent the picture is not even looked at
        try:
            thumbnail = checked_thumbnail(data.get("thumbnail"), model.input_size)
        except BadThumbnail as exc:
            raise ApiError(422, "bad_thumbnail", str(exc)) from None
    if plog.verdict(label, predicted, correct) is None:
        raise bad("say whether the answer was right: send `predicted` (the answer's label) or `correct`")
    return plog.build_feedback(
        request_id=request_id,
        label=label,
        predicted=predicted,
        correct=correct,
        thumbnail=thumbnail,
        share_thumbnail=share,
        model_version=model.version,
    )

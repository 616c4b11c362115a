"""POST /feedback: a person says whether an answer was right, and may share the 32x32 picture the model saw.

    {"request_id": "...", "token": "<the answer's feedback_token>",
     "label": "<one of the model's labels>" | "none_of_these", "predicted": "<the answer's label>" (optional),
     "correct": true | false (optional, ignored: the token says what was answered),
     "share_thumbnail": false (default), "thumbnail": "<base64 PNG of the model's input>" (read only with consent)}

Only the answer's own token opens it (contract/feedback_token.py): a request id never answered, an answer older than
FEEDBACK_WINDOW_S, another answer's label, or a thumbnail that is not the picture the model saw are refused. The check
needs no state (Cloud Run runs several instances; the answer may have come from another one, which shares the key).
Each client is limited (serve/rate_limit.py). The feedback is counted in serve_feedback_total{verdict} and written as
one "feedback" line to the prediction log; harvest keeps the first per answer (monitor/harvest.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contract import feedback_token
from contract import prediction_log as plog
from serve.errors import NO_STORE, ApiError, not_ready
from serve.rate_limit import client_of, retry_after
from serve.thumbnails import BadThumbnail, checked_thumbnail, thumbnail_base64
from serve.uploads import UploadPace, read_body, upload_budget

# A 32x32 thumbnail is at most ~4.3 KB of base64 (contract THUMBNAIL_MAX_CHARS allows 8 KiB); the rest of the JSON is
# a few hundred bytes. 16 KiB leaves room for both and nothing else.
FEEDBACK_MAX_BYTES = 16 * 1024
JSON_TYPES = ("application/json",)
FIELDS = ("request_id", "token", "label", "predicted", "correct", "share_thumbnail", "thumbnail")
TOKEN_REFUSALS = {  # why contract.feedback_token.check refused a token that is not too old -> the error's detail
    feedback_token.MALFORMED: "`token` must be the `feedback_token` of the answer",
    feedback_token.FORGED: "`token` is not one this service issued for this answer",
}


class FeedbackKeys:
    """Mints every answer's token with the signing key, checks feedback against every accepted key."""

    def __init__(self, keys: tuple[bytes, ...], window_s: float) -> None:
        self.keys, self.window_s = keys, window_s

    def mint(self, request_id: str, model_version: str, label: str, digest: str) -> str:
        answer = feedback_token.Answer(request_id, model_version, label, digest, int(time.time()))
        return feedback_token.mint(self.keys[0], answer)

    def check(self, token: object, request_id: str) -> feedback_token.Answer:
        result = feedback_token.check(token, request_id, self.keys, now=time.time(), window_s=self.window_s)
        if result == feedback_token.EXPIRED:
            raise ApiError(410, "feedback_expired", "the answer is too old for feedback: classify the picture again")
        if isinstance(result, str):
            raise ApiError(403, "bad_token", TOKEN_REFUSALS[result])
        return result


def bad(detail: str) -> ApiError:
    return ApiError(400, "bad_feedback", detail)


async def feedback(request: Request) -> Response:
    state = request.app.state
    if state.model is None:
        raise not_ready()
    # Before the body is read: a flood costs a dictionary look-up a request.
    wait = state.feedback_limiter.take(client_of(request, behind_front_end=state.settings.on_cloud_run))
    if wait:
        raise ApiError(429, "too_much_feedback", "too much feedback from here; retry later",
                       {"Retry-After": retry_after(wait)})  # fmt: skip
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise ApiError(415, "not_json", "send the feedback as JSON with `Content-Type: application/json`")
    settings = state.settings
    pace = UploadPace(settings.body_timeout_s, settings.upload_grace_s, settings.min_upload_bytes_per_s)
    with upload_budget(state).reservation() as reservation:
        body = await read_body(request, FEEDBACK_MAX_BYTES, pace, reservation)
    line = feedback_line(parse(body), state.model, state.feedback)
    # 202 promises the line is in the prediction log's write queue (written within a moment, unless the process is
    # killed); a service that keeps no log, or whose queue is full, says so instead of pretending.
    if state.prediction_log is None:
        raise ApiError(503, "feedback_not_kept", "this service keeps no feedback: PREDICTION_LOG is unset")
    if not state.prediction_log.submit(line):
        raise ApiError(503, "feedback_not_kept", "the feedback log is full; retry shortly", {"Retry-After": "1"})
    state.metrics.feedback.labels(line["verdict"]).inc()
    return JSONResponse(
        {"status": "accepted", "request_id": line["request_id"], "verdict": line["verdict"]}, 202, NO_STORE
    )


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


def feedback_line(data: dict[str, Any], model: Any, keys: FeedbackKeys) -> dict[str, Any]:
    """The checked request -> the log line (contract.prediction_log.build_feedback)."""
    request_id = data.get("request_id")
    if not plog.valid_request_id(request_id):
        raise ApiError(
            400, "bad_request_id", "`request_id` must be the answer's id: 1-128 letters, digits, '_', '.' or '-'"
        )
    if data.get("token") is None:
        raise bad("send the answer's `feedback_token` as `token`")
    answered = keys.check(data["token"], request_id)
    known = (*model.labels, plog.NONE_OF_THESE)
    label = data.get("label")
    if not isinstance(label, str) or label not in known:
        raise ApiError(422, "unknown_label", f"`label` must be one of {', '.join(known)}")
    predicted = data.get("predicted")
    if predicted is not None and predicted != answered.label:
        raise ApiError(403, "bad_token", f"`predicted` is {predicted!r}, the answer the token is for said "
                       f"{answered.label!r}")  # fmt: skip
    correct, share = data.get("correct"), data.get("share_thumbnail", False)
    if correct is not None and not isinstance(correct, bool):
        raise bad("`correct` must be true, false or absent")
    if not isinstance(share, bool):
        raise bad("`share_thumbnail` must be true or false")
    thumbnail = None
    if share:  # without consent the picture is not even looked at
        try:
            pixels = checked_thumbnail(data.get("thumbnail"), model.input_size)
        except BadThumbnail as exc:
            raise ApiError(422, "bad_thumbnail", str(exc)) from None
        if feedback_token.input_digest(pixels) != answered.input_digest:
            raise ApiError(422, "bad_thumbnail", "`thumbnail` is not the picture the model saw for this answer")
        thumbnail = thumbnail_base64(pixels)  # re-encoded: nothing of the client's file but the pixels is logged
    return plog.build_feedback(
        request_id=request_id,
        label=label,
        predicted=answered.label,
        thumbnail=thumbnail,
        share_thumbnail=share,
        model_version=answered.model_version,
        input_digest=answered.input_digest,
        token=data["token"],
    )

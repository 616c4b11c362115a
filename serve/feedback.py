"""POST /feedback: a person says whether an answer was right, and may share the 32x32 picture the model saw. The body
is a `serve.schemas.Feedback`: the answer's `request_id` and `feedback_token` (as `token`), the `label` (one of the
model's, or none_of_these), and optionally `predicted`, `correct` (ignored), `share_thumbnail` and `thumbnail`.

Only the answer's own token opens it (contract/feedback_token.py): a request id never answered, an answer older than
FEEDBACK_WINDOW_S, another answer's label, or a thumbnail that is not the picture the model saw are refused. The check
needs no state (Cloud Run runs several instances; the answer may have come from another one, which shares the key).
Each client is limited (serve/rate_limit.py). The feedback is counted in serve_feedback_total{verdict} and written as
one "feedback" line to the prediction log; harvest keeps the first per answer (monitor/harvest.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from contract import feedback_token
from contract import prediction_log as plog
from serve.error_codes import ErrorCode
from serve.error_responses import NO_STORE, RETRY_AFTER, ApiError, not_ready
from serve.rate_limit import client_of, retry_after
from serve.schemas import ENCODER, Feedback, FeedbackAccepted
from serve.thumbnails import BadThumbnail, checked_thumbnail, thumbnail_base64
from serve.uploads import read_body

if TYPE_CHECKING:
    from serve.model import LoadedModel

# A 32x32 thumbnail is at most ~4.3 KB of base64 (contract THUMBNAIL_MAX_CHARS allows 8 KiB); the rest of the JSON is
# a few hundred bytes. 16 KiB leaves room for both and nothing else.
FEEDBACK_MAX_BYTES = 16 * 1024
JSON_TYPES = ("application/json",)
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
            raise ApiError(ErrorCode.FEEDBACK_EXPIRED, "the answer is too old for feedback: classify the picture again")
        if isinstance(result, str):
            raise ApiError(ErrorCode.BAD_TOKEN, TOKEN_REFUSALS[result])
        return result


REQUEST_ID_RULE = "`request_id` must be the answer's id: 1-128 letters, digits, '_', '.' or '-'"


def bad(detail: str) -> ApiError:
    return ApiError(ErrorCode.BAD_FEEDBACK, detail)


async def feedback(request: Request) -> Response:
    service = request.app.state.service
    if service.model is None:
        raise not_ready()
    # Before the body is read: a flood costs a dictionary look-up a request.
    wait = service.feedback_limiter.take(client_of(request, behind_front_end=service.settings.on_cloud_run))
    if wait:
        raise ApiError(ErrorCode.TOO_MUCH_FEEDBACK, "too much feedback from here; retry later",
                       {"Retry-After": retry_after(wait)})  # fmt: skip
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise ApiError(ErrorCode.NOT_JSON, "send the feedback as JSON with `Content-Type: application/json`")
    with service.uploads.reservation() as reservation:
        body = await read_body(request, FEEDBACK_MAX_BYTES, service.pace, reservation)
    line = feedback_line(parse(body, service.model.labels), service.model, service.feedback_keys)
    # 202 promises the line is in the prediction log's write queue (written within a moment, unless the process is
    # killed); a service that keeps no log, or whose queue is full, says so instead of pretending.
    if service.prediction_log is None:
        raise ApiError(ErrorCode.FEEDBACK_NOT_KEPT, "this service keeps no feedback: PREDICTION_LOG is unset")
    if not service.prediction_log.submit(line):
        raise ApiError(ErrorCode.FEEDBACK_NOT_KEPT, "the feedback log is full; retry shortly", RETRY_AFTER)
    service.metrics.feedback.labels(line["verdict"]).inc()
    accepted = FeedbackAccepted("accepted", line["request_id"], line["verdict"])
    return Response(ENCODER.encode(accepted), 202, NO_STORE, media_type="application/json")


def parse(body: bytes, labels: tuple[str, ...]) -> Feedback:
    """The body as a Feedback (serve/schemas.py): JSON, an object of its fields only, each of its type. A field whose
    problem has a code of its own gets it; msgspec's message names the field."""
    field_errors = {
        "request_id": (ErrorCode.BAD_REQUEST_ID, REQUEST_ID_RULE),
        "label": (ErrorCode.UNKNOWN_LABEL, f"`label` must be one of {', '.join((*labels, plog.NONE_OF_THESE))}"),
        "thumbnail": (ErrorCode.BAD_THUMBNAIL, "`thumbnail` must be base64 text of a PNG"),
    }
    try:
        return msgspec.json.decode(body, type=Feedback)
    except msgspec.ValidationError as exc:
        message = str(exc)
        for name, (code, detail) in field_errors.items():
            if message.endswith((f"`$.{name}`", f"field `{name}`")):
                raise ApiError(code, detail) from None
        raise bad(message) from None
    except (msgspec.DecodeError, RecursionError):
        raise bad("the body is not valid JSON") from None


def feedback_line(data: Feedback, model: LoadedModel, keys: FeedbackKeys) -> dict[str, Any]:
    """The checked request -> the log line (contract.prediction_log.build_feedback)."""
    answered = keys.check(data.token, data.request_id)
    known = (*model.labels, plog.NONE_OF_THESE)
    if data.label not in known:
        raise ApiError(ErrorCode.UNKNOWN_LABEL, f"`label` must be one of {', '.join(known)}")
    if data.predicted is not None and data.predicted != answered.label:
        raise ApiError(ErrorCode.BAD_TOKEN, f"`predicted` is {data.predicted!r}, the answer the token is for said "
                       f"{answered.label!r}")  # fmt: skip
    thumbnail = None
    if data.share_thumbnail:  # without consent the picture is not even looked at
        try:
            pixels = checked_thumbnail(data.thumbnail, model.input_size)
        except BadThumbnail as exc:
            raise ApiError(ErrorCode.BAD_THUMBNAIL, str(exc)) from None
        if feedback_token.input_digest(pixels) != answered.input_digest:
            raise ApiError(ErrorCode.BAD_THUMBNAIL, "`thumbnail` is not the picture the model saw for this answer")
        thumbnail = thumbnail_base64(pixels)  # re-encoded: nothing of the client's file but the pixels is logged
    return plog.build_feedback(
        request_id=data.request_id,
        label=data.label,
        predicted=answered.label,
        thumbnail=thumbnail,
        share_thumbnail=data.share_thumbnail,
        model_version=answered.model_version,
        input_digest=answered.input_digest,
        token=data.token,
    )

"""Every error a client can see, as one enumeration: its code, HTTP status, the title a person reads, what it means
and on which endpoints it is met. The fragments (serve.fragments), the page (through GET /site-config) and the API
description (serve.openapi) all read it from here."""

from __future__ import annotations

from enum import Enum

CLASSIFY, FEEDBACK = "/classify", "/feedback"
UPLOADS = (CLASSIFY, FEEDBACK)  # both read a body within the upload budget and pace (serve/uploads.py)
ANY = ()  # met on any route


class ErrorCode(Enum):
    """`ErrorCode.X.value` is the code in `{"error": code, "detail": ...}`."""

    status: int
    title: str
    meaning: str
    endpoints: tuple[str, ...]

    def __new__(cls, code: str, status: int, title: str, meaning: str, endpoints: tuple[str, ...]) -> ErrorCode:
        member = object.__new__(cls)
        member._value_ = code
        member.status, member.title, member.meaning, member.endpoints = status, title, meaning, endpoints
        return member

    EMPTY_BODY = ("empty_body", 400, "Nothing was uploaded", "empty body", (CLASSIFY,))
    EMPTY_FILE = ("empty_file", 400, "The file is empty", "empty file in the form", (CLASSIFY,))
    MISSING_FILE = ("missing_file", 400, "No file in the upload", "a form without a `file` field", (CLASSIFY,))
    BAD_REQUEST = (
        "bad_request", 400, "The upload could not be read",
        "a body that cannot be read: malformed multipart, a bad Content-Length, a client gone midway", UPLOADS,
    )  # fmt: skip
    NOT_AN_IMAGE = (
        "not_an_image", 415, "That is not a picture we can read",
        "not an image, or a format the service does not read", (CLASSIFY,),
    )  # fmt: skip
    CORRUPT_IMAGE = (
        "corrupt_image", 422, "The picture is damaged",
        "an image that cannot be decoded: corrupt or truncated, or starting like a readable format and then "
        "unreadable", (CLASSIFY,),
    )  # fmt: skip
    BODY_TOO_LARGE = (
        "body_too_large", 413, "The file is too big",
        "a body over MAX_BODY_BYTES (16 KiB for feedback), refused before it is read when Content-Length says so",
        UPLOADS,
    )  # fmt: skip
    BODY_TIMEOUT = (
        "body_timeout", 408, "The upload took too long",
        "the body did not arrive within BODY_TIMEOUT_S, or slower than MIN_UPLOAD_BYTES_PER_S after UPLOAD_GRACE_S; "
        "the connection is closed", UPLOADS,
    )  # fmt: skip
    TOO_MANY_PIXELS = (
        "too_many_pixels", 413, "The picture has too many pixels",
        "an image over MAX_PIXELS (half that for AVIF) or over the decode memory budget, refused before decoding",
        (CLASSIFY,),
    )  # fmt: skip
    OVERLOADED = (
        "overloaded", 503, "The service is busy",
        "the queue is full (answered before the body is read) or the bodies in memory are; `Retry-After` says when",
        UPLOADS,
    )  # fmt: skip
    NOT_READY = (
        "not_ready", 503, "The service is starting",
        "the model is loading or warming up; `Retry-After` says when", (CLASSIFY, FEEDBACK, "/readyz", "/model"),
    )  # fmt: skip
    SHUTTING_DOWN = (
        "shutting_down", 503, "The service is stopping",
        "the service began stopping before the upload had fully arrived; retry (another instance answers)", UPLOADS,
    )  # fmt: skip
    NOT_JSON = ("not_json", 415, "The feedback must be JSON", "not `Content-Type: application/json`", (FEEDBACK,))
    BAD_FEEDBACK = (
        "bad_feedback", 400, "The feedback could not be read",
        "not a JSON object of the known fields, or of the wrong types", (FEEDBACK,),
    )  # fmt: skip
    BAD_REQUEST_ID = (
        "bad_request_id", 400, "The answer's id is not valid", "a malformed `request_id`", (FEEDBACK,),
    )  # fmt: skip
    UNKNOWN_LABEL = (
        "unknown_label", 422, "That is not one of the model's labels",
        "a `label` that is not one of the model's labels nor none_of_these", (FEEDBACK,),
    )  # fmt: skip
    BAD_THUMBNAIL = (
        "bad_thumbnail", 422, "The shared picture is not the one the model saw",
        "with consent, a thumbnail that is not a PNG of the model's input size, or not the picture the model saw",
        (FEEDBACK,),
    )  # fmt: skip
    BAD_TOKEN = (
        "bad_token", 403, "This answer cannot take feedback",
        "a token that is not this answer's: another request id or label, altered, or not made by this service",
        (FEEDBACK,),
    )  # fmt: skip
    FEEDBACK_EXPIRED = (
        "feedback_expired", 410, "This answer is too old for feedback", "the answer is older than FEEDBACK_WINDOW_S",
        (FEEDBACK,),
    )  # fmt: skip
    TOO_MUCH_FEEDBACK = (
        "too_much_feedback", 429, "Too much feedback at once",
        "too much feedback from this client (FEEDBACK_PER_MINUTE, FEEDBACK_BURST); `Retry-After` says when",
        (FEEDBACK,),
    )  # fmt: skip
    FEEDBACK_NOT_KEPT = (
        "feedback_not_kept", 503, "Feedback cannot be kept right now",
        "no prediction log is configured, or its write queue is full (202 means the line is in that queue, written "
        "within moments unless the process is killed)", (FEEDBACK,),
    )  # fmt: skip
    NOT_FOUND = ("not_found", 404, "Not found", "no such route", ANY)
    METHOD_NOT_ALLOWED = (
        "method_not_allowed", 405, "Method not allowed", "e.g. GET; the `Allow` header lists the methods", UPLOADS,
    )  # fmt: skip
    # A status Starlette raised that has no code of its own here; its status is Starlette's.
    HTTP_ERROR = ("http_error", 400, "The request failed", "another refusal of the HTTP layer", ANY)
    INTERNAL_ERROR = ("internal_error", 500, "Something went wrong on our side", "a bug: never an input's fault", ANY)


# Starlette raises HTTPException for routing and form parsing; these statuses get codes of their own.
FOR_HTTP_STATUS = {400: ErrorCode.BAD_REQUEST, 404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


def titles() -> dict[str, str]:
    """Each code's title, for the page (GET /site-config)."""
    return {code.value: code.title for code in ErrorCode}


def error_title(code: str) -> str:
    try:
        return ErrorCode(code).title
    except ValueError:
        return ErrorCode.HTTP_ERROR.title

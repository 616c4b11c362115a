"""Every error code a client can see, with the title a person reads: one table for the HTML fragments
(serve.fragments) and for the page, which gets it from GET /site-config (serve.site_config)."""

from __future__ import annotations

ERROR_TITLES = {
    "empty_body": "Nothing was uploaded",
    "empty_file": "The file is empty",
    "missing_file": "No file in the upload",
    "bad_request": "The upload could not be read",
    "not_an_image": "That is not a picture we can read",
    "corrupt_image": "The picture is damaged",
    "body_too_large": "The file is too big",
    "body_timeout": "The upload took too long",
    "too_many_pixels": "The picture has too many pixels",
    "overloaded": "The service is busy",
    "not_ready": "The service is starting",
    "not_json": "The feedback must be JSON",
    "bad_feedback": "The feedback could not be read",
    "bad_request_id": "The answer's id is not valid",
    "unknown_label": "That is not one of the model's labels",
    "bad_thumbnail": "The shared picture is not the one the model saw",
    "bad_token": "This answer cannot take feedback",
    "feedback_expired": "This answer is too old for feedback",
    "too_much_feedback": "Too much feedback at once",
    "feedback_not_kept": "Feedback cannot be kept right now",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "http_error": "The request failed",  # a status Starlette raised that serve.errors has no code of its own for
    "internal_error": "Something went wrong on our side",
}
DEFAULT_TITLE = ERROR_TITLES["http_error"]


def error_title(code: str) -> str:
    return ERROR_TITLES.get(code, DEFAULT_TITLE)

"""Every request gets an id: the caller's `X-Request-ID` when it is a safe one, else Cloud Run's trace id, else a new
one. It is on `request.state.request_id`, in every answer's `X-Request-ID` header, and (for /classify) in the answer
and the prediction log line, so a person's feedback names the answer it is about."""

from __future__ import annotations

import re

from starlette.datastructures import Headers

from contract.prediction_log import new_request_id, valid_request_id

HEADER = "X-Request-ID"
# Cloud Run's load balancer sends "TRACE_ID/SPAN_ID;o=1"; the trace id (32 hex digits) is what Cloud Logging and
# Cloud Trace group the request's lines by.
TRACE_HEADER = "X-Cloud-Trace-Context"
TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")


def request_id_of(headers: Headers) -> str:
    """The caller's id if it is safe to log and to name a file with (contract.prediction_log.REQUEST_ID_PATTERN),
    else the trace id, else a new one. An unsafe id is replaced, never refused: the request itself is fine."""
    given = headers.get(HEADER)
    if valid_request_id(given):
        return given
    trace = headers.get(TRACE_HEADER, "").split("/", 1)[0]
    if TRACE_ID.fullmatch(trace):
        return trace.lower()
    return new_request_id()

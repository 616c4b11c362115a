"""The one exception type for every error a client can see, and the handlers that render it (JSON or HTML)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from serve.error_codes import FOR_HTTP_STATUS, ErrorCode
from serve.fragments import error_fragment, wants_html

log = logging.getLogger("serve")

# On every answer to a picture or a verdict, and on every error: they are about one request, never to be cached or
# replayed by a browser or a proxy.
NO_STORE = {"Cache-Control": "no-store"}

RETRY_AFTER = {"Retry-After": "1"}


class ApiError(Exception):
    """A request the service refuses on purpose: rendered as {"error": code, "detail": text} or a fragment."""

    def __init__(
        self, code: ErrorCode, detail: str, headers: dict[str, str] | None = None, *, status: int | None = None
    ) -> None:
        """`status` only for a Starlette status passed on as ErrorCode.HTTP_ERROR; every other code has its own."""
        super().__init__(detail)
        self.code = code
        self.status = status or code.status
        self.detail = detail
        self.headers = headers or {}


def not_ready() -> ApiError:
    return ApiError(ErrorCode.NOT_READY, "the model is loading or warming up; retry shortly", RETRY_AFTER)


def render_error(request: Request, error: ApiError) -> Response:
    headers = NO_STORE | error.headers
    if wants_html(request):
        return HTMLResponse(error_fragment(error.code.value, error.detail), error.status, headers=headers)
    body = {"error": error.code.value, "detail": error.detail}
    return JSONResponse(body, error.status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return render_error(request, exc)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = FOR_HTTP_STATUS.get(exc.status_code, ErrorCode.HTTP_ERROR)
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no route {request.url.path}; see /docs"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed here; allowed: {(exc.headers or {}).get('Allow', '')}"
    return render_error(request, ApiError(code, detail, dict(exc.headers or {}), status=exc.status_code))


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    # Keeps the error shape for genuine server faults (e.g. a broken model); no client input may get here,
    # which the fuzz test checks with exceptions re-raised.
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return render_error(request, ApiError(ErrorCode.INTERNAL_ERROR, "the service failed; this is a bug"))


EXCEPTION_HANDLERS = {
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    Exception: unexpected_error_handler,
}

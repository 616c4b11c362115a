"""Receiving an upload, bounded on its own, apart from decoding and inference: a byte budget for the bodies in memory,
a pace every upload must keep, a size cap; then the `file` field of a form.

A slow upload holds none of the queue's slots (those are taken once the body is in), and of the budget only the
bytes it has actually sent: 64 clients trickling 5 bytes/s hold a few hundred bytes of it, and each is cut with 408
after `grace_s`, so they cannot lock anyone out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from serve.error_codes import ErrorCode
from serve.error_responses import RETRY_AFTER, ApiError

MULTIPART = "multipart/form-data"
# Connection: close, so the rest of an upload that is refused midway is not read on a connection nobody will reuse.
CLOSE = {"Connection": "close"}


class UploadBudget:
    """The bytes of request bodies in memory at once, counted as they arrive and held until the request is answered."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    @contextlib.contextmanager
    def reservation(self) -> Iterator[Reservation]:
        reservation = Reservation(self)
        try:
            yield reservation
        finally:
            self.held -= reservation.held


class Reservation:
    """One request's share of the budget."""

    def __init__(self, budget: UploadBudget) -> None:
        self._budget = budget
        self.held = 0

    def check(self, size: int, headers: dict[str, str]) -> None:
        """503 unless `size` more bytes fit in the budget."""
        if self._budget.held + size > self._budget.capacity:
            raise ApiError(ErrorCode.OVERLOADED, "too many uploads are in memory; retry shortly", RETRY_AFTER | headers)

    def take(self, size: int, headers: dict[str, str]) -> None:
        self.check(size, headers)
        self._budget.held += size
        self.held += size


@dataclass(frozen=True)
class UploadPace:
    """How fast an upload must arrive: more than 0 bytes within `grace_s` (the first byte's deadline), then on average
    at least `min_bytes_per_s` since it started (0: no minimum), and all of it within `timeout_s`."""

    timeout_s: float
    grace_s: float
    min_bytes_per_s: int

    def deadline(self, received: int) -> float:
        """Seconds from the start by which more than `received` bytes must have arrived."""
        if self.min_bytes_per_s <= 0:
            return self.timeout_s
        # Until received / min_bytes_per_s the average stays above the minimum, however long the wait.
        return min(self.timeout_s, max(self.grace_s, received / self.min_bytes_per_s))

    def too_slow(self, received: int, deadline: float) -> ApiError:
        if deadline >= self.timeout_s:
            detail = f"the upload did not arrive within {self.timeout_s:g} s"
        elif received == 0:
            detail = f"no byte of the upload arrived within {self.grace_s:g} s"
        else:
            detail = (
                f"the upload arrives too slowly: {received} bytes in {deadline:.1f} s, "
                f"under the minimum of {self.min_bytes_per_s} bytes/s"
            )
        return ApiError(ErrorCode.BODY_TIMEOUT, detail, CLOSE)


async def read_upload(request: Request, limit: int, pace: UploadPace, reservation: Reservation) -> bytes:
    """The image bytes of a raw body or of the multipart `file` field; never buffers more than `limit`, nor past the
    budget, and cuts an upload that does not keep `pace`."""
    body = await read_body(request, limit, pace, reservation)
    if not body:
        raise ApiError(ErrorCode.EMPTY_BODY, "the request body is empty; send the image bytes or a form with `file`")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == MULTIPART:
        return await _form_file(request, body, reservation)
    # Any other content type is taken as raw image bytes: the decoder sniffs the real format.
    return body


async def read_body(request: Request, limit: int, pace: UploadPace, reservation: Reservation) -> bytes:
    too_large = ApiError(ErrorCode.BODY_TOO_LARGE, f"the body is over the {limit}-byte limit")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():  # str.isdigit alone accepts "²"
            raise ApiError(ErrorCode.BAD_REQUEST, f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise too_large  # refused before reading a single byte
    reservation.check(int(declared or 1), {})  # no room for it: 503 before reading a single byte
    # Content-Length may be absent (chunked) or wrong: count what actually arrives.
    chunks: list[bytes] = []
    total = 0
    started = anyio.current_time()
    while True:
        deadline = pace.deadline(total)
        message: Message | None = None
        with anyio.move_on_at(started + deadline):
            message = await request.receive()
        if message is None:
            raise pace.too_slow(total, deadline)
        if message["type"] == "http.disconnect":
            raise ApiError(ErrorCode.BAD_REQUEST, "the client disconnected before the body was complete")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise too_large
        reservation.take(len(chunk), CLOSE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _form_file(request: Request, body: bytes, reservation: Reservation) -> bytes:
    # The file is copied twice more while it is extracted: into the parser's spooled file (on disk past 1 MB, and
    # Cloud Run's disk is memory), then into the bytes read back from it.
    reservation.take(2 * len(body), {})

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = Request(request.scope, replay)
    try:
        form = await form_request.form(max_files=1, max_fields=16)
    except HTTPException as exc:  # Starlette's verdict on a malformed multipart body
        raise ApiError(ErrorCode.BAD_REQUEST, f"malformed multipart body: {exc.detail}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            found = "a text field" if upload is not None else "no such field"
            raise ApiError(ErrorCode.MISSING_FILE, f"the form needs a file in the field `file` ({found})")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise ApiError(ErrorCode.EMPTY_FILE, "the uploaded file is empty")
    return data

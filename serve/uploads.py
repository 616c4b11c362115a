"""Getting the uploaded bytes out of a request: a size-capped body read, and the `file` field of a form."""

from __future__ import annotations

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from serve.errors import ApiError

MULTIPART = "multipart/form-data"


async def read_upload(request: Request, limit: int, timeout_s: float) -> bytes:
    """The image bytes of a raw body or of the multipart `file` field; never buffers more than `limit`, and gives
    the upload `timeout_s` seconds to arrive."""
    try:
        with anyio.fail_after(timeout_s):
            body = await read_body(request, limit)
    except TimeoutError:
        # Connection: close, so the rest of a trickling upload is not read on a connection nobody will reuse.
        raise ApiError(
            408, "body_timeout", f"the upload did not arrive within {timeout_s:g} s", {"Connection": "close"}
        ) from None
    if not body:
        raise ApiError(400, "empty_body", "the request body is empty; send the image bytes or a form with `file`")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == MULTIPART:
        return await _form_file(request, body)
    # Any other content type is taken as raw image bytes: the decoder sniffs the real format.
    return body


async def read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, "body_too_large", f"the body is over the {limit}-byte limit")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():  # str.isdigit alone accepts "²"
            raise ApiError(400, "bad_request", f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise too_large  # refused before reading a single byte
    # Content-Length may be absent (chunked) or wrong: count what actually arrives.
    chunks, total = [], 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "bad_request", "the client disconnected before the body was complete") from None
    return b"".join(chunks)


async def _form_file(request: Request, body: bytes) -> bytes:
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    form_request = Request(request.scope, replay)
    try:
        form = await form_request.form(max_files=1, max_fields=16)
    except HTTPException as exc:  # Starlette's verdict on a malformed multipart body
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc.detail}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            found = "a text field" if upload is not None else "no such field"
            raise ApiError(400, "missing_file", f"the form needs a file in the field `file` ({found})")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    return data

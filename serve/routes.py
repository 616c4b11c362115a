"""The HTTP endpoints. Errors are raised as ApiError and rendered by serve.errors (JSON or fragment)."""

from __future__ import annotations

from functools import partial
from time import perf_counter

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from serve.batching import NotRunning, Overloaded
from serve.errors import ApiError
from serve.fragments import result_fragment, wants_html
from serve.imaging import to_model_input, to_model_input_if_cheap
from serve.openapi import DOCS_CSP, docs_page, openapi_spec
from serve.scoring import answer
from serve.uploads import read_upload

RETRY_AFTER = {"Retry-After": "1"}


def not_ready() -> ApiError:
    return ApiError(503, "not_ready", "the model is loading or warming up; retry shortly", RETRY_AFTER)


async def classify(request: Request) -> Response:
    state = request.app.state
    if not state.ready:
        raise not_ready()
    model = state.model
    try:
        # The slot before the body: a full queue answers 503 at once, without receiving or buffering the upload,
        # so saturation costs no body reads and at most `queue_size` bodies are ever in memory.
        with state.batcher.slot():
            data = await read_upload(request, state.settings.max_body_bytes, state.settings.body_timeout_s)
            started = perf_counter()
            options = {"size": model.input_size, "policy": model.resize, "max_pixels": state.settings.max_pixels}
            # A thumbnail is decoded right here; anything bigger in a decode thread, off the event loop.
            pixels = to_model_input_if_cheap(data, **options)
            if pixels is None:
                convert = partial(to_model_input, data, **options)
                pixels = await anyio.to_thread.run_sync(convert, limiter=state.decode_limiter)
            state.metrics.decode_seconds.observe(perf_counter() - started)
            logits = await state.batcher.infer(pixels)
    except Overloaded:
        raise ApiError(503, "overloaded", "too many requests in the queue; retry shortly", RETRY_AFTER) from None
    except NotRunning:
        raise not_ready() from None
    result = answer(logits, model.labels, state.settings.top_k, {"name": model.name, "version": model.version})
    if wants_html(request):
        return HTMLResponse(result_fragment(result))
    return JSONResponse(result)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    if not request.app.state.ready:
        raise not_ready()
    return JSONResponse({"status": "ready"})


async def model_info(request: Request) -> Response:
    if request.app.state.model is None:
        raise not_ready()
    return JSONResponse(request.app.state.model.describe())


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    return Response(registry.exposition(), media_type=registry.content_type)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_spec())


async def docs(request: Request) -> Response:
    return HTMLResponse(docs_page(), headers={"Content-Security-Policy": DOCS_CSP})


ROUTES = [
    Route("/classify", classify, methods=["POST"]),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/model", model_info),
    Route("/metrics", metrics),
    Route("/openapi.json", openapi),
    Route("/docs", docs),
]

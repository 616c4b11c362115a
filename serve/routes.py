"""The HTTP endpoints. Errors are raised as ApiError and rendered by serve.errors (JSON or fragment)."""

from __future__ import annotations

import contextlib
from time import perf_counter
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from contract import prediction_log as plog
from contract.feedback_token import input_digest
from contract.model_file import EMBEDDING_NAME, OUTLIER_SCORE_NAME, OUTPUT_NAME
from serve.batching import NotRunning, Overloaded
from serve.decode_budget import decode_budget, decode_in_thread
from serve.errors import NO_STORE, ApiError, not_ready
from serve.explanations import explain
from serve.feedback import feedback
from serve.fragments import result_fragment, wants_html
from serve.imaging import (
    CorruptImage,
    ImageRejected,
    NotAnImage,
    TooManyPixels,
    to_model_input_if_cheap,
)
from serve.openapi import DOCS_CSP, docs_page, openapi_spec
from serve.prediction_log import Prediction
from serve.scoring import answer
from serve.site_config import site_config
from serve.thumbnails import thumbnail_base64
from serve.uploads import UploadPace, read_upload, upload_budget

RETRY_AFTER = {"Retry-After": "1"}
EXPLAIN_VALUES = ("1", "true")  # ?explain=1: the answer says where the model looked (serve/explanations.py)
# How each way a picture fails to decode is answered; the detail is the decoder's own sentence.
IMAGE_ERRORS: dict[type[ImageRejected], tuple[int, str]] = {
    TooManyPixels: (413, "too_many_pixels"),
    NotAnImage: (415, "not_an_image"),
    CorruptImage: (422, "corrupt_image"),
}


def rejected(error: ImageRejected) -> ApiError:
    status, code = IMAGE_ERRORS[type(error)]
    return ApiError(status, code, str(error))


async def classify(request: Request) -> Response:
    state = request.app.state
    if not state.ready:
        raise not_ready()
    model, settings = state.model, state.settings
    received = perf_counter()
    facts: dict[str, Any] = {}  # the upload's format and declared size, for the prediction log
    try:
        if state.batcher.full:
            raise Overloaded  # at once, without receiving the upload: saturation costs no body reads
        with contextlib.ExitStack() as held:
            # Receiving is bounded apart from the queue (serve/uploads.py): a slow upload holds the bytes it sent of
            # the upload budget, and is cut when it falls below the minimum pace, but never holds a queue slot.
            reservation = held.enter_context(upload_budget(state).reservation())
            pace = UploadPace(settings.body_timeout_s, settings.upload_grace_s, settings.min_upload_bytes_per_s)
            data = await read_upload(request, settings.max_body_bytes, pace, reservation)
            held.enter_context(state.batcher.slot())  # once the body is in: for decoding, waiting and inference
            started = perf_counter()
            options = {"size": model.input_size, "policy": model.resize, "max_pixels": state.settings.max_pixels}
            try:
                # A thumbnail is decoded right here; anything bigger in a decode thread, off the event loop.
                pixels = to_model_input_if_cheap(data, facts=facts, **options)
                if pixels is None:  # within the memory budget for decoding (serve/decode_budget.py)
                    budget, limiter = decode_budget(state), state.decode_limiter
                    pixels = await decode_in_thread(data, budget=budget, limiter=limiter, facts=facts, **options)
            except ImageRejected as error:
                raise rejected(error) from None
            state.metrics.decode_seconds.observe(perf_counter() - started)
            output = await state.batcher.infer(pixels)
    except Overloaded:
        raise ApiError(503, "overloaded", "too many requests in the queue; retry shortly", RETRY_AFTER) from None
    except NotRunning:
        raise not_ready() from None
    row = dict(zip(state.outputs, output, strict=True))
    result = answer(
        row[OUTPUT_NAME],
        model.labels,
        state.settings.top_k,
        {"name": model.name, "version": model.version},
        outlier_score=row.get(OUTLIER_SCORE_NAME),
        outlier_threshold=model.outlier_threshold,
    )
    embedding = row.get(EMBEDDING_NAME)
    result["request_id"] = request.state.request_id
    if request.query_params.get("explain") in EXPLAIN_VALUES:
        result["explanation"] = await explain(model, pixels, result["label"])
    digest = input_digest(pixels)
    result["feedback_token"] = state.feedback.mint(result["request_id"], model.version, result["label"], digest)
    latency_ms = (perf_counter() - received) * 1000
    record_prediction(state, result, pixels, embedding, latency_ms, facts | {"bytes": len(data)}, digest)
    if wants_html(request):
        fragment = result_fragment(
            result, labels=model.labels, thumbnail=thumbnail_base64(pixels), explainable=model.has_class_activation
        )
        return HTMLResponse(fragment, headers=NO_STORE)
    return JSONResponse(result, headers=NO_STORE)


def record_prediction(
    state: State, result: dict, pixels, embedding, latency_ms: float, upload: dict, digest: str
) -> None:
    """The answer's metrics, and its line handed to the prediction log's writer, through the shadow challenger when
    it takes the request (neither is waited for)."""
    state.metrics.predictions.labels(result["label"]).inc()
    state.metrics.confidence.observe(result["score"])
    if result.get("outlier"):
        state.metrics.outliers.inc()
    if state.prediction_log is None and state.shadow is None:
        return
    model = state.model
    prediction = Prediction(
        request_id=result["request_id"],
        time=plog.now(),
        model_name=model.name,
        model_version=model.version,
        result=result,
        latency_ms=latency_ms,
        upload=upload,
        pixels=pixels,
        embedding=embedding,
        input_digest=digest,
    )
    if state.shadow is not None and state.shadow.offer(prediction, busy=state.batcher.waiting > 0):
        return
    if state.prediction_log is not None:
        state.prediction_log.submit(prediction)


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


async def site_config_info(request: Request) -> Response:
    # Answered before the model is ready too: all but the metric are the service's own facts.
    state = request.app.state
    return JSONResponse(site_config(state.settings, state.model))


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    return Response(registry.exposition(), media_type=registry.content_type)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_spec())


async def docs(request: Request) -> Response:
    return HTMLResponse(docs_page(), headers={"Content-Security-Policy": DOCS_CSP})


ROUTES = [
    Route("/classify", classify, methods=["POST"]),
    Route("/feedback", feedback, methods=["POST"]),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/model", model_info),
    Route("/site-config", site_config_info),
    Route("/metrics", metrics),
    Route("/openapi.json", openapi),
    Route("/docs", docs),
]

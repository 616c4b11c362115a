"""The HTTP endpoints: each maps a request onto the service (serve/service.py) and its answer onto a response (JSON
or an htmx fragment). Errors are raised as ApiError and rendered by serve.error_responses, the same two ways."""

from __future__ import annotations

from time import perf_counter

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from serve.error_responses import NO_STORE, not_ready
from serve.feedback import feedback
from serve.fragments import result_fragment, wants_html
from serve.openapi import DOCS_CSP, docs_page, openapi_spec
from serve.schemas import ENCODER
from serve.service import Service
from serve.site_config import site_config
from serve.thumbnails import thumbnail_base64
from serve.uploads import read_upload

EXPLAIN_VALUES = ("1", "true")  # ?explain=1: the answer says where the model looked (serve/explanations.py)


def service_of(request: Request) -> Service:
    return request.app.state.service


async def classify(request: Request) -> Response:
    service = service_of(request)
    received = perf_counter()
    running = service.admit()
    # Receiving is bounded apart from the queue (serve/uploads.py): a slow upload holds the bytes it sent of the
    # upload budget, and is cut when it falls below the minimum pace, but never holds a queue slot.
    with service.uploads.reservation() as reservation:
        data = await read_upload(request, service.settings.max_body_bytes, service.pace, reservation)
        with service.slot(running):
            picture = await service.decode(running, data)
            outputs = await service.infer(running, picture.pixels)
    explain_it = request.query_params.get("explain") in EXPLAIN_VALUES
    answer = await service.answer(running, outputs, picture.pixels, request.state.request_id, explain_it=explain_it)
    service.record(running, answer, picture, outputs, received, len(data))
    if wants_html(request):
        model = running.core.model
        thumbnail = thumbnail_base64(picture.pixels)
        fragment = result_fragment(
            answer, labels=model.labels, thumbnail=thumbnail, explainable=model.has_class_activation
        )
        return HTMLResponse(fragment, headers=NO_STORE)
    return Response(ENCODER.encode(answer), media_type="application/json", headers=NO_STORE)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    if not service_of(request).ready:
        raise not_ready()
    return JSONResponse({"status": "ready"})


async def model_info(request: Request) -> Response:
    model = service_of(request).model
    if model is None:
        raise not_ready()
    return JSONResponse(model.describe())


async def site_config_info(request: Request) -> Response:
    # Answered before the model is ready too: all but the metric are the service's own facts.
    service = service_of(request)
    return Response(ENCODER.encode(site_config(service.settings, service.model)), media_type="application/json")


async def metrics(request: Request) -> Response:
    registry = service_of(request).metrics
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

"""The app factory: the service (serve/service.py), its routes, middleware and error handlers, and a lifespan that
starts and stops it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from serve.error_responses import EXCEPTION_HANDLERS
from serve.middleware import ServiceMiddleware
from serve.model import LoadedModel
from serve.request_ids import HEADER as REQUEST_ID_HEADER
from serve.routes import ROUTES
from serve.service import Service
from serve.settings import Settings

HTMX_HEADERS = (
    "HX-Request",
    "HX-Current-URL",
    "HX-Target",
    "HX-Trigger",
    "HX-Trigger-Name",
    "HX-Boosted",
    "HX-Prompt",
)


def create_app(
    settings: Settings,
    *,
    model: LoadedModel | None = None,
    shadow_model: LoadedModel | None = None,
    log_sink: TextIO | None = None,
) -> Starlette:
    """`model` (and `shadow_model`, for SHADOW_MODEL_PATH) let `python -m serve` load (and fail) before the server
    starts; otherwise startup loads them. `log_sink` (a text stream) takes the prediction log's lines instead of
    PREDICTION_LOG. The service is `app.state.service`."""
    service = Service.build(settings, model=model, shadow_model=shadow_model, log_sink=log_sink)
    middleware = [Middleware(ServiceMiddleware, metrics=service.metrics, stopping=service.stopping)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                # Content-Type: the page posts /feedback as application/json, which is not a "simple" request.
                allow_headers=[*HTMX_HEADERS, "Content-Type", REQUEST_ID_HEADER],
                expose_headers=["Retry-After", REQUEST_ID_HEADER],
            )
        )
    app = Starlette(routes=ROUTES, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS, lifespan=_lifespan)
    app.state.service = service
    return app


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    service: Service = app.state.service
    await service.start()
    try:
        yield
    finally:
        await service.stop()

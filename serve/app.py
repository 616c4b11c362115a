"""The app factory: routes, middleware, error handlers, and a lifespan that loads and warms up the model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from serve.batching import MicroBatcher
from serve.errors import EXCEPTION_HANDLERS
from serve.metrics import Metrics, MetricsMiddleware
from serve.model import LoadedModel, load_model
from serve.routes import ROUTES
from serve.settings import Settings

log = logging.getLogger("serve")

HTMX_HEADERS = (
    "HX-Request",
    "HX-Current-URL",
    "HX-Target",
    "HX-Trigger",
    "HX-Trigger-Name",
    "HX-Boosted",
    "HX-Prompt",
)


def create_app(settings: Settings, *, model: LoadedModel | None = None) -> Starlette:
    """`model` lets `python -m serve` load (and fail) before the server starts; otherwise startup loads it."""
    metrics = Metrics()
    middleware = [Middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=HTMX_HEADERS,
                expose_headers=["Retry-After"],
            )
        )
    app = Starlette(routes=ROUTES, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS, lifespan=_lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.model = model
    app.state.batcher = None
    app.state.ready = False
    return app


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    state, settings = app.state, app.state.settings
    if state.model is None:
        state.model = await anyio.to_thread.run_sync(
            lambda: load_model(settings.model_path, threads=settings.ort_threads)
        )
    model: LoadedModel = state.model
    # The first runs allocate and pick kernels; do them now at the largest batch, not on a user's request.
    warm_up = np.zeros((settings.batch_max_size, *model.input_size, 3), dtype=np.uint8)
    await anyio.to_thread.run_sync(model.run, warm_up)
    state.decode_limiter = anyio.CapacityLimiter(settings.decode_concurrency)
    state.batcher = MicroBatcher(
        model.run,
        max_batch=settings.batch_max_size,
        max_wait_s=settings.batch_max_wait_ms / 1000,
        capacity=settings.queue_size,
        metrics=state.metrics,
    )
    state.batcher.start()
    quantization = model.metadata.get("quantization", "none")
    state.metrics.model_info.labels(model.name, model.version, quantization).set(1)
    state.ready = True
    log.info("model %s %s ready (%s, input %s)", model.name, model.version, model.path, model.input_size)
    try:
        yield
    finally:
        # The server has stopped taking requests and waited for in-flight ones; finish anything still queued.
        state.ready = False
        await state.batcher.stop()

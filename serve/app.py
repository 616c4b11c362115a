"""The app factory: routes, middleware, error handlers, and a lifespan that loads and warms up the model."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import anyio
import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from contract.prediction_log import VERDICTS
from serve.batching import MicroBatcher
from serve.draining import CutUploadsOnStop, Stopping
from serve.errors import EXCEPTION_HANDLERS
from serve.feedback import FeedbackKeys
from serve.metrics import Metrics, MetricsMiddleware
from serve.model import LoadedModel, load_configured, load_shadow
from serve.prediction_log import PredictionLog
from serve.rate_limit import RateLimiter
from serve.request_ids import HEADER as REQUEST_ID_HEADER
from serve.request_ids import RequestIdMiddleware
from serve.routes import ROUTES
from serve.settings import Settings
from serve.shadow import OUTCOMES, Shadow, check_challenger
from serve.spinning import spin_switch

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


def feedback_signing_keys(settings: Settings) -> tuple[bytes, ...]:
    """FEEDBACK_KEY's keys; unset (never on Cloud Run: Settings refuses), a random key of this process alone."""
    if settings.feedback_keys:
        return settings.feedback_keys
    log.warning(
        "FEEDBACK_KEY is unset: feedback tokens are signed with a random key of this process; feedback to answers "
        "from before a restart, or from another instance, will be refused"
    )
    return (secrets.token_bytes(32),)


def create_app(
    settings: Settings,
    *,
    model: LoadedModel | None = None,
    shadow_model: LoadedModel | None = None,
    log_sink: TextIO | None = None,
) -> Starlette:
    """`model` (and `shadow_model`, for SHADOW_MODEL_PATH) let `python -m serve` load (and fail) before the server
    starts; otherwise startup loads them. `log_sink` (a text stream) takes the prediction log's lines instead of
    PREDICTION_LOG."""
    metrics = Metrics()
    stopping = Stopping()  # set by the server when its graceful shutdown begins (serve/server.py)
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(MetricsMiddleware, metrics=metrics, routes=ROUTES),
        Middleware(CutUploadsOnStop, stopping=stopping),
    ]
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
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.stopping = stopping
    app.state.model = model
    app.state.batcher = None
    app.state.spin_switch = None  # ORT_SPINNING=auto (serve/spinning.py), set by the lifespan
    app.state.ready = False
    app.state.outputs = []  # the model's outputs each answer reads (LoadedModel.answer_outputs), set by the lifespan
    app.state.feedback = FeedbackKeys(feedback_signing_keys(settings), settings.feedback_window_s)
    app.state.feedback_limiter = RateLimiter(settings.feedback_per_minute, settings.feedback_burst)
    app.state.shadow_model = shadow_model
    app.state.shadow = None  # serve/shadow.py, set by the lifespan when SHADOW_MODEL_PATH is set
    app.state.prediction_log = None
    if settings.prediction_log or log_sink is not None:
        app.state.prediction_log = PredictionLog(
            settings.prediction_log,
            capacity=settings.prediction_log_queue,
            on_drop=metrics.prediction_log_dropped.inc,
            sink=log_sink,
        )
    return app


def start_shadow(state, settings: Settings, champion: LoadedModel, prediction_log: PredictionLog | None) -> Shadow:
    """The shadow challenger (loaded here unless `python -m serve` already did), checked against the champion."""
    challenger = state.shadow_model or load_shadow(settings)
    check_challenger(champion, challenger)
    challenger.run(np.zeros((settings.batch_max_size, *challenger.input_size, 3), dtype=np.uint8))  # warm up
    shadow = Shadow(
        challenger,
        settings.shadow_share,
        capacity=settings.queue_size,
        count=lambda outcome: state.metrics.shadow_answers.labels(outcome).inc(),
        write=None if prediction_log is None else prediction_log.submit,
    )
    for outcome in OUTCOMES:
        state.metrics.shadow_answers.labels(outcome)
    shadow.start()
    log.info("shadow model %s %s answers %.0f%% of requests", challenger.name, challenger.version,
             100 * settings.shadow_share)  # fmt: skip
    return shadow


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    state, settings = app.state, app.state.settings
    if state.model is None:
        state.model = await anyio.to_thread.run_sync(lambda: load_configured(settings))
    model: LoadedModel = state.model
    # The first runs allocate and pick kernels; do them now at the largest batch, not on a user's request.
    warm_up = np.zeros((settings.batch_max_size, *model.input_size, 3), dtype=np.uint8)
    await anyio.to_thread.run_sync(model.run, warm_up)
    state.decode_limiter = anyio.CapacityLimiter(settings.decode_concurrency)
    prediction_log: PredictionLog | None = state.prediction_log
    if prediction_log is not None:
        await anyio.to_thread.run_sync(prediction_log.start)  # opens the file: a bad PREDICTION_LOG fails the start
    # The embedding is asked for only when it is logged (the graph computes it anyway, as the logits' input).
    state.outputs = model.answer_outputs(embedding=prediction_log is not None)
    outputs = state.outputs

    def infer(images: np.ndarray) -> tuple[np.ndarray, ...]:
        return model.outputs(outputs, images)

    state.spin_switch = spin_switch(model, settings)
    state.batcher = MicroBatcher(
        infer,
        max_batch=settings.batch_max_size,
        max_wait_s=settings.batch_max_wait_ms / 1000,
        capacity=settings.queue_size,
        metrics=state.metrics,
        after_batch=None if state.spin_switch is None else state.spin_switch.observe,
    )
    state.batcher.start()
    if settings.shadow_model_path is not None:
        state.shadow = await anyio.to_thread.run_sync(lambda: start_shadow(state, settings, model, prediction_log))
    state.metrics.model_info.labels(model.name, model.version, model.quantization).set(1)
    for label in model.labels:  # every series from the start, so rates and shares are defined before any answer
        state.metrics.predictions.labels(label)
    for verdict in VERDICTS:
        state.metrics.feedback.labels(verdict)
    state.ready = True
    log.info("model %s %s ready (%s, input %s)", model.name, model.version, model.path, model.input_size)
    try:
        yield
    finally:
        # The server has stopped taking requests and waited for in-flight ones; finish anything still queued.
        state.ready = False
        await state.batcher.stop()
        if state.shadow is not None:
            await anyio.to_thread.run_sync(state.shadow.stop)  # its queued lines, before the log closes
        if prediction_log is not None:
            await anyio.to_thread.run_sync(
                prediction_log.close
            )  # the lines of the last answers, then the file is closed

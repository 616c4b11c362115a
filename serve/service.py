"""The service: one typed application state, built in one place, and the request path on it, read top to bottom:
admit (before the body is read) -> decode -> batch and infer -> answer -> record. The routes (serve/routes.py) map HTTP
onto these steps; the steps themselves are serve/core.py's, the ones the load test's peers run too."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from time import perf_counter
from typing import TextIO

import anyio
import anyio.to_thread
import numpy as np
from msgspec import structs

from contract import prediction_log as plog
from contract.feedback_token import input_digest
from contract.prediction_log import VERDICTS
from serve.batching import MicroBatcher, NotRunning, Overloaded
from serve.core import Classifier, Outputs
from serve.decode_budget import MIB, DecodeBudget, decode_in_thread
from serve.draining import Stopping
from serve.error_codes import ErrorCode
from serve.error_responses import RETRY_AFTER, ApiError, not_ready
from serve.explanations import explain
from serve.feedback import FeedbackKeys
from serve.imaging import CorruptImage, ImageRejected, NotAnImage, Picture, TooManyPixels
from serve.log_writer import Prediction, PredictionLog
from serve.metrics import Metrics
from serve.model import LoadedModel, load_configured, load_shadow
from serve.rate_limit import RateLimiter
from serve.runtime.spinning import SpinSwitch, release_free_memory, spin_switch
from serve.schemas import Answer
from serve.settings import Settings
from serve.shadow import OUTCOMES, Shadow, check_challenger
from serve.uploads import UploadBudget, UploadPace

log = logging.getLogger("serve")

# How each way a picture fails to decode is answered; the detail is the decoder's own sentence.
IMAGE_ERRORS: dict[type[ImageRejected], ErrorCode] = {
    TooManyPixels: ErrorCode.TOO_MANY_PIXELS,
    NotAnImage: ErrorCode.NOT_AN_IMAGE,
    CorruptImage: ErrorCode.CORRUPT_IMAGE,
}


@dataclass(eq=False)
class Running:
    """What the service starts with the model (Service.start) and stops at shutdown."""

    core: Classifier
    batcher: MicroBatcher[Outputs]
    decode_limiter: anyio.CapacityLimiter  # decode threads at once (DECODE_CONCURRENCY)
    spin_switch: SpinSwitch | None  # ORT_SPINNING=auto (serve/runtime/spinning.py)
    shadow: Shadow | None  # SHADOW_MODEL_PATH (serve/shadow.py)


@dataclass(eq=False)
class Service:
    """`app.state.service`: everything a request may touch. Built by `build`; `start`/`stop` are the lifespan."""

    settings: Settings
    metrics: Metrics
    stopping: Stopping  # set by the server when its graceful shutdown begins (serve/server.py)
    feedback_keys: FeedbackKeys
    feedback_limiter: RateLimiter
    uploads: UploadBudget  # bodies in memory at once, /classify and /feedback together (serve/uploads.py)
    decodes: DecodeBudget  # bytes every decode in flight may take (serve/decode_budget.py)
    pace: UploadPace  # how fast a body must arrive
    prediction_log: PredictionLog | None
    model: LoadedModel | None = None  # given to `build` by `python -m serve` (loaded before the server starts)
    shadow_model: LoadedModel | None = None
    running: Running | None = field(default=None, repr=False)
    ready: bool = False

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        model: LoadedModel | None = None,
        shadow_model: LoadedModel | None = None,
        log_sink: TextIO | None = None,
    ) -> Service:
        metrics = Metrics()
        prediction_log = None
        if settings.prediction_log or log_sink is not None:
            prediction_log = PredictionLog(
                settings.prediction_log,
                capacity=settings.prediction_log_queue,
                on_drop=metrics.prediction_log_dropped.inc,
                sink=log_sink,
            )
        return cls(
            settings=settings,
            metrics=metrics,
            stopping=Stopping(),
            feedback_keys=FeedbackKeys(feedback_signing_keys(settings), settings.feedback_window_s),
            feedback_limiter=RateLimiter(settings.feedback_per_minute, settings.feedback_burst),
            uploads=UploadBudget(settings.receive_buffer_bytes),
            decodes=DecodeBudget(settings.decode_memory_mib * MIB),
            pace=UploadPace(settings.body_timeout_s, settings.upload_grace_s, settings.min_upload_bytes_per_s),
            prediction_log=prediction_log,
            model=model,
            shadow_model=shadow_model,
        )

    # --- life -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load (unless given) and warm up the model, then start the batcher, the log and the shadow."""
        settings = self.settings
        if self.model is None:
            self.model = await anyio.to_thread.run_sync(lambda: load_configured(settings))
        model = self.model
        # The first runs allocate and pick kernels; do them now at the largest batch, not on a user's request.
        warm_up = np.zeros((settings.batch_max_size, *model.input_size, 3), dtype=np.uint8)
        await anyio.to_thread.run_sync(model.run, warm_up)
        if self.prediction_log is not None:
            await anyio.to_thread.run_sync(self.prediction_log.start)  # a bad PREDICTION_LOG fails the start
        # The embedding is asked for only when it is logged (the graph computes it anyway, as the logits' input).
        core = Classifier(model, settings, embedding=self.prediction_log is not None)
        switch = spin_switch(model, settings)
        batcher = MicroBatcher(
            core.infer,
            max_batch=settings.batch_max_size,
            max_wait_s=settings.batch_max_wait_ms / 1000,
            capacity=settings.queue_size,
            metrics=self.metrics,
            after_batch=None if switch is None else switch.observe,
        )
        batcher.start()
        shadow = None
        if settings.shadow_model_path is not None:
            shadow = await anyio.to_thread.run_sync(self._start_shadow)
        self.running = Running(core, batcher, anyio.CapacityLimiter(settings.decode_concurrency), switch, shadow)
        self.metrics.model_info.labels(model.name, model.version, model.quantization).set(1)
        for label in model.labels:  # every series from the start, so rates and shares are defined before any answer
            self.metrics.predictions.labels(label)
        for verdict in VERDICTS:
            self.metrics.feedback.labels(verdict)
        # Loading, the golden check, the engine choice and the warm-ups freed more than the service keeps: give it
        # back now, or glibc holds it in its heap for good (idle PSS, benchmarks/loadtest.md).
        await anyio.to_thread.run_sync(release_free_memory)
        self.ready = True
        log.info("model %s %s ready (%s, input %s)", model.name, model.version, model.path, model.input_size)

    def _start_shadow(self) -> Shadow:
        """The shadow challenger (loaded here unless `python -m serve` already did), checked against the champion."""
        assert self.model is not None
        challenger = self.shadow_model or load_shadow(self.settings)
        check_challenger(self.model, challenger)
        challenger.run(np.zeros((self.settings.batch_max_size, *challenger.input_size, 3), dtype=np.uint8))  # warm up
        shadow = Shadow(
            Classifier(challenger, dataclasses.replace(self.settings, top_k=1)),
            self.settings.shadow_share,
            capacity=self.settings.queue_size,
            count=lambda outcome: self.metrics.shadow_answers.labels(outcome).inc(),
            write=None if self.prediction_log is None else self.prediction_log.submit,
        )
        for outcome in OUTCOMES:
            self.metrics.shadow_answers.labels(outcome)
        shadow.start()
        log.info("shadow model %s %s answers %.0f%% of requests", challenger.name, challenger.version,
                 100 * self.settings.shadow_share)  # fmt: skip
        return shadow

    async def stop(self) -> None:
        """The server has stopped taking requests and waited for in-flight ones: finish anything still queued (the
        batches, the shadow's lines), then the prediction log writes its last lines and closes."""
        self.ready = False
        if self.running is not None:
            await self.running.batcher.stop()
            if self.running.shadow is not None:
                await anyio.to_thread.run_sync(self.running.shadow.stop)
        if self.prediction_log is not None:
            await anyio.to_thread.run_sync(self.prediction_log.close)

    # --- the request path ---------------------------------------------------------------------------------------

    def admit(self) -> Running:
        """Before the body is read: 503 while the model loads, and at once when every queue slot is taken
        (saturation costs no body reads)."""
        running = self.running
        if not self.ready or running is None:
            raise not_ready()
        if running.batcher.full:
            raise overloaded()
        return running

    @contextlib.contextmanager
    def slot(self, running: Running) -> Iterator[None]:
        """A queue slot, taken once the body is in, held while it decodes, waits and is inferred."""
        try:
            with running.batcher.slot():
                yield
        except Overloaded:
            raise overloaded() from None

    async def decode(self, running: Running, data: bytes) -> Picture:
        """A thumbnail is decoded right here; anything bigger in a decode thread, off the event loop, within the
        memory budget for decoding (serve/decode_budget.py)."""
        started = perf_counter()
        try:
            picture = running.core.decode_if_cheap(data)
            if picture is None:
                options = running.core.decode_options
                picture = await decode_in_thread(data, budget=self.decodes, limiter=running.decode_limiter, **options)
        except ImageRejected as error:
            raise ApiError(IMAGE_ERRORS[type(error)], str(error)) from None
        self.metrics.decode_seconds.observe(perf_counter() - started)
        return picture

    async def infer(self, running: Running, pixels: np.ndarray) -> Outputs:
        try:
            return await running.batcher.infer(pixels)
        except NotRunning:
            raise not_ready() from None

    async def answer(
        self, running: Running, outputs: Outputs, pixels: np.ndarray, request_id: str, *, explain_it: bool
    ) -> Answer:
        """The classification, its id and feedback token, and where the model looked when asked."""
        classification = running.core.answer(outputs)
        model = running.core.model
        token = self.feedback_keys.mint(request_id, model.version, classification.label, input_digest(pixels))
        answer = Answer(**structs.asdict(classification), request_id=request_id, feedback_token=token)
        if explain_it:
            answer.explanation = await explain(model, pixels, answer.label)
        return answer

    def record(self, running: Running, answer: Answer, picture: Picture, outputs: Outputs, received: float, size: int):
        """The answer's metrics, and its line handed to the prediction log's writer, through the shadow challenger
        when it takes the request (neither is waited for)."""
        self.metrics.predictions.labels(answer.label).inc()
        self.metrics.confidence.observe(answer.score)
        if answer.outlier:
            self.metrics.outliers.inc()
        if self.prediction_log is None and running.shadow is None:
            return
        model = running.core.model
        prediction = Prediction(
            request_id=answer.request_id,
            time=plog.now(),
            model_name=model.name,
            model_version=model.version,
            answer=answer,
            latency_ms=(perf_counter() - received) * 1000,
            upload=picture.upload | {"bytes": size},
            pixels=picture.pixels,
            embedding=outputs.embedding,
        )
        if running.shadow is not None and running.shadow.offer(prediction, busy=running.batcher.waiting > 0):
            return
        if self.prediction_log is not None:
            self.prediction_log.submit(prediction)


def overloaded() -> ApiError:
    return ApiError(ErrorCode.OVERLOADED, "too many requests in the queue; retry shortly", RETRY_AFTER)


def feedback_signing_keys(settings: Settings) -> tuple[bytes, ...]:
    """FEEDBACK_KEY's keys; unset (never on Cloud Run: Settings refuses), a random key of this process alone."""
    if settings.feedback_keys:
        return settings.feedback_keys
    log.warning(
        "FEEDBACK_KEY is unset: feedback tokens are signed with a random key of this process; feedback to answers "
        "from before a restart, or from another instance, will be refused"
    )
    return (secrets.token_bytes(32),)

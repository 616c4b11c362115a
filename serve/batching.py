"""Micro-batching: requests that arrive together share one onnxruntime call, run off the event loop.

A request whose upload is in takes a slot (at most `capacity` at once, else `Overloaded` -> 503), then submits its
input; receiving the upload is bounded apart from this queue (serve/uploads.py).
The worker takes everything already waiting (up to `max_batch`); only when others were waiting does it linger
up to `max_wait_s` for more, so a lone request goes straight through. While a batch runs in the inference
thread, new arrivals pile up and form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Generic, TypeVar

import numpy as np

from serve.metrics import Metrics

T = TypeVar("T")


class Overloaded(Exception):
    """Every slot is taken."""


class NotRunning(Exception):
    """The batcher has not started or is shutting down."""


class MicroBatcher(Generic[T]):
    """`infer` takes a batch, uint8 [N, H, W, 3], and gives one answer per input, in order."""

    def __init__(
        self,
        infer: Callable[[np.ndarray], Sequence[T]],
        *,
        max_batch: int,
        max_wait_s: float,
        capacity: int,
        metrics: Metrics,
        after_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        """`after_batch(size, waiting)`, if given, hears of every batch once it is answered
        (serve/runtime/spinning.py)."""
        self._infer = infer
        self._after_batch = after_batch
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._capacity = capacity
        self._metrics = metrics
        self._held = 0
        self._waiting: deque[tuple[np.ndarray, asyncio.Future[T]]] = deque()
        self._arrived = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # One inference at a time: onnxruntime parallelises inside a call with its own intra-op threads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-inference")

    @property
    def waiting(self) -> int:
        """Inputs submitted and not yet taken into a batch."""
        return len(self._waiting)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work(), name="serve-batcher")

    async def stop(self) -> None:
        """Finish everything already submitted, then stop."""
        self._stopping = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    @property
    def full(self) -> bool:
        """Every slot is taken: a request arriving now can be refused before its upload is received."""
        return self._held >= self._capacity

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """A place in the bounded queue, taken once the upload is in, held while it decodes, waits and is inferred."""
        if self.full:
            raise Overloaded
        self._held += 1
        self._metrics.queue_depth.set(self._held)
        try:
            yield
        finally:
            self._held -= 1
            self._metrics.queue_depth.set(self._held)

    async def infer(self, item: np.ndarray) -> T:
        """`infer`'s answer for one input (serve.core.Outputs), batched with whatever else is waiting."""
        if self._task is None or self._stopping:
            raise NotRunning
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._arrived.set()
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = self._take(self._max_batch)
            if len(batch) > 1 and self._max_wait_s > 0:
                await self._linger(batch, loop.time() + self._max_wait_s)
            # A client that went away cancelled its future: do not spend inference on it.
            batch = [(item, future) for item, future in batch if not future.done()]
            if batch:
                await self._run(batch, loop)

    def _take(self, limit: int) -> list[tuple[np.ndarray, asyncio.Future[T]]]:
        return [self._waiting.popleft() for _ in range(min(limit, len(self._waiting)))]

    async def _linger(self, batch: list, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while len(batch) < self._max_batch and not self._stopping:
            if not self._waiting:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    return
            batch.extend(self._take(self._max_batch - len(batch)))

    async def _run(self, batch: list[tuple[np.ndarray, asyncio.Future[T]]], loop) -> None:
        inputs = np.stack([item for item, _ in batch])
        started = perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._infer, inputs)
        except Exception as exc:  # a failing model fails these requests, never the worker
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._metrics.inference_seconds.observe(perf_counter() - started)
        self._metrics.batch_size.observe(len(batch))
        for (_, future), row in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(row)
        if self._after_batch is not None:
            self._after_batch(len(batch), len(self._waiting))

"""Decoding within the memory the instance has: every decode off the event loop reserves its worst-case bytes first.

A thread limit alone (DECODE_CONCURRENCY) bounds how many images decode at once, not how much memory they take: two
50-MP WebPs of 100 KB each need about 2 GB at once. So each decode reserves `cost per declared pixel x pixels`
(serve.formats, measured) from a byte budget (DECODE_MEMORY_MIB) before it starts and gives it back when it ends;
what does not fit waits its turn, in arrival order, and an image whose cost is over the whole budget is refused
413 before any pixel is decoded. Thumbnails decoded on the event loop (serve.inline_decode) take at most
128x128 px x 20 B = 320 KB and reserve nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread

from serve.imaging import Picture, TooManyPixels, decode_cost, open_image, picture

MIB = 1024 * 1024


class DecodeBudget:
    """A byte-weighted semaphore, first come first served: `async with budget.reserve(cost):` waits until `cost`
    bytes fit beside the reservations held, and holds them for the block. Waiters are served in order, so a large
    image is not starved by a stream of small ones."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.reserved = 0
        self._waiting: deque[tuple[int, anyio.Event]] = deque()

    @asynccontextmanager
    async def reserve(self, cost: int) -> AsyncIterator[None]:
        if cost > self.capacity:
            raise ValueError(f"{cost} bytes can never fit in a budget of {self.capacity}")
        if self._waiting or self.reserved + cost > self.capacity:
            await self._wait_for(cost)
        else:
            self.reserved += cost
        try:
            yield
        finally:
            self._release(cost)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def _wait_for(self, cost: int) -> None:
        entry = (cost, anyio.Event())
        self._waiting.append(entry)
        try:
            await entry[1].wait()
        except BaseException:  # cancelled while queued, or just after being granted
            if entry in self._waiting:
                self._waiting.remove(entry)
                self._grant()  # whoever was behind it may fit now
            else:
                self._release(cost)
            raise

    def _release(self, cost: int) -> None:
        self.reserved -= cost
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.reserved + self._waiting[0][0] <= self.capacity:
            cost, granted = self._waiting.popleft()
            self.reserved += cost
            granted.set()


async def decode_in_thread(
    data: bytes,
    *,
    budget: DecodeBudget,
    limiter: anyio.CapacityLimiter,
    size: tuple[int, int],
    policy: str,
    max_pixels: int,
) -> Picture:
    """The Picture of `data`, decoded in worker threads (at most `limiter`'s at once) within `budget`: the
    header is read first (no pixels), then the decode's cost is reserved, then the pixels are decoded."""
    image = await anyio.to_thread.run_sync(partial(open_image, data, max_pixels=max_pixels), limiter=limiter)
    try:
        cost = decode_cost(image)
        if cost > budget.capacity:
            width, height = image.size
            raise TooManyPixels(
                f"image too large to decode: {width}x{height} {image.format} needs about {cost // MIB} MiB to "
                f"decode, more than the {budget.capacity // MIB} MiB this service decodes with"
            )
        # The thread is not abandoned when the request is cancelled, so the bytes stay reserved while it runs.
        async with budget.reserve(cost):
            convert = partial(picture, image, size=size, policy=policy)
            return await anyio.to_thread.run_sync(convert, limiter=limiter)
    finally:
        image.close()

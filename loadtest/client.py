"""Closed-loop load against 127.0.0.1: `concurrency` workers, each sending its next request when the last one is
answered (the way real clients behave under back-pressure, unlike an open-loop firehose), bounded in requests and
seconds. Latency is measured per request, from writing it to having read the whole response.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams, not httpx: on this 2-core machine the load
generator shares the CPUs with the server, and httpx.AsyncClient spent about 1.7 ms of CPU per request against
about 0.06 ms for this one (measured against the no-op endpoint), which would have capped every server near
500 requests/s and added a millisecond to every latency. It speaks just what our servers answer: Content-Length
bodies, keep-alive, `Connection: close`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

ALLOWED_HOSTS = ("127.0.0.1",)
SMALL_BODY = 64 * 1024


class RemoteTargetError(ValueError):
    """The load test only ever targets this machine's loopback interface."""


def check_local(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a http://127.0.0.1 URL; anything else is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ALLOWED_HOSTS:
        raise RemoteTargetError(f"refusing to load-test {url!r}: only http://127.0.0.1 is allowed")
    return parts.hostname, parts.port or 80, parts.path or "/"


class ClosedUnanswered(ConnectionError):
    """The server closed the connection before sending a byte of the response."""


class Connection:
    """One keep-alive connection; reconnects when the server closed it.

    Like a browser, it resends a request once when a reused connection closes before any answer: a server closes
    idle keep-alive connections (uvicorn does on SIGTERM), and a request already on its way then arrives at a
    closed socket without ever having been read. `resent` counts those resends.
    """

    def __init__(self, url: str, content_type: str = "image/jpeg") -> None:
        self.host, self.port, path = check_local(url)
        self._head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {content_type}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.resent = 0

    async def post(self, body: bytes) -> tuple[int, bytes]:
        reused = self._writer is not None
        try:
            return await self._exchange(body)
        except ClosedUnanswered:
            if not reused:
                raise
            self.resent += 1
            return await self._exchange(body)

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        try:
            request = f"{self._head}Content-Length: {len(body)}\r\n\r\n".encode()
            try:
                if len(body) <= SMALL_BODY:
                    self._writer.write(request + body)  # one segment: what a real client sends for a thumbnail
                else:
                    self._writer.write(request)
                    self._writer.write(body)
                response = await self._reader.readuntil(b"\r\n\r\n")
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise ClosedUnanswered(str(exc)) from exc
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                raise ClosedUnanswered("closed before the response") from exc
            lines = response.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            if "content-length" not in headers:
                raise ConnectionError("response without Content-Length")  # our servers always send one
            payload = await self._reader.readexactly(int(headers["content-length"]))
        except BaseException:
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None


def outcome(exc: BaseException) -> str:
    """A failed request, by what happened to the connection."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ClosedUnanswered):
        return "closed_unanswered"  # on a fresh connection, so not resent
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionResetError | BrokenPipeError):
        return "disconnected"  # the server closed the connection in the middle of its answer
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


@dataclass
class LevelResult:
    concurrency: int
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # of 200 responses
    statuses: Counter = field(default_factory=Counter)  # HTTP status, or what happened to the connection
    resent: int = 0  # requests resent after a keep-alive connection closed under them (none expected under load)

    def summary(self) -> dict:
        """Counts, throughput and latency percentiles in ms (None when no request succeeded)."""
        ok = np.array(self.latencies_s) * 1000
        percentiles = {"p50": 50, "p95": 95, "p99": 99, "max": 100}
        if len(ok):
            latency = {name: round(float(np.percentile(ok, q)), 3) for name, q in percentiles.items()}
            latency["mean"] = round(float(ok.mean()), 3)
        else:
            latency = dict.fromkeys([*percentiles, "mean"])
        return {
            "concurrency": self.concurrency,
            "requests": sum(self.statuses.values()),
            "ok": len(self.latencies_s),
            "seconds": round(self.elapsed_s, 3),
            "throughput_rps": round(len(self.latencies_s) / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "latency_ms": latency,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
            "resent": self.resent,
        }


async def timed_post(connection: Connection, body: bytes, timeout: float = 60) -> tuple[int | str, float, float]:
    """(status or outcome, start, latency in seconds)."""
    started = time.perf_counter()
    try:
        status, _ = await asyncio.wait_for(connection.post(body), timeout)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        connection.close()
        return outcome(exc), started, time.perf_counter() - started
    return status, started, time.perf_counter() - started


async def run_level(
    url: str,
    next_body: Callable[[], bytes],
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    on_done: Callable[[], None] | None = None,
    warmup: bool = True,
) -> LevelResult:
    """One concurrency level. Each worker first sends one uncounted request (opens its connection, warms caches)."""
    check_local(url)
    result = LevelResult(concurrency)
    connections = [Connection(url) for _ in range(concurrency)]
    if warmup:
        await asyncio.gather(*(timed_post(c, next_body()) for c in connections))
    started = time.perf_counter()
    deadline = started + max_seconds
    issued = 0

    async def worker(connection: Connection) -> None:
        nonlocal issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            status, _, latency = await timed_post(connection, next_body())
            result.statuses[status] += 1
            if status == 200:
                result.latencies_s.append(latency)
            if on_done is not None:
                on_done()

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
            result.resent += connection.resent
    result.elapsed_s = time.perf_counter() - started
    return result

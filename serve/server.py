"""The uvicorn server `python -m serve` runs: httptools with the head limits of serve/runtime/http_protocol.py, a
header on every answer, a graceful stop bounded by `SHUTDOWN_GRACE_S`, and an event loop that stays calm when file
descriptors run out (serve/runtime/event_loop.py)."""

from __future__ import annotations

import contextlib
import resource
from typing import Any

import uvicorn
from starlette.applications import Starlette

from serve.runtime.http_protocol import HeadLimits, LimitedHttpToolsProtocol
from serve.settings import Settings

# On every answer, the HTTP layer's own included: no browser may read a JSON error or a fragment as anything else.
HEADERS = [("X-Content-Type-Options", "nosniff")]


def build_server(app: Starlette, settings: Settings) -> uvicorn.Server:
    metrics = app.state.service.metrics

    def count_refusal(status: int) -> None:
        # Answered before any route was chosen, so they are `unmatched`, method unknown.
        metrics.requests.labels("unmatched", "other", str(status)).inc()

    limits = HeadLimits(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's loggers keep no handler of their own: their records go through serve/log_queue.py's queue, off
        # the event loop (its default writes the access log to stdout from the loop, where a slow reader stalls it).
        log_config=None,
        # httptools (llhttp, C), limited here: h11 has a size limit of its own but is slower (docs/performance.md).
        http=LimitedHttpToolsProtocol.configured(limits, count_refusal),
        ws="none",  # no WebSocket endpoint: an upgrade request gets a plain HTTP answer
        # The one place that reads X-Forwarded-For is serve/rate_limit.py, and only on Cloud Run (its front end's
        # entry): uvicorn's own proxy-header layer would be one more per request, trusting whatever 127.0.0.1 says.
        proxy_headers=False,
        server_header=False,
        headers=HEADERS,
        lifespan="on",
        loop="serve.runtime.event_loop:CalmSelectorEventLoop",
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]  # a float works
    )
    return GracefulServer(config, app)


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    async def startup(self, sockets: Any = None) -> None:
        raise_open_files_limit()
        await super().startup(sockets=sockets)

    async def shutdown(self, sockets: Any = None) -> None:
        # First cut the uploads still arriving (serve/draining.py), then uvicorn's drain: stop listening, let the
        # requests in flight finish for up to SHUTDOWN_GRACE_S, cancel what is left, run the lifespan's shutdown.
        self.app.state.service.stopping.set()
        await super().shutdown(sockets=sockets)


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one, as Go does at start: every connection is a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        # On failure the soft limit stays; running out is then logged now and then (serve/runtime/event_loop.py), not
        # flooded.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

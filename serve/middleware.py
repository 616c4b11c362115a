"""What every HTTP request goes through, in one layer (one coroutine and one wrapper each way instead of three,
benchmarks/request-path/): its id (serve/request_ids.py) on `request.state.request_id` and on every answer, its count
and duration in the metrics (serve/metrics.py), and its upload cut off once shutdown begins (serve/draining.py)."""

from __future__ import annotations

from time import perf_counter

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.draining import Stopping, cut_off
from serve.metrics import METHODS, Metrics
from serve.request_ids import HEADER, request_id_of


def route_of(scope: Scope) -> str:
    """The route the router chose: Starlette's router puts it in the scope on a full match, and on a partial one (a
    known path, another method: 405). Read after the request, instead of matching every route again."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    return getattr(route, "path", "other")


class ServiceMiddleware:
    """Outermost of the app's own layers, so that every answer the app gives carries the id and is counted: errors,
    CORS preflights, 404s."""

    def __init__(self, app: ASGIApp, metrics: Metrics, stopping: Stopping) -> None:
        self.app = app
        self.metrics = metrics
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client gets if the app raises before starting a response
        body_done = False

        async def receive_unless_stopping() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            message = await self.stopping.receive(receive)
            if message is None:
                raise cut_off()  # rendered by serve.error_responses like any ApiError raised while reading the body
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        metrics = self.metrics
        started = perf_counter()
        metrics.in_progress.inc()
        try:
            await self.app(scope, receive_unless_stopping, send_with_id)
        finally:
            metrics.in_progress.dec()
            route = route_of(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.requests.labels(route, method, str(status)).inc()
            metrics.latency_seconds.labels(route).observe(perf_counter() - started)

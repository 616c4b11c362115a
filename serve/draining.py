"""Stopping cleanly: once the server begins its graceful shutdown, request bodies still arriving are cut with 503
(`Connection: close`, by serve/middleware.py), so one slow upload cannot hold the stop past `SHUTDOWN_GRACE_S`; bodies
that already arrived are read and their requests answered."""

from __future__ import annotations

import anyio
from starlette.types import Message, Receive

from serve.error_codes import ErrorCode
from serve.error_responses import ApiError


class Stopping:
    """Set once, when shutdown begins (serve/server.py); `Service.stopping`. Cancels every body read waiting."""

    def __init__(self) -> None:
        self._set = False
        self._waiting: set[anyio.CancelScope] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for scope in self._waiting:
            scope.cancel()

    async def receive(self, receive: Receive) -> Message | None:
        """The next message, or None if it would have to be waited for after shutdown began."""
        with anyio.CancelScope() as scope:
            # Already stopping: a cancelled scope still lets a message that is already there through, since the
            # receive then returns without waiting; only waiting for more is cut.
            if self._set:
                scope.cancel()
            self._waiting.add(scope)
            try:
                return await receive()
            finally:
                self._waiting.discard(scope)
        return None


def cut_off() -> ApiError:
    return ApiError(
        ErrorCode.SHUTTING_DOWN,
        "the service is shutting down and the upload had not fully arrived; retry",
        {"Retry-After": "1", "Connection": "close"},
    )

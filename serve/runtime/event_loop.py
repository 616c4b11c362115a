"""The asyncio loop the server runs on: the standard one, but calm when file descriptors run out.

Python 3.11's accept loop, on EMFILE, logs a traceback and schedules a retry, and then tries again, up to `backlog`
(2048) times per wake-up: with `ulimit -n 64` and 200 idle connections it wrote 8.8 MB of log in 4 s, and the
thousands of scheduled retries failed once more each when the listening socket closed, so the stop overran 10 s.
Here the first failure ends that round (one retry, as intended), and running out is logged once every 10 s.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from typing import Any

log = logging.getLogger("serve")

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message for it
LOG_EVERY_S = 10.0


class _StopAfterExhaustion:
    """The listening socket, except that after one out-of-resources failure accept() reports "nothing waiting",
    which ends asyncio's accept round."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.exhausted = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self.exhausted:
            raise BlockingIOError
        try:
            return self.sock.accept()
        except OSError as exc:
            self.exhausted = exc.errno in OUT_OF_RESOURCES
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class CalmSelectorEventLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._accept_failures = 0
        self._accept_failure_logged = float("-inf")
        self.set_exception_handler(type(self)._handle_exception)

    def _accept_connection(self, protocol_factory: Any, sock: Any, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        listening = sock.sock if isinstance(sock, _StopAfterExhaustion) else sock
        super()._accept_connection(protocol_factory, _StopAfterExhaustion(listening), *args, **kwargs)  # type: ignore[misc]

    def _start_serving(self, protocol_factory: Any, sock: Any, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if sock.fileno() == -1:
            return  # the server closed while a retry after running out waited
        super()._start_serving(protocol_factory, sock, *args, **kwargs)  # type: ignore[misc]

    def _handle_exception(self, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILED:
            self.default_exception_handler(context)
            return
        self._accept_failures += 1
        now = time.monotonic()
        if now - self._accept_failure_logged >= LOG_EVERY_S:
            log.error("cannot accept connections: %s (%d times)", context.get("exception"), self._accept_failures)
            self._accept_failure_logged = now
            self._accept_failures = 0

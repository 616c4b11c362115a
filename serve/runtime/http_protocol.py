"""uvicorn's httptools protocol with the limits a server facing clients directly needs: the request head (request
line and headers) bounded in bytes, in header count and in time; the HTTP layer's own refusals counted in the metrics;
an `Upgrade` request answered as plain HTTP, without uvicorn's two warnings per attempt.

httptools (llhttp) has no limits of its own, and it joins a header that arrives in pieces by concatenation, so one
8-MB header was answered 200 and a 128-MB one took 16.6 s of CPU. Here the bytes of a head are counted as they
arrive and the head is refused once over `max_bytes`, so it never costs more than that plus one read (256 KiB).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# After a refusal the connection keeps reading (and dropping) what the client still sends for this long before it
# closes: closing a socket with unread data sends a reset, and the client would lose the answer with it.
LINGER_S = 1.0


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int  # request line and headers
    max_count: int  # headers
    timeout_s: float  # from the connection opening (or the previous answer) to the end of the head


class HeadRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Configure with `configured(limits, on_refused)`; `on_refused(status)` hears of every answer given here."""

    limits = HeadLimits(max_bytes=16 * 1024, max_count=100, timeout_s=5.0)

    @staticmethod
    def on_refused(status: int) -> None:
        pass

    @classmethod
    def configured(cls, limits: HeadLimits, on_refused: Callable[[int], None]) -> type[LimitedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"limits": limits, "on_refused": staticmethod(on_refused)})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_head = True  # the next byte belongs to a request head
        self._head_bytes = 0  # bytes of reads that belonged wholly to the current head
        self._field_bytes = 0  # bytes of the current head's URL and complete headers, counted by the parser
        self._header_count = 0
        self._heads = 0  # heads completed on this connection
        self._lingering = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # --- the head's deadline ---------------------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._reading_head and (self._head_bytes or self._field_bytes):
            self._refuse(408, f"the request head did not arrive within {self.limits.timeout_s:g} s")
        else:
            # Idle, or still sending a body after its answer (e.g. a 413 from Content-Length): nothing to answer.
            self.transport.close()

    # --- counting the head -----------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent: drop the rest
        self._unset_keepalive_if_required()
        at_head_start = self._reading_head
        heads_before = self._heads
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, HeadRefused):
                self._refuse(refused.status, refused.reason)
            else:
                self._refuse(400, "malformed HTTP request")  # e.g. a method that is not ASCII
            return
        except httptools.HttpParserError:
            self._refuse(400, "malformed HTTP request")
            return
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket here: the request is answered as plain HTTP, then the connection closes
        if not self._reading_head or self.transport.is_closing():
            return
        if at_head_start and self._heads == heads_before:
            self._head_bytes += len(data)  # the whole read was head
        else:
            # This head began inside the read, after a body or another request: what the parser has counted of it
            # (short of one read at most, which the next read's whole length makes up for).
            self._head_bytes = self._field_bytes
        if self._head_bytes > self.limits.max_bytes:
            self._refuse(431, f"the request head is over the {self.limits.max_bytes}-byte limit")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._field_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._field_bytes += len(url)
        if self._field_bytes > self.limits.max_bytes:
            raise HeadRefused(414, f"the URL is over the {self.limits.max_bytes}-byte limit")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._field_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self.limits.max_count:
            raise HeadRefused(431, f"more than {self.limits.max_count} request headers")
        if self._field_bytes > self.limits.max_bytes:
            raise HeadRefused(431, f"the request head is over the {self.limits.max_bytes}-byte limit")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads += 1
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()
        if self.parser.should_upgrade() and self.cycle is not None:
            self.cycle.keep_alive = False  # the parser stops at an upgrade: nothing after it would be read

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._field_bytes = 0

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            # The next head's deadline starts now, not while the answer was being computed; it also bounds a body
            # the client goes on sending after its answer.
            self._arm_head_timer()

    def _unsupported_upgrade_warning(self) -> None:
        pass  # uvicorn logs two warnings per attempt here: anyone could fill the log with them

    # --- answering a refusal ---------------------------------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` with a one-line reason, then close (not keep-alive: the stream's framing is lost)."""
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        self.on_refused(status)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an answer to an earlier pipelined request is still due: no room for ours
            return
        body = reason.encode("ascii") + b"\n"
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self._lingering = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # our side is done: the client reads the answer, then sees the end
        self.loop.call_later(LINGER_S, self.transport.close)

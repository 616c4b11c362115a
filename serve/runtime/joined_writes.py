"""One send per answer: uvicorn writes an answer's head and its body to the socket apart (two `send` calls, two trips
through the kernel's TCP stack), and the profile of the request path put those writes first among the event loop's
own costs (benchmarks/request-path/). `JoinedWrites` wraps the connection's transport: a small write is held until the
next write or the end of the event loop's current turn, whichever comes first, and goes out with it.

Order and content are unchanged, and nothing waits longer than the turn it was written in: a head whose body comes
later (a stream, `100 Continue`) leaves at the end of the turn. Everything but writing is the wrapped transport's.
"""

from __future__ import annotations

import asyncio
from typing import Any

# Writes up to this size are held (an answer's head, a JSON answer); larger ones are sent at once, after what is held.
HOLD_UP_TO = 16 * 1024


class JoinedWrites:
    __slots__ = ("_flush", "_held", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held = b""
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if not held:
            if len(data) > HOLD_UP_TO:
                self.transport.write(data)
            elif data:
                self._held = bytes(data)
                self._flush = self._loop.call_soon(self.flush)
            return
        self._held = b""
        self._flush.cancel()  # type: ignore[union-attr]  # set with every hold
        self._flush = None
        if len(data) > HOLD_UP_TO:
            self.transport.write(held)
            self.transport.write(data)
        else:
            self.transport.write(held + data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what is held now (the end of the turn, or before the connection's end)."""
        held, self._held = self._held, b""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if held and not self.transport.is_closing():
            self.transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held = b""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        return len(self._held) + self.transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

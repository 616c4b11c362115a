"""An answer leaves in one write to the socket (serve/runtime/joined_writes.py), in order, without waiting past the
event loop's turn."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState

from serve.runtime.http_protocol import HeadLimits, LimitedHttpToolsProtocol
from serve.runtime.joined_writes import HOLD_UP_TO, JoinedWrites


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def next_turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_writes_of_one_turn_leave_together(loop):
    raw = RecordingTransport()
    joined = JoinedWrites(raw, loop)
    joined.write(b"head ")
    assert raw.writes == []
    joined.write(b"body")
    assert raw.writes == [b"head body"]
    next_turn(loop)
    assert raw.writes == [b"head body"]


def test_a_lone_write_leaves_at_the_end_of_the_turn(loop):
    raw = RecordingTransport()
    joined = JoinedWrites(raw, loop)
    joined.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert joined.get_write_buffer_size() == 25
    next_turn(loop)
    assert raw.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    joined.write(b"next")
    next_turn(loop)
    assert raw.writes[-1] == b"next"


def test_a_large_body_is_not_copied_and_keeps_its_place(loop):
    raw = RecordingTransport()
    joined = JoinedWrites(raw, loop)
    big = b"x" * (HOLD_UP_TO + 1)
    joined.write(b"head")
    joined.write(big)
    joined.write(big)
    assert raw.writes == [b"head", big, big]


def test_closing_sends_what_is_held_first_and_aborting_drops_it(loop):
    raw = RecordingTransport()
    joined = JoinedWrites(raw, loop)
    joined.write(b"last answer")
    joined.close()
    assert raw.writes == [b"last answer"]
    assert raw.closed
    raw = RecordingTransport()
    joined = JoinedWrites(raw, loop)
    joined.write(b"lost")
    joined.abort()
    next_turn(loop)
    assert raw.writes == []
    assert raw.aborted


async def plain(request):
    return PlainTextResponse("hello")


async def stream(request):
    async def chunks():
        yield b"one"
        await asyncio.sleep(0.01)
        yield b"two"

    return StreamingResponse(chunks())


def serve_one(loop, path: str) -> list[bytes]:
    """The writes the service's HTTP protocol makes to answer GET `path`."""
    app = Starlette(routes=[Route("/plain", plain), Route("/stream", stream)])
    config = uvicorn.Config(app, log_config=None, lifespan="off", server_header=False)
    config.load()
    protocol_class = LimitedHttpToolsProtocol.configured(HeadLimits(16384, 100, 5.0), lambda status: None)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    raw = RecordingTransport()
    protocol.connection_made(raw)
    protocol.data_received(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())

    async def answered() -> None:
        while protocol.cycle is None or not protocol.cycle.response_complete:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)

    loop.run_until_complete(asyncio.wait_for(answered(), 5))
    protocol.connection_lost(None)
    return raw.writes


def test_the_service_sends_an_answer_in_one_write(loop):
    writes = serve_one(loop, "/plain")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\nhello")


def test_a_streamed_answer_is_not_held_back(loop):
    writes = serve_one(loop, "/stream")
    # The head with the first chunk (same turn), the second chunk when it comes, then the chunked encoding's end.
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"3\r\none\r\n")
    assert b"".join(writes[1:]) == b"3\r\ntwo\r\n0\r\n\r\n"

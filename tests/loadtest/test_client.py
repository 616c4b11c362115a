"""The load client against scripted 127.0.0.1 servers: what it counts when a connection closes under a request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from loadtest.client import Connection, run_level, timed_post

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


async def with_server(handler: Handler, client: Callable[[str], Awaitable]) -> tuple[object, list[int]]:
    """Run `client(url)` against a server calling `handler(reader, writer, connection_number)`."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer, connections[-1])
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await client(f"http://127.0.0.1:{port}/classify")
    return result, connections


def run_against(handler: Handler, client: Callable[[str], Awaitable]) -> tuple[object, list[int]]:
    return asyncio.run(with_server(handler, client))


async def answer_once_then_close_unread(reader, writer, number) -> None:
    """Answers one request per connection, then closes it as a server closes an idle keep-alive connection."""
    await read_request(reader)
    writer.write(OK)
    await writer.drain()


def test_a_request_on_a_keep_alive_connection_closed_unread_is_resent_once():
    async def two_requests(url):
        connection = Connection(url)
        first = await timed_post(connection, b"x" * 100)
        await asyncio.sleep(0.05)  # the server has closed the connection by now
        second = await timed_post(connection, b"y" * 100)
        return first[0], second[0], connection.resent

    (first, second, resent), connections = run_against(answer_once_then_close_unread, two_requests)
    assert (first, second, resent) == (200, 200, 1)
    assert len(connections) == 2  # the resend went out on a new connection


def test_a_fresh_connection_closed_unanswered_is_not_resent():
    async def close_at_once(reader, writer, number) -> None:
        await read_request(reader)

    async def one_request(url):
        connection = Connection(url)
        status, _, _ = await timed_post(connection, b"x" * 100)
        return status, connection.resent

    (status, resent), connections = run_against(close_at_once, one_request)
    assert (status, resent) == ("closed_unanswered", 0)
    assert len(connections) == 1


def test_a_connection_closed_in_the_middle_of_an_answer_counts_as_disconnected():
    async def half_an_answer(reader, writer, number) -> None:
        await read_request(reader)
        writer.write(OK)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async def two_requests(url):
        connection = Connection(url)
        statuses = [(await timed_post(connection, b"x" * 100))[0] for _ in range(2)]
        return statuses, connection.resent

    (statuses, resent), _ = run_against(half_an_answer, two_requests)
    assert statuses == [200, "disconnected"]
    assert resent == 0  # the server had started answering: not a request it never read


def test_run_level_reports_resends():
    async def level(url):
        return (await run_level(url, lambda: b"x" * 10, concurrency=1, max_requests=3, max_seconds=10)).summary()

    summary, _ = run_against(answer_once_then_close_unread, level)
    assert summary["statuses"] == {"200": 3}
    assert summary["resent"] == 3  # every request after the warm-up found its connection closed

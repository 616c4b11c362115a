"""The HTTP layer's own limits on a real `python -m serve` (127.0.0.1): oversized and overlong request heads, too
many headers, half-sent heads (slowloris), malformed requests counted in the metrics, `nosniff` on every answer,
WebSocket upgrades answered quietly, and file descriptors running out without a crash or a log flood."""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serve.test_serve_process import Server, jpeg

pytestmark = pytest.mark.slow

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[Server]:
    # A short head timeout keeps the slowloris tests quick; the uploads' own limits are out of the way.
    server = Server(
        model_path,
        HEADER_TIMEOUT_S="1",
        UPLOAD_GRACE_S="30",
        MIN_UPLOAD_BYTES_PER_S="0",
        LOG_LEVEL="info",
    )
    yield server
    assert server.stop() == 0
    log = server.proc.stdout.read()
    assert "Traceback" not in log
    assert "upgrade" not in log.lower()  # no warning per upgrade attempt
    assert "websocket" not in log.lower()


def exchange(port: int, data: bytes, *, timeout: float = 10) -> tuple[bytes, float]:
    """Send `data` (from a thread, so a big one cannot block reading), read until the server closes; the answer
    and the seconds it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.monotonic()

        def send() -> None:
            with contextlib.suppress(OSError):  # the server refused and closed before taking it all
                sock.sendall(data)

        sender = threading.Thread(target=send)
        sender.start()
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
        sender.join(timeout)
    return received, waited


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def headers_of(answer: bytes) -> dict[str, str]:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value for name, _, value in (line.partition(": ") for line in head)}


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status)[1])


@pytest.mark.parametrize("size", [64 * 1024, 8 * 1024 * 1024], ids=["64KB", "8MB"])
def test_an_oversized_header_is_refused_fast_and_closed(server, size):
    answer, waited = exchange(server.port, HEAD + b"X-Big: " + b"a" * size + b"\r\n\r\n")
    assert status_of(answer) == 431
    assert b"16384-byte limit" in answer
    assert headers_of(answer)["connection"] == "close"  # and the read above ended: the server closed it
    assert waited < 2


def test_oversized_headers_in_parallel_cost_no_memory(server):
    before = peak_rss_kb(server.proc.pid)
    big = HEAD + b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n"
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(status_of(exchange(server.port, big)[0]))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [431] * 8
    # Buffered, eight 8-MB heads would be 64 MB at least (before the limits: 702 MB).
    assert peak_rss_kb(server.proc.pid) - before < 16 * 1024


def test_too_many_headers_are_refused(server):
    def with_headers(count: int) -> bytes:  # Host, count - 2 others, Connection
        return HEAD + b"".join(b"X-H%d: 1\r\n" % i for i in range(count - 2)) + b"Connection: close\r\n\r\n"

    answer, _ = exchange(server.port, with_headers(101))
    assert status_of(answer) == 431
    assert b"more than 100 request headers" in answer
    answer, _ = exchange(server.port, with_headers(100))
    assert status_of(answer) == 200


def test_an_overlong_url_is_refused(server):
    answer, _ = exchange(server.port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer) == 414


def test_a_half_sent_head_times_out(server):
    answer, waited = exchange(server.port, HEAD)  # never finished
    assert status_of(answer) == 408
    assert headers_of(answer)["connection"] == "close"
    assert 0.8 < waited < 3


def test_an_idle_connection_is_closed_without_an_answer(server):
    answer, waited = exchange(server.port, b"")
    assert answer == b""
    assert 0.8 < waited < 3


def test_slowloris_sockets_are_all_closed_and_others_served_meanwhile(server):
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(50)]
    try:
        for i, sock in enumerate(sockets):
            sock.sendall(HEAD[: 5 + i % 20])
        status, _, _ = server.get("/healthz")
        assert status == 200
        started = time.monotonic()
        for sock in sockets:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert status_of(answer) == 408
        assert time.monotonic() - started < 3
    finally:
        for sock in sockets:
            sock.close()


def test_a_slow_body_is_not_a_slow_head(server):
    """The head deadline ends with the head: a body may take longer (its limits are the upload's own)."""
    body = jpeg((255, 0, 0))
    head = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), len(body) // 3 + 1):
            time.sleep(0.5)  # 1.5 s in all, past the 1-s head timeout
            sock.sendall(body[start : start + len(body) // 3 + 1])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert status_of(answer) == 200


def test_the_next_head_on_a_kept_alive_connection_has_its_deadline_too(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(HEAD + b"\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert status_of(first) == 200
        sock.sendall(HEAD)  # the second request, never finished
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert status_of(answer) == 408
    assert time.monotonic() - started < 3


def noisy_jpeg(size: int = 384) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_heads_are_counted_apart_from_bodies_and_pipelined_requests(server):
    body = noisy_jpeg()
    assert len(body) > 100_000  # arrives with its head, in reads far over the head limit
    head = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
    for size in (20_000, len(body)):  # the whole request in one read, and in several
        answer, _ = exchange(
            server.port, head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") % size + body[:size]
        )
        assert status_of(answer) in (200, 422), answer[:300]  # 422: a cut JPEG; never refused as a big head
    pipelined = head % len(body) + body + (HEAD + b"\r\n") * 500 + HEAD + b"Connection: close\r\n\r\n"
    answer, _ = exchange(server.port, pipelined)
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [200] * 502  # 20 KB of small pipelined heads are not one big one


def test_malformed_requests_are_answered_400_and_counted(server):
    def refused(status: str) -> float:
        _, _, text = server.get("/metrics")
        pattern = (
            rf'^serve_requests_total\{{(?=.*route="unmatched")(?=.*method="other")(?=.*status="{status}").*\}} (\S+)$'
        )
        match = re.search(pattern, text.decode(), re.M)
        return float(match[1]) if match else 0.0

    before = {status: refused(status) for status in ("400", "431")}
    answer, _ = exchange(server.port, b"GET /\x01 HTTP/1.1\r\n\r\n")
    assert status_of(answer) == 400
    assert b"malformed HTTP request" in answer
    exchange(server.port, b"NOT A REQUEST\r\n\r\n")
    exchange(server.port, HEAD + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert refused("400") == before["400"] + 2
    assert refused("431") == before["431"] + 1


def test_every_answer_says_nosniff(server):
    requests = {
        "200": HEAD + b"Connection: close\r\n\r\n",
        "404": b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "405": b"GET /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "413": b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n",
        "400": b"GET /\x01 HTTP/1.1\r\n\r\n",
        "431": HEAD + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        "408": HEAD,
    }
    for status, request in requests.items():
        answer, _ = exchange(server.port, request)
        assert status_of(answer) == int(status)
        assert headers_of(answer)["x-content-type-options"] == "nosniff", status


@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_an_upgrade_request_gets_a_plain_answer(server, upgrade):
    request = HEAD + b"Connection: Upgrade\r\nUpgrade: " + upgrade + b"\r\nSec-WebSocket-Version: 13\r\n"
    request += b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    answer, waited = exchange(server.port, request)
    assert status_of(answer) == 200
    assert answer.endswith(b'{"status":"ok"}')
    assert headers_of(answer)["connection"] == "close"
    assert waited < 2
    # No warnings: the module fixture checks the server's log once it has stopped.


def test_running_out_of_file_descriptors_neither_crashes_nor_floods_the_log(model_path):
    server = Server(model_path, open_files=64, HEADER_TIMEOUT_S="1")
    try:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(150)]
        time.sleep(2)  # accept() has been failing with EMFILE all this while
        assert server.proc.poll() is None
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 20
        while True:  # the queued connections drain, then new ones are served again
            try:
                if server.request("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.2)
    finally:
        assert server.stop() == 0
    log = server.proc.stdout.read()
    assert "Traceback" not in log
    assert len(log) < 2000, log[:2000]  # one line per 10 s (unguarded: 8.8 MB in 4 s)
    assert "Too many open files" in log

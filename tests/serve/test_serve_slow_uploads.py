"""Slow uploads against the real server on 127.0.0.1, at the default settings: 64 clients trickling 5 bytes/s
neither lock anyone out nor hold on for long, and an upload at the pace of a slow phone link is not cut."""

from __future__ import annotations

import collections
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.serve.test_serve_process import Server, jpeg

TRICKLERS = 64
DECLARED = 5_000_000  # what each trickler announces; at 5 bytes/s it would take 11 days
ATTACK_S = 6.0  # three rounds of the 2-s grace


def trickle(port: int, stop: threading.Event, answers: list[tuple[bytes, float]]) -> None:
    """Announce DECLARED bytes, send 5 a second until the server answers, reconnect; record (answer, seconds held)."""
    head = (
        f"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: {DECLARED}\r\n\r\n"
    )
    while not stop.is_set():
        started = time.monotonic()
        received = b""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(head.encode())
                sock.settimeout(0.2)
                while not stop.is_set():
                    try:
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        sock.send(b"\0")  # one byte every 0.2 s
                        continue
                    if not chunk:
                        break  # the server closed the connection
                    received += chunk
        except OSError:
            pass  # reset by the server while sending: what arrived before is the answer
        if received or not stop.is_set():
            answers.append((received, time.monotonic() - started))


@pytest.mark.slow
def test_64_trickling_uploads_do_not_lock_out_normal_requests(model_path):
    server = Server(model_path)  # the defaults: QUEUE_SIZE 64, BODY_TIMEOUT_S 20, UPLOAD_GRACE_S 2
    stop = threading.Event()
    answers: list[tuple[bytes, float]] = []
    threads = [threading.Thread(target=trickle, args=(server.port, stop, answers)) for _ in range(TRICKLERS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # every trickler connected and holding its upload open
        statuses: collections.Counter[int] = collections.Counter()
        upload = jpeg((255, 0, 0))
        end = time.monotonic() + ATTACK_S
        while time.monotonic() < end:
            statuses[server.request("/classify", upload, {"Content-Type": "image/jpeg"})[0]] += 1
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        assert server.stop() == 0
    assert set(statuses) == {200}, statuses  # before receiving was bounded on its own: all 503 for 20 s
    assert statuses[200] >= 10
    cut = [(received, held) for received, held in answers if received]
    assert len(cut) >= TRICKLERS  # each one cut at least once, and its reconnection too, mostly
    for received, held in cut:
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error"] == "body_timeout"
        assert held < 15  # the grace (2 s), well before BODY_TIMEOUT_S (20 s); loose for a busy machine


@pytest.mark.slow
def test_an_upload_at_the_pace_of_a_slow_phone_link_is_not_cut(model_path):
    server = Server(model_path)
    noise = np.random.default_rng(0).integers(0, 256, (500, 500, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    photo = buffer.getvalue()  # about 300 kB: 2.4 s at 1 Mbit/s, past the 2-s grace
    rate = 125_000
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                + f"Content-Length: {len(photo)}\r\n\r\n".encode()
            )
            started, sent, step = time.monotonic(), 0, rate // 10
            while sent < len(photo):
                sock.sendall(photo[sent : sent + step])
                sent += step
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
            received = b""
            while b"\r\n\r\n" not in received or not received.endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
    finally:
        assert server.stop() == 0
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), received
    assert "label" in json.loads(body)

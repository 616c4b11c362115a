"""SIGTERM within SHUTDOWN_GRACE_S: the request in flight is answered, an upload still trickling in is cut with 503
(`Connection: close`), and the process exits 0, on a real `python -m serve` (127.0.0.1)."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time

import anyio
import pytest

from serve.draining import Stopping
from serve.settings import Settings, SettingsError
from tests.serve.test_serve_process import Server, jpeg


def test_shutdown_grace_setting():
    assert Settings().shutdown_grace_s == 8.0  # inside the 10 s Cloud Run waits between SIGTERM and SIGKILL
    assert Settings.from_env({"SHUTDOWN_GRACE_S": "2.5"}).shutdown_grace_s == 2.5
    with pytest.raises(SettingsError, match="SHUTDOWN_GRACE_S"):
        Settings.from_env({"SHUTDOWN_GRACE_S": "-1"})


def test_a_body_that_already_arrived_is_read_after_stop_and_waiting_for_more_is_cut():
    async def arrived() -> dict:
        return {"type": "http.request", "body": b"x", "more_body": False}

    async def never() -> dict:
        await anyio.sleep(60)
        raise AssertionError("not cut")

    async def main() -> None:
        stopping = Stopping()
        results: list = []

        async def wait_for_body() -> None:
            results.append(await stopping.receive(never))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_body)
            await anyio.sleep(0.05)
            assert results == []
            stopping.set()  # cuts the read that is waiting
        assert results == [None]
        assert stopping.is_set()
        assert await stopping.receive(arrived) == await arrived()  # already there: delivered
        with anyio.fail_after(1):
            assert await stopping.receive(never) is None  # would have to wait: cut at once

    anyio.run(main)


@pytest.mark.slow
def test_sigterm_answers_the_request_in_flight_cuts_the_trickling_upload_and_exits_in_the_grace(slow_model_path):
    grace = 3.0
    # The upload's own rate limits are out of the way: only the shutdown may cut it.
    server = Server(
        slow_model_path,
        SHUTDOWN_GRACE_S=str(grace),
        BODY_TIMEOUT_S="60",
        UPLOAD_GRACE_S="60",
        MIN_UPLOAD_BYTES_PER_S="0",
    )
    try:
        trickle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        head = b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n"
        trickle.sendall(head + b"\r\n" + b"\xff\xd8" + b"\0" * 8)
        stop_trickling = threading.Event()

        def keep_trickling() -> None:
            while not stop_trickling.wait(0.2):
                try:
                    trickle.sendall(b"\0" * 10)
                except OSError:
                    return

        trickler = threading.Thread(target=keep_trickling)
        trickler.start()
        normal: list[int] = []
        classify = threading.Thread(
            target=lambda: normal.append(
                server.request("/classify", jpeg((255, 0, 0)), {"Content-Type": "image/jpeg"})[0]
            )
        )
        classify.start()
        deadline = time.monotonic() + 30
        while True:  # the upload and the classification in progress (and this /metrics request)
            text = server.get("/metrics")[2].decode()
            if float(re.search(r"^serve_requests_in_progress (\S+)$", text, re.M)[1]) >= 3:
                break
            assert time.monotonic() < deadline, "the requests never got in flight"
            time.sleep(0.02)

        server.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        answer = b""
        while chunk := trickle.recv(65536):  # until the server closes it
            answer += chunk
        cut_after = time.monotonic() - stopped_at
        stop_trickling.set()
        trickler.join(5)
        trickle.close()
        code = server.proc.wait(timeout=grace + 5)
        exited_after = time.monotonic() - stopped_at
        classify.join(10)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "shutting_down"
    assert "shutting down" in json.loads(body)["detail"]
    assert cut_after < 1.5  # cut at once, not after the grace
    assert normal == [200]  # the request in flight was answered
    assert code == 0
    assert exited_after < grace + 1
    assert "Traceback" not in server.proc.stdout.read()

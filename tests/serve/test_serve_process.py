"""`python -m serve` as a real process: one-line startup failures, real HTTP on 127.0.0.1, clean SIGTERM."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def serve_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "HOST", "MODEL_PATH", "CORS_ORIGINS"}}
    env.update({"HOST": "127.0.0.1", "LOG_LEVEL": "warning", "ORT_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def start_failure(**env: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "serve"], cwd=REPO, env=serve_env(**env), capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "file not found"),
        (b"\x08\x01garbage that is not a model", "not a valid ONNX model"),
    ],
    ids=["missing", "garbage"],
)
def test_bad_model_file_exits_with_one_line(tmp_path, content, problem):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    code, lines = start_failure(MODEL_PATH=str(path))
    assert code != 0
    assert len(lines) == 1, lines
    assert str(path) in lines[0]
    assert problem in lines[0]


def test_model_breaking_the_contract_exits_with_one_line(make_model):
    path = make_model("unknown-policy.onnx", meta={"resize": "squash"})
    code, lines = start_failure(MODEL_PATH=str(path))
    assert code != 0
    assert lines == [
        f"serve: cannot load model {path}: unknown resize policy 'squash' (this service knows: center-crop-resize)"
    ]


def test_bad_setting_exits_with_one_line(model_path):
    code, lines = start_failure(MODEL_PATH=str(model_path), PORT="http")
    assert code != 0
    assert lines == ["serve: PORT='http' is not a valid int value"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m serve` on a free 127.0.0.1 port; `open_files` caps its file descriptors (soft and hard limit)."""

    def __init__(self, model: Path, *, open_files: int | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        def limit_open_files() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve"],
            cwd=REPO,
            env=serve_env(MODEL_PATH=str(model), PORT=str(self.port), **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=limit_open_files if open_files is not None else None,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get(self, path: str) -> tuple[int, dict, bytes]:
        return self.request(path)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def server(model_path):
    server = Server(model_path)
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.slow
def test_real_server_classifies_and_stops_cleanly(server):
    status, headers, body = server.request("/classify", jpeg((255, 0, 0)), {"Content-Type": "image/jpeg"})
    assert status == 200
    answer = json.loads(body)
    assert answer["label"] == "airplane"
    assert answer["model"] == {"name": "tiny-test", "version": "0123abcd"}
    assert "server" not in {k.lower() for k in headers}  # no version banner
    status, _, metrics = server.get("/metrics")
    assert 'serve_requests_total{method="POST",route="/classify",status="200"} 1.0' in metrics.decode()
    assert server.stop() == 0
    assert "Traceback" not in server.proc.stdout.read()


@pytest.mark.slow
def test_real_server_refuses_a_huge_declared_body_without_reading_it(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/classify")
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", "1000000000")  # 1 GB announced, not a byte of it sent
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == "body_too_large"
    connection.close()
    assert server.stop() == 0


@pytest.mark.slow
def test_real_server_cuts_off_a_trickling_upload_and_frees_its_slot(model_path):
    server = Server(model_path, BODY_TIMEOUT_S="0.5", QUEUE_SIZE="1")  # one slot: a leaked one would 503 below
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head = b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            sock.sendall(head + b"Content-Length: 1000\r\n\r\n" + jpeg((255, 0, 0))[:10])  # 10 of 1,000 bytes
            started = time.monotonic()
            received = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                received += chunk
            waited = time.monotonic() - started
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body)["error"] == "body_timeout"
        assert 0.4 < waited < 5
        status, _, _ = server.request("/classify", jpeg((255, 0, 0)), {"Content-Type": "image/jpeg"})
        assert status == 200  # the slot the slow upload held is free again
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_sigterm_lets_in_flight_batches_finish(slow_model_path):
    server = Server(slow_model_path, BATCH_MAX_SIZE="8")
    upload = jpeg((0, 0, 255))
    results: list[int] = []

    def classify() -> None:
        try:
            results.append(server.request("/classify", upload, {"Content-Type": "image/jpeg"})[0])
        except OSError:
            results.append(-1)  # could not connect: the server was already closing

    threads = [threading.Thread(target=classify) for _ in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    in_flight = 0.0
    while in_flight < 2:  # at least two requests admitted and not yet answered
        _, _, text = server.get("/metrics")
        line = next(ln for ln in text.decode().splitlines() if ln.startswith("serve_queue_depth "))
        in_flight = float(line.split()[1])
        assert time.monotonic() < deadline, "requests never got in flight"
    server.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert server.proc.wait(timeout=60) == 0
    assert results.count(200) >= in_flight  # every request in flight at SIGTERM was answered
    assert set(results) <= {200, -1}


def closed_loop_statuses(server: Server, clients: int, requests: int) -> dict[str, int]:
    """Status counts of `clients` closed-loop keep-alive clients (the load test's own) sending `requests` JPEGs."""
    from loadtest.client import run_level  # numpy and asyncio only: in the serve venv too

    body = jpeg((255, 0, 0))
    url = f"{server.url}/classify"
    result = asyncio.run(
        run_level(url, lambda: body, concurrency=clients, max_requests=requests, max_seconds=30, warmup=False)
    )
    return result.summary()["statuses"]


@pytest.mark.slow
def test_closed_loop_clients_up_to_the_queue_size_never_get_a_503(model_path):
    # A slot is given back before the answer is written (serve/routes.py), so a client that sends its next request
    # as soon as it has read an answer always finds its slot free again.
    server = Server(model_path, QUEUE_SIZE="8")
    try:
        assert closed_loop_statuses(server, clients=8, requests=2000) == {"200": 2000}
        # The same load from three times as many clients overflows the 8 slots: the check above can fail.
        assert closed_loop_statuses(server, clients=24, requests=2000).get("503", 0) > 0
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_off_cloud_run_the_feedback_client_is_the_peer_whatever_it_forwards(model_path, tmp_path):
    # uvicorn's proxy-header layer is off (serve/server.py): from 127.0.0.1 it would have taken X-Forwarded-For as
    # the client's address, and every new address would have been a new bucket of feedback.
    log = tmp_path / "predictions.jsonl"
    server = Server(model_path, FEEDBACK_BURST="1", FEEDBACK_PER_MINUTE="1", PREDICTION_LOG=str(log))
    try:
        status, _, body = server.request("/classify", jpeg((255, 0, 0)), {"Content-Type": "image/jpeg"})
        assert status == 200
        answer = json.loads(body)
        feedback = json.dumps(
            {"request_id": answer["request_id"], "token": answer["feedback_token"], "label": "cat"}
        ).encode()
        statuses = [
            server.request("/feedback", feedback, {"Content-Type": "application/json", "X-Forwarded-For": address})[0]
            for address in ("203.0.113.1", "203.0.113.2")
        ]
        assert statuses == [202, 429]
    finally:
        assert server.stop() == 0

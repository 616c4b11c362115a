"""Logs that never block or lie: a stdout nobody reads stalls no answer and no health check (the access log and the
prediction log only drop and count), and a log file that runs out of room keeps whole lines only, counts each lost
line once, and starts clean when room comes back (a file-size limit on a child process plays the full disk)."""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve.log_queue import DroppingQueueHandler
from tests.serve.test_serve_endpoints import metric
from tests.serve.test_serve_process import REPO, Server, jpeg

FULL_DISK = r"""
import json, resource, signal, sys, time
from contract import prediction_log as plog
from serve.log_writer import PredictionLog

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write() fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
dropped = []
log = PredictionLog(sys.argv[1], capacity=100_000, on_drop=dropped.append)
log.start()

def line(i):
    return plog.build_feedback(request_id=f"r{i:04d}", label="cat", predicted="dog", model_version="v" * (i % 50))

for group in range(40):  # 400 lines in 40 writes of 10
    for i in range(group * 10, group * 10 + 10):
        log.submit(line(i))
    time.sleep(0.08)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # room again
for i in range(400, 410):
    log.submit(line(i))
log.close()
print(json.dumps({"dropped": sum(dropped)}))
"""


def test_a_full_disk_leaves_whole_lines_and_counts_every_lost_one(tmp_path):
    path = tmp_path / "predictions.jsonl"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(path), str(32 * 1024)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    dropped = json.loads(done.stdout.splitlines()[-1])["dropped"]
    text = path.read_text()
    assert text.endswith("\n")
    lines = [json.loads(row) for row in text.splitlines()]  # every line whole: each parses
    assert dropped > 0
    assert len(lines) + dropped == 410  # each line written whole, or counted lost, once
    assert [line["request_id"] for line in lines[-10:]] == [f"r{i:04d}" for i in range(400, 410)]  # room again
    assert len({line["request_id"] for line in lines}) == len(lines)


def get(url: str, timeout: float) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
    return time.monotonic() - started


@pytest.mark.slow
def test_a_stdout_nobody_reads_stalls_no_answer_and_no_health_check(model_path):
    """stdout is a pipe this test never reads (the access log at info level, and PREDICTION_LOG=-): it fills within a
    few hundred answers. Before, /healthz then timed out and every answer waited as long as the reader paused."""
    server = Server(model_path, LOG_LEVEL="info", PREDICTION_LOG="-", PREDICTION_LOG_QUEUE="64")
    try:
        picture = jpeg((255, 0, 0))

        def classify(_: int) -> float:
            request = urllib.request.Request(server.url + "/classify", data=picture,
                                             headers={"Content-Type": "image/jpeg"})  # fmt: skip
            started = time.monotonic()
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            return time.monotonic() - started

        with ThreadPoolExecutor(4) as pool:
            answers = pool.map(classify, range(1500))
            health = [get(server.url + "/healthz", timeout=3) for _ in range(20)]
            slowest_answer = max(answers)
        assert max(health) < 1.0
        assert slowest_answer < 5.0
        text = urllib.request.urlopen(server.url + "/metrics", timeout=3).read().decode()
        assert metric(text, "serve_prediction_log_dropped_total") > 0  # the pipe was full: lines dropped, counted
        # The access log's 1,500 records wait in its queue (CAPACITY 10,000) for a reader: none lost yet.
        assert metric(text, "serve_log_records_dropped_total") == 0
    finally:
        server.proc.kill()
        server.proc.wait()


def test_the_log_queue_drops_and_counts_exactly_what_does_not_fit():
    dropped = []
    records: queue.Queue = queue.Queue(3)
    handler = DroppingQueueHandler(records, lambda: dropped.append(1))
    logger = logging.getLogger("serve.test-log-queue")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(10):
            logger.warning("record %d", i)
    finally:
        logger.removeHandler(handler)
    assert records.qsize() == 3
    assert len(dropped) == 7
    assert records.get_nowait().getMessage() == "record 0"

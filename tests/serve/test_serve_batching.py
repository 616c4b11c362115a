"""Micro-batching, the bounded queue, readiness, and draining on shutdown."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from serve.app import create_app
from serve.batching import MicroBatcher, NotRunning, Overloaded
from serve.metrics import Metrics

COLOURS = {"airplane": (255, 0, 0), "automobile": (0, 255, 0), "bird": (0, 0, 255)}


def sample(client, name: str) -> float:
    value = client.app.state.service.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


def test_concurrent_requests_share_one_inference(make_client, gated_model, encode, wait_until):
    client = make_client(model=gated_model, batch_max_size=8, batch_max_wait_ms=0)
    gated_model.batch_sizes.clear()  # forget the warm-up
    gated_model.close()
    uploads = [encode(Image.new("RGB", (20, 20), COLOURS[label]), "PNG") for label in COLOURS]
    expected = list(COLOURS) * 2  # 6 requests, each with its own answer
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(client.post, "/classify", content=uploads[0])
        assert gated_model.entered.wait(30)  # request 1 is inside onnxruntime, alone
        rest = [pool.submit(client.post, "/classify", content=uploads[i % 3]) for i in range(1, 6)]
        wait_until(lambda: client.app.state.service.running.batcher.waiting == 5, timeout=30)
        gated_model.open()
        responses = [first.result(30)] + [f.result(30) for f in rest]
    assert [r.json()["label"] for r in responses] == expected  # each row went back to its own request
    assert gated_model.batch_sizes == [1, 5]
    assert sample(client, "serve_batch_size_count") == 2
    assert sample(client, "serve_batch_size_sum") == 6


# Waits far longer than anything on a loaded machine: a request answered before it ran out never sat out the wait.
LONG_WAIT_S = 120


def test_batch_lingers_for_stragglers_only_when_others_are_waiting(make_client, gated_model, red_png, wait_until):
    client = make_client(model=gated_model, batch_max_size=3, batch_max_wait_ms=LONG_WAIT_S * 1000)
    gated_model.batch_sizes.clear()
    gated_model.close()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.post, "/classify", content=red_png)
        assert gated_model.entered.wait(30)
        queued = [pool.submit(client.post, "/classify", content=red_png) for _ in range(2)]
        wait_until(lambda: client.app.state.service.running.batcher.waiting == 2, timeout=30)
        gated_model.open()
        assert first.result(30).status_code == 200
        # The batch of two lingers: nothing runs until a third request fills it, however long that takes.
        wait_until(lambda: client.app.state.service.running.batcher.waiting == 0, timeout=30)
        assert gated_model.batch_sizes == [1]
        late = pool.submit(client.post, "/classify", content=red_png)  # joins the lingering batch of two
        # Filled up, it runs at once: well before the max wait, which would raise TimeoutError here.
        assert all(f.result(LONG_WAIT_S / 2).status_code == 200 for f in [*queued, late])
    assert gated_model.batch_sizes == [1, 3]


def test_a_lone_request_does_not_wait(make_client, gated_model, red_png):
    client = make_client(model=gated_model, batch_max_wait_ms=LONG_WAIT_S * 1000)
    gated_model.batch_sizes.clear()
    with ThreadPoolExecutor(1) as pool:
        for _ in range(5):
            answer = pool.submit(client.post, "/classify", content=red_png)
            # Had it lingered for company, it would still be waiting for the max wait: TimeoutError here.
            assert answer.result(LONG_WAIT_S / 2).status_code == 200
    assert gated_model.batch_sizes == [1] * 5


def test_queue_full_is_503_with_retry_after(make_client, gated_model, red_png):
    client = make_client(model=gated_model, queue_size=1, batch_max_size=1)
    gated_model.close()
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(client.post, "/classify", content=red_png)
        assert gated_model.entered.wait(30)  # the one slot is taken
        refused = client.post("/classify", content=red_png)
        refused_html = client.post("/classify", content=red_png, headers={"HX-Request": "true"})
        gated_model.open()
        assert holder.result(30).status_code == 200
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "overloaded"
    assert refused_html.status_code == 503
    assert refused_html.headers["retry-after"] == "1"
    assert 'data-error="overloaded"' in refused_html.text
    assert client.post("/classify", content=red_png).status_code == 200  # the slot is free again
    assert sample(client, "serve_queue_depth") == 0


def test_a_full_queue_refuses_without_reading_the_body(make_client, gated_model, red_png):
    client = make_client(model=gated_model, queue_size=1, batch_max_size=1)
    gated_model.close()
    reads = []

    def upload():  # the test client pulls it only when the app asks for the body
        reads.append(len(red_png))
        yield red_png

    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(client.post, "/classify", content=red_png)
        assert gated_model.entered.wait(30)  # the one slot is taken
        refused = client.post("/classify", content=upload())
        gated_model.open()
        assert holder.result(30).status_code == 200
    assert refused.status_code == 503
    assert reads == []  # refused before a byte of the body was received: saturation buffers no uploads
    assert client.post("/classify", content=upload()).status_code == 200
    assert reads == [len(red_png)]


def test_readyz_is_503_until_the_model_is_loaded_and_warm(make_settings, red_png):
    app = create_app(make_settings())
    cold = TestClient(app)  # not entered: the lifespan (load + warm-up) has not run
    response = cold.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"
    assert response.headers["retry-after"] == "1"
    assert cold.post("/classify", content=red_png).status_code == 503
    assert cold.get("/model").status_code == 503
    assert cold.get("/healthz").status_code == 200  # alive all the same
    with TestClient(app) as warm:
        assert warm.get("/readyz").json() == {"status": "ready"}
        assert warm.post("/classify", content=red_png).status_code == 200
    assert app.state.service.ready is False  # shut down


def run_async(coro):
    return asyncio.run(coro)


def test_stop_finishes_everything_already_submitted():
    calls: list[int] = []

    def slow_double(batch: np.ndarray) -> list[np.ndarray]:
        calls.append(len(batch))
        time.sleep(0.05)
        return list(batch * 2)  # one answer per input

    async def scenario():
        batcher = MicroBatcher(slow_double, max_batch=4, max_wait_s=0, capacity=100, metrics=Metrics())
        batcher.start()
        tasks = [asyncio.create_task(batcher.infer(np.array([i]))) for i in range(10)]
        await asyncio.sleep(0)  # all ten are submitted
        await batcher.stop()
        with pytest.raises(NotRunning):
            await batcher.infer(np.array([0]))
        return [t.result() for t in tasks]

    results = run_async(scenario())
    assert [int(row[0]) for row in results] == [2 * i for i in range(10)]
    assert sum(calls) == 10
    assert max(calls) <= 4


def test_a_failing_batch_fails_its_requests_not_the_worker():
    def picky(batch: np.ndarray) -> list[np.ndarray]:
        if (batch < 0).any():
            raise RuntimeError("model exploded")
        return list(batch)

    async def scenario():
        batcher = MicroBatcher(picky, max_batch=1, max_wait_s=0, capacity=10, metrics=Metrics())
        batcher.start()
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.infer(np.array([-1]))
        result = await batcher.infer(np.array([7]))
        await batcher.stop()
        return result

    row = run_async(scenario())
    assert int(row[0]) == 7


def test_slots_are_bounded():
    async def scenario():
        batcher = MicroBatcher(list, max_batch=1, max_wait_s=0, capacity=2, metrics=Metrics())
        with batcher.slot(), batcher.slot(), pytest.raises(Overloaded), batcher.slot():
            pass
        with batcher.slot():  # released again
            pass

    run_async(scenario())


def test_cancelled_requests_are_skipped():
    seen: list[int] = []

    def record(batch: np.ndarray) -> list[np.ndarray]:
        seen.extend(int(x[0]) for x in batch)
        return list(batch)

    async def scenario():
        batcher = MicroBatcher(record, max_batch=8, max_wait_s=0, capacity=10, metrics=Metrics())
        batcher.start()
        gone = asyncio.create_task(batcher.infer(np.array([1])))
        kept = asyncio.create_task(batcher.infer(np.array([2])))
        await asyncio.sleep(0)  # both submitted; the worker has not taken them yet
        gone.cancel()  # the client went away before its batch ran
        result = await kept
        await batcher.stop()
        return result

    row = run_async(scenario())
    assert int(row[0]) == 2
    assert seen == [2]

"""ORT_SPINNING=auto: the session's idle threads spin while requests come one at a time and sleep once they queue,
switched by rebuilding the one session (serve/runtime/spinning.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from starlette.testclient import TestClient

from serve.app import create_app
from serve.model import load_model
from serve.runtime.spinning import SpinSwitch, spin_switch
from serve.settings import Settings

ALLOW_SPINNING = "session.intra_op.allow_spinning"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def switch():
    """A switch whose sessions are strings, on a clock the test moves: (switch, sessions used, clock)."""
    used: list[str] = []
    clock = Clock()
    built = SpinSwitch(
        lambda spinning: f"spinning={spinning}", used.append, window=4, min_dwell_s=5, clock=clock, trim_after_s=0
    )
    return built, used, clock


def feed(switch: SpinSwitch, batches: list[tuple[int, int]]) -> None:
    for size, waiting in batches:
        switch.observe(size, waiting)
        switch.join()


def test_lone_requests_make_it_spin_after_a_full_window(switch):
    switch, used, _ = switch
    feed(switch, [(1, 0)] * 3)
    assert used == []
    assert not switch.spinning
    feed(switch, [(1, 0)])
    assert used == ["spinning=True"]
    assert switch.spinning


def test_one_batch_with_company_in_the_window_keeps_it_sleeping(switch):
    switch, used, _ = switch
    feed(switch, [(1, 0), (1, 0), (1, 1), (1, 0), (1, 0), (1, 0)])  # one request found another waiting
    assert used == []
    feed(switch, [(1, 0)])  # now the last four were all alone
    assert used == ["spinning=True"]


def test_queued_requests_make_it_sleep_again_but_not_within_the_dwell(switch):
    switch, used, clock = switch
    feed(switch, [(1, 0)] * 4)
    assert switch.spinning
    feed(switch, [(8, 5), (16, 12)])
    assert used == ["spinning=True"]  # switched a moment ago: it waits out the dwell before switching back
    clock.now += 6
    feed(switch, [(8, 3)])
    assert used == ["spinning=True", "spinning=False"]
    assert not switch.spinning
    assert switch.switches == 2


def test_the_first_switch_needs_no_dwell(switch):
    switch, used, _ = switch  # the clock has not moved since the switch was made
    feed(switch, [(1, 0)] * 4)
    assert used == ["spinning=True"]


def test_a_failing_rebuild_keeps_the_session_that_works():
    used: list[object] = []
    clock = Clock()

    def fail(spinning: bool) -> object:
        raise RuntimeError("disk gone")

    switch = SpinSwitch(fail, used.append, window=2, min_dwell_s=0, clock=clock, trim_after_s=0)
    feed(switch, [(1, 0), (1, 0)])
    assert used == []
    assert not switch.spinning


def test_the_switch_is_there_only_for_auto_with_onnxruntime(model_path):
    model = load_model(model_path, threads=1)
    assert spin_switch(model, Settings(model_path=model_path, ort_spinning="off")) is None
    assert spin_switch(model, Settings(model_path=model_path, ort_spinning="on")) is None
    assert isinstance(spin_switch(model, Settings(model_path=model_path, ort_spinning="auto")), SpinSwitch)


def test_the_rebuilt_session_spins_and_answers_as_the_first(model_path):
    model = load_model(model_path, threads=1)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    before = model.run(images)
    switch = spin_switch(model, Settings(model_path=model_path, ort_threads=1, ort_spinning="auto"))
    first = model.session
    switch._switch(True)  # as observe() does after a window of lone requests
    switch.join()
    assert model.session is not first
    assert model.session.get_session_options().get_session_config_entry(ALLOW_SPINNING) == "1"
    np.testing.assert_array_equal(model.run(images), before)


def test_the_service_with_auto_answers_and_hears_of_every_batch(model_path, red_jpeg):
    settings = Settings(model_path=model_path, ort_threads=1, ort_spinning="auto", log_level="warning")
    with TestClient(create_app(settings)) as client:
        switch = client.app.state.service.running.spin_switch
        assert isinstance(switch, SpinSwitch)
        for _ in range(3):
            response = client.post("/classify", content=red_jpeg, headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200
        assert list(switch._lonely) == [True, True, True]  # each a lone request, nothing waiting behind it


@pytest.mark.parametrize("how", ["replaced", "overwritten in place"])
def test_a_model_file_changed_on_disk_changes_nothing_until_a_restart(make_model, tmp_path, red_jpeg, how, caplog):
    """The session rebuilt by ORT_SPINNING=auto comes from the bytes loaded at start: a new file moved over MODEL_PATH
    is not read, and bytes overwritten in place are refused (the switch keeps its session). Before, the rebuild read
    the new file: other answers under the old version, and 500s (`Invalid output name: embedding`) while ready."""
    path = make_model("served.onnx", embedding_dims=8)
    other = make_model("other.onnx", slow_convs=1)  # no embedding output, other weights
    settings = Settings(model_path=path, ort_threads=1, ort_spinning="auto", log_level="warning",
                        prediction_log=str(tmp_path / "log.jsonl"))  # fmt: skip
    headers = {"Content-Type": "image/jpeg"}
    with TestClient(create_app(settings)) as client:
        before = client.post("/classify", content=red_jpeg, headers=headers).json()
        if how == "replaced":
            os.replace(other, path)
        else:
            with open(path, "r+b") as handle:
                handle.write(other.read_bytes())
                handle.truncate()
        switch = client.app.state.service.running.spin_switch
        first = client.app.state.service.model.session
        switch._switch(True)  # as observe() does after a window of lone requests
        switch.join()
        assert (client.app.state.service.model.session is not first) == (how == "replaced")
        after = client.post("/classify", content=red_jpeg, headers=headers)
        assert after.status_code == 200
        assert {key: after.json()[key] for key in ("label", "score", "model")} == {
            key: before[key] for key in ("label", "score", "model")
        }
    if how != "replaced":
        assert "overwritten in place" in caplog.text

"""The canary's gate (monitor/canary.py) on recorded Prometheus API answers — pass, fail on errors, latency or
outliers, too little traffic to judge — its queries, and its smoke test against the real service."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from contract.paths import SHIPPED_DIR
from monitor import canary
from tests.servers import start

RECORDED = Path(__file__).parent / "canary"


def recorded(name: str) -> tuple[canary.Window, canary.Window]:
    answers = json.loads((RECORDED / f"{name}.json").read_text())
    return canary.window_from(answers["candidate"]), canary.window_from(answers["baseline"])


@pytest.mark.parametrize(
    ("scenario", "code", "reason"),
    [
        ("healthy", canary.EXIT_PASS, "412 requests"),
        ("errors", canary.EXIT_FAIL, "5xx rate 2.28% > 1%"),
        ("slow", canary.EXIT_FAIL, "p95 latency 171 ms > 119 ms"),
        ("outliers", canary.EXIT_FAIL, "outlier share 31.0% against 6.0%"),
        ("quiet", canary.EXIT_WAIT, "37 requests in the window, 100 needed"),
    ],
)
def test_the_gate_on_recorded_series(scenario, code, reason):
    verdict = canary.decide(*recorded(scenario))
    assert (verdict.code, reason in verdict.reason) == (code, True), verdict.reason


def test_a_first_deploy_is_judged_on_the_absolute_limits_only():
    candidate, _ = recorded("slow")
    assert canary.decide(candidate, None).code == canary.EXIT_PASS
    errors, _ = recorded("errors")
    assert canary.decide(errors, None).code == canary.EXIT_FAIL


def test_an_error_rise_within_the_absolute_limit_still_fails_against_a_clean_baseline():
    candidate = canary.Window(requests=1000, errors=8, p95_ms=80)
    assert canary.decide(candidate, canary.Window(requests=1000, errors=0, p95_ms=80)).code == canary.EXIT_FAIL
    assert canary.decide(candidate, canary.Window(requests=1000, errors=6, p95_ms=80)).code == canary.EXIT_PASS


def test_missing_series_read_as_no_traffic_and_an_api_error_is_refused():
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    window = canary.window_from(dict.fromkeys(["requests", "errors", "p95_ms", "outlier_share"], empty))
    assert window == canary.Window(0.0, 0.0, None, None)
    assert canary.decide(window, None).code == canary.EXIT_WAIT
    with pytest.raises(ValueError, match="bad_data"):
        canary.scalar({"status": "error", "error": "bad_data"})


def test_the_queries_select_the_revision_and_the_window():
    asked = canary.queries("cifar-serve", "cifar-serve-abc1234", 300)
    assert set(asked) == {"requests", "errors", "p95_ms", "outlier_share"}
    for query in asked.values():
        assert "cifar-serve-abc1234" in query
        assert "[300s]" in query
    assert 'response_code_class="5xx"' in asked["errors"]
    assert asked["p95_ms"].startswith("histogram_quantile(0.95,")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_smoke_test_passes_on_the_shipped_model_and_fails_on_wrong_answers(tmp_path, monkeypatch):
    port = free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), MODEL_PATH=str(SHIPPED_DIR / "model.int8.onnx"),
               LOG_LEVEL="warning")  # fmt: skip
    proc = start("service", [sys.executable, "-m", "serve"], env, f"http://127.0.0.1:{port}", tmp_path)
    try:
        proc.wait_ready("/readyz", 60)
        assert canary.main(["smoke", proc.url]) == canary.EXIT_PASS
        monkeypatch.setitem(canary.SMOKE_PICTURES, "cifar-cat.png", "dog")  # an answer it must not give
        verdict = canary.smoke(proc.url)
        assert verdict.code == canary.EXIT_FAIL
        assert "cifar-cat.png: cat (expected dog)" in verdict.reason
    finally:
        proc.stop()

"""`python -m loadtest --quick` against a tiny ONNX model and a tiny MLP checkpoint, and the pieces it is made of.
Benchmark figures are not asserted (they depend on the machine); the report's consistency is."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from loadtest import model_bench, payloads, report
from loadtest.__main__ import main
from loadtest.client import RemoteTargetError, check_local, run_level
from loadtest.soak import rss_stable
from tests.serve.tiny_model import build_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/classify",
        "http://10.0.0.1:8000/classify",
        "http://localhost:8000/classify",  # may resolve anywhere; only the literal loopback address is allowed
        "http://0.0.0.0:8000/classify",
        "https://127.0.0.1:8000/classify",
        "http://127.0.0.1.example.com/classify",
    ],
)
def test_client_refuses_anything_but_127_0_0_1(url):
    with pytest.raises(RemoteTargetError):
        check_local(url)
    with pytest.raises(RemoteTargetError):  # before opening a single connection
        asyncio.run(run_level(url, lambda: b"x", concurrency=1, max_requests=1, max_seconds=1))


def test_client_accepts_loopback():
    assert check_local("http://127.0.0.1:8123/classify") == ("127.0.0.1", 8123, "/classify")


def test_payloads_are_deterministic_and_realistic(tmp_path):
    bodies = payloads.build(cifar_count=8, processed_dir=tmp_path)  # no data there: synthetic CIFAR look-alikes
    again = payloads.build(cifar_count=8, processed_dir=tmp_path)
    assert bodies == again
    sizes = payloads.describe(bodies)
    assert sizes["cifar"]["size"] == [32, 32]
    assert sizes["cifar"]["count"] == 8
    assert sizes["photo"]["size"] == [640, 480]
    assert sizes["phone"]["size"] == [4000, 3000]
    assert 1_000_000 < sizes["phone"]["mean_bytes"] < 8_000_000  # a phone JPEG's few MB, under MAX_BODY_BYTES
    picker = payloads.Picker(bodies, "mix")
    drawn = [picker() for _ in range(300)]
    assert {len(b) for b in drawn} & {len(bodies["phone"][0])}, "the mix includes phone photos"


def test_rss_stability_tells_a_leak_from_noise():
    assert rss_stable([100_000 + (i % 3) * 1000 for i in range(60)])[0]
    assert not rss_stable([100_000 + i * 1000 for i in range(60)])[0]  # 1 MB/s for a minute


def test_targets_report_measured_numbers_and_verdicts():
    def entry(c, rps, p50, p99):
        return {"concurrency": c, "throughput_rps": rps, "ok": 1, "latency_ms": {"p50": p50, "p99": p99}}

    results = {
        "model": {
            "onnxruntime": {"batch1": {"median_ms": 0.9}, "peak": {"batch": 32, "images_per_s": 1000}},
            "batch1_interleaved": {"onnxruntime": {"median_ms": 1.0}, "torch": {"median_ms": 8.0}},
        },
        "servers": {
            "service": {
                "ready_s": 0.5,
                "rss_peak_mb": 120,
                "scenarios": {
                    "cifar": [entry(1, 400, 2, 2.5), entry(16, 600, 20, 30)],
                    "phone": [entry(1, 30, 35, 40)],
                },
            },
            "naive": {"scenarios": {"cifar": [entry(16, 50, 300, 400)]}},
        },
    }
    verdicts = {t["target"].split(":")[0].split(" (")[0]: t["met"] for t in report.targets(results)}
    assert verdicts["model alone, batch 1"] is False  # 8x < 10x
    assert verdicts["service req/s at concurrency 16"] is True  # 12x, then 60 %
    assert verdicts["p99 at concurrency 1"] is True
    assert verdicts["process start -> ready <= 1 s"] is True
    assert verdicts["saturation"] is None  # not measured is not "met"


def test_batch1_runtimes_are_timed_in_alternating_bursts():
    calls = []
    runs = {"fast": lambda: calls.append("fast"), "slow": lambda: (calls.append("slow"), time.sleep(0.002))}
    result = model_bench.interleaved(runs, seconds=0.05, burst=4)
    timed_calls = calls[6:]  # after three warm-up calls each
    blocks = [timed_calls[i : i + 4] for i in range(0, len(timed_calls), 4)]
    assert [set(block) for block in blocks] == [{"fast"}, {"slow"}] * (len(blocks) // 2)
    assert result["slow"]["calls"] == result["fast"]["calls"] == len(timed_calls) // 2 >= 4
    assert result["slow"]["median_ms"] >= 2 > result["fast"]["median_ms"]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, mlp_checkpoint) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("loadtest")
    model = build_model(tmp / "tiny.onnx")
    out = tmp / "out"
    argv = ["--quick", "--model", str(model), "--checkpoint", str(mlp_checkpoint), "--out-dir", str(out)]
    # A queue smaller than the soak's 16 clients: the soak must see deliberate 503s and nothing else.
    argv += ["--seconds", "1", "--serve-env", "QUEUE_SIZE=4", "--serve-env", "ORT_THREADS=1"]
    assert main(argv) == 0
    return json.loads((out / "loadtest.json").read_text()), out


@pytest.mark.slow
def test_quick_run_covers_every_server_scenario_and_level(quick_report):
    results, _ = quick_report
    assert set(results["servers"]) == {"service", "naive", "noop"}
    plan = results["settings"]["scenarios"]
    assert plan["cifar"] == [1, 4]
    for name, server in results["servers"].items():
        assert server["exit_code"] == 0, name
        assert server["ready_s"] > 0
        assert server["rss_peak_mb"] >= server["rss_ready_mb"] > 0
        assert {kind: [e["concurrency"] for e in entries] for kind, entries in server["scenarios"].items()} == plan


@pytest.mark.slow
def test_quick_run_statistics_are_sane(quick_report):
    results, _ = quick_report
    for name, server in results["servers"].items():
        for kind, entries in server["scenarios"].items():
            for e in entries:
                where = f"{name} {kind} c={e['concurrency']}"
                assert e["statuses"] == {"200": e["requests"]}, where  # low concurrency: nothing but 200
                assert e["resent"] == 0, where  # and no connection closed under a request
                assert e["requests"] > 0, where
                assert e["throughput_rps"] > 0, where
                lat = e["latency_ms"]
                assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], where
                assert e["server_cpu_ms_per_request"] >= 0, where


@pytest.mark.slow
def test_quick_run_model_soak_and_sigterm(quick_report):
    results, _ = quick_report
    model = results["model"]
    assert model["torch_eager_fp32"]["median_ms"] > 0
    paired = model["batch1_interleaved"]
    assert model["speedup_batch1"] == round(paired["torch"]["median_ms"] / paired["onnxruntime"]["median_ms"], 2) > 0
    assert model["onnxruntime"]["peak"]["images_per_s"] > 0
    soak = results["soak"]
    assert soak["only_200_and_503"], (soak["statuses"], soak["resent"], results["not_plainly_answered"])
    assert "503" in soak["statuses"], "16 clients against QUEUE_SIZE=4 must meet back-pressure"
    assert soak["rss_samples_mb"]
    assert soak["rss_mb"]["max"] > 0
    sigterm = results["sigterm"]
    assert sigterm["exit_code"] == 0
    # Answered, or never read: on its way while the server closed the idle connection, and its resend refused.
    assert set(sigterm["in_flight_at_sigterm"]) <= {"200", "503", "unread_resend_refused"}, results[
        "not_plainly_answered"
    ]
    assert sigterm["new_connections_refused_after_s"] is not None
    assert sigterm["passed"]


@pytest.mark.slow
def test_quick_run_writes_json_markdown_and_png(quick_report):
    results, out = quick_report
    assert results["machine"]["cpu"]
    assert results["machine"]["packages"]["onnxruntime"]
    assert {t["met"] for t in results["targets"]} <= {True, False, None}
    markdown = (out / "loadtest.md").read_text()
    assert "| service | cifar | 1 |" in markdown
    assert "| naive | cifar | 4 |" in markdown
    assert "## Targets" in markdown
    png = (out / "loadtest.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(out / "loadtest.png") as image:
        image.verify()

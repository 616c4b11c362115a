"""`python -m loadtest --quick` against a tiny ONNX model and a tiny MLP checkpoint, and the pieces it is made of.
Benchmark figures are not asserted (they depend on the machine); the verdicts, on constructed results whose answer is
known, and the report's consistency are."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from contract.paths import PROJECT_ROOT
from loadtest import model_bench, payloads, reporting, soak, targets
from loadtest.__main__ import main
from loadtest.client import RemoteTargetError, check_local, run_level
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
    assert soak.rss_stable([100_000 + (i % 3) * 1000 for i in range(60)])[0]
    assert not soak.rss_stable([100_000 + i * 1000 for i in range(60)])[0]  # 1 MB/s for a minute


def entry(concurrency: int, rps: float, p50: float, p99: float) -> dict:
    return {"concurrency": concurrency, "throughput_rps": rps, "ok": 1, "latency_ms": {"p50": p50, "p99": p99}}


def measured_results(*, good: bool) -> dict:
    """Results with every target measured: each one met (good) or each one missed by a clear margin."""
    service_rps = 600 if good else 300
    return {
        "model": {
            "onnxruntime": {"peak": {"batch": 32, "images_per_s": 650}},
            "batch1_interleaved": {"onnxruntime": {"median_ms": 1.0}, "torch": {"median_ms": 12.0 if good else 8.0}},
        },
        "servers": {
            "service": {
                "ready_s": 0.5 if good else 1.5,
                "rss_peak_mb": 120 if good else 180,
                "pss_ready_mb": 80 if good else 130,
                "scenarios": {
                    "cifar": [
                        entry(1, 400, 2, 2.5 if good else 5.0),
                        entry(16, service_rps, 20, 30) | {"rss_peak_so_far_mb": 110 if good else 160},
                    ],
                    "phone": [entry(1, 30, 35 if good else 45, 50)],
                },
            },
            "naive": {"scenarios": {"cifar": [entry(16, 50, 300, 400)]}},
            # The best real framework is the one with the most req/s at each level: LitServe at 1, Mosec at 16.
            "mosec": {"scenarios": {"cifar": [entry(1, 200, 4, 6), entry(16, 350 if good else 290, 40, 60)]}},
            "litserve": {"scenarios": {"cifar": [entry(1, 380 if good else 450, 3, 5), entry(16, 200, 70, 90)]}},
            "noop": {"scenarios": {"cifar": [entry(1, 5000, 0.2, 0.3), entry(16, 14000, 1, 2)]}},
        },
        "soak": {
            "seconds": 60,
            "concurrency": 128,
            "statuses": {"200": 7000, "503": 100000} if good else {"200": 7000, "503": 100000, "disconnected": 3},
            "resent": 0,
            "only_200_and_503": good,
            "rss_mb": {"first": 170, "last": 172 if good else 260, "max": 175 if good else 260},
            "rss_stable": good,
        },
        "sigterm": {
            "in_flight_at_sigterm": {"200": 70, "503": 40},
            "new_connections_refused_after_s": 0.1,
            "exit_code": 0 if good else 1,
            "exit_after_s": 1.0,
            "passed": good,
        },
    }


TARGET_IDS = [
    "model_speedup_batch1",
    "throughput_vs_naive",
    "throughput_vs_model_peak",
    "engine_share_16",
    "throughput_vs_best_peer",
    "one_client_vs_best_peer",
    "framework_floor",
    "cifar_p99_latency",
    "phone_p50_latency",
    "ready_time",
    "peak_memory_16",
    "peak_memory",
    "idle_pss",
    "saturation",
    "sigterm",
]
REFERENCE_ONLY = {"framework_floor": None}  # measured for comparison, with no threshold to meet


def test_every_target_has_its_own_stable_id_and_sentence():
    verdicts = targets.judge_all({})
    assert [v["id"] for v in verdicts] == TARGET_IDS  # ids are what reports and tests key on: renaming one breaks both
    assert len({v["target"] for v in verdicts}) == len(verdicts)


def test_targets_met_when_every_number_meets_them():
    verdicts = targets.by_id(targets.judge_all(measured_results(good=True)))
    assert {key: v["met"] for key, v in verdicts.items()} == dict.fromkeys(TARGET_IDS, True) | REFERENCE_ONLY
    assert verdicts["throughput_vs_naive"]["measured"] == "12.0x (600 vs 50 req/s)"
    assert verdicts["throughput_vs_model_peak"]["measured"] == "92% (600 vs 650 at batch 32)"
    assert verdicts["throughput_vs_best_peer"]["measured"] == "1.71x mosec (600 vs 350 req/s)"
    assert verdicts["one_client_vs_best_peer"]["measured"] == "1.05x litserve (400 vs 380 req/s)"
    assert verdicts["model_speedup_batch1"]["measured"].startswith("12.0x")
    assert verdicts["framework_floor"]["measured"] == "14000 req/s at concurrency 16; p50 0.20 ms at 1"


def test_targets_not_met_when_every_number_misses_them():
    verdicts = targets.by_id(targets.judge_all(measured_results(good=False)))
    assert {key: v["met"] for key, v in verdicts.items()} == dict.fromkeys(TARGET_IDS, False) | REFERENCE_ONLY
    assert verdicts["throughput_vs_naive"]["measured"] == "6.0x (300 vs 50 req/s)"  # the 10x-naive target, missed
    assert verdicts["throughput_vs_model_peak"]["measured"] == "46% (300 vs 650 at batch 32)"
    assert verdicts["throughput_vs_best_peer"]["measured"] == "1.03x mosec (300 vs 290 req/s)"
    assert verdicts["one_client_vs_best_peer"]["measured"] == "0.89x litserve (400 vs 450 req/s)"
    assert verdicts["cifar_p99_latency"]["measured"] == "5.00 ms"


def test_targets_not_measured_are_neither_met_nor_missed():
    for verdict in targets.judge_all({}):
        assert (verdict["measured"], verdict["met"]) == ("not measured", None), verdict["id"]


def test_targets_report_measured_numbers_and_verdicts():
    results = measured_results(good=True)
    results["model"]["batch1_interleaved"]["torch"]["median_ms"] = 8.0
    del results["soak"]
    verdicts = {key: v["met"] for key, v in targets.by_id(targets.judge_all(results)).items()}
    assert verdicts["model_speedup_batch1"] is False  # 8x < 10x
    assert verdicts["throughput_vs_naive"] is True  # 12x
    assert verdicts["throughput_vs_model_peak"] is True  # 60 %
    assert verdicts["cifar_p99_latency"] is True
    assert verdicts["ready_time"] is True
    assert verdicts["saturation"] is None  # not measured is not "met"


@pytest.mark.parametrize(("naive_rps", "met"), [(60, True), (61, False)])
def test_the_10x_naive_target_is_met_at_exactly_10x_and_not_below(naive_rps, met):
    results = measured_results(good=True)
    results["servers"]["naive"]["scenarios"]["cifar"] = [entry(16, naive_rps, 300, 400)]
    assert targets.by_id(targets.judge_all(results))["throughput_vs_naive"]["met"] is met


def test_the_committed_report_is_read_by_id_and_judged_again_alike():
    # benchmarks/loadtest.json may predate target ids: its verdicts are then matched by their sentence.
    committed = json.loads((PROJECT_ROOT / "benchmarks" / "loadtest.json").read_text())
    saved = targets.by_id(committed["targets"])
    assert list(saved) == TARGET_IDS
    for verdict in targets.judge_all(committed):
        assert (verdict["measured"], verdict["met"]) == (saved[verdict["id"]]["measured"], saved[verdict["id"]]["met"])


def answer(sent: float, ended: float, status: str = "200", resent: bool = False) -> soak.Answer:
    return soak.Answer(sent, ended, status, resent)


def timeline(answers: list[soak.Answer], attempts: list[tuple[float, bool]], exit_code: int = 0) -> soak.Timeline:
    """A soak of 10 s (SIGTERM at 10 s) with a flat RSS; the server exits 1 s after the SIGTERM."""
    return soak.Timeline(
        concurrency=4,
        started=0.0,
        soak_end=10.0,
        rss_samples_kb=[100_000] * 10,
        memory_at_end_kb={"VmRSS": 100_000, "VmHWM": 110_000},
        sigterm_at=10.0,
        exited_after_s=1.0,
        exit_code=exit_code,
        answers=answers,
        connection_attempts=attempts,
    )


CLEAN_SHUTDOWN = [(0.005, True), (0.1, False), (0.2, False)]  # refused from +0.1 s on


def test_soak_passes_on_200_and_503_only_and_fails_on_anything_else():
    answered = [answer(1, 2), answer(2, 3, "503"), answer(9.5, 10.5), answer(10.2, 10.3, "refused")]
    good = soak.soak_verdict(timeline(answered, CLEAN_SHUTDOWN))
    assert good["statuses"] == {"200": 1, "503": 1}  # judged on what was answered before the SIGTERM
    assert good["throughput_rps"] == 0.1
    assert good["only_200_and_503"] is True
    assert good["rss_stable"] is True
    dropped = soak.soak_verdict(timeline([*answered, answer(3, 4, "disconnected")], CLEAN_SHUTDOWN))
    assert dropped["only_200_and_503"] is False
    resent = soak.soak_verdict(timeline([*answered, answer(3, 4, resent=True)], CLEAN_SHUTDOWN))
    assert resent["only_200_and_503"] is False  # a connection closed under a request, even if the resend got 200


def test_sigterm_passes_when_in_flight_requests_finish_and_new_connections_are_refused():
    in_flight = [answer(9.9, 10.1), answer(9.9, 10.2, "503"), answer(9.99, 10.05, soak.UNREAD, resent=True)]
    passed = soak.sigterm_verdict(timeline(in_flight, CLEAN_SHUTDOWN))
    assert passed["in_flight_at_sigterm"] == {"200": 1, "503": 1, soak.UNREAD: 1}
    assert passed["new_connections_refused_after_s"] == 0.1
    assert passed["refused_before_exit"] is True
    assert passed["passed"] is True
    assert soak.not_plainly_answered(timeline(in_flight, CLEAN_SHUTDOWN)) == [
        {"status": soak.UNREAD, "resent": True, "sent_s": -0.01, "ended_s": 0.05}
    ]


@pytest.mark.parametrize(
    ("in_flight_status", "attempts", "exit_code"),
    [
        ("disconnected", CLEAN_SHUTDOWN, 0),  # an in-flight request dropped
        ("200", [(0.005, True), (0.1, False), (0.2, True)], 0),  # accepted again after refusing
        ("200", [(0.005, True), (0.1, True)], 0),  # never refused new connections
        ("200", CLEAN_SHUTDOWN, 1),  # a non-zero exit
    ],
)
def test_sigterm_fails_on_any_broken_rule(in_flight_status, attempts, exit_code):
    verdict = soak.sigterm_verdict(timeline([answer(9.9, 10.1, in_flight_status)], attempts, exit_code))
    assert verdict["passed"] is False


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
        assert server["processes"] == server["processes_peak"] == 1, name  # these three serve from one process
        assert server["rss_peak_source"] == "VmHWM", name  # so the kernel's own peak, as before
        assert 0 < server["pss_ready_mb"] <= server["rss_ready_mb"], name
        assert 0 < server["pss_peak_mb"] <= server["rss_peak_sampled_mb"], name
        # Samples see no more than the kernel's high-water mark (give or take its counters' lag, 64 pages a thread).
        assert server["rss_peak_sampled_mb"] <= server["rss_peak_mb"] + 4, name
        assert server["left_running"] == [], name
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
    soaked = results["soak"]
    assert soaked["only_200_and_503"], (soaked["statuses"], soaked["resent"], results["not_plainly_answered"])
    assert "503" in soaked["statuses"], "16 clients against QUEUE_SIZE=4 must meet back-pressure"
    assert soaked["rss_samples_mb"]
    assert soaked["rss_mb"]["max"] > 0
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
    markdown = (out / "loadtest.md").read_text()
    for verdict in results["targets"]:
        assert f"| {verdict['target']} | {verdict['measured']} | {reporting.met_text(verdict['met'])} |" in markdown
    assert "| service | cifar | 1 |" in markdown
    assert "| naive | cifar | 4 |" in markdown
    service = results["servers"]["service"]
    assert f"| service | 1 | {service['ready_s']:.2f} | {service['rss_ready_mb']:.0f} | " in markdown
    assert "| service | this service" in markdown  # its settings, beside any peer's
    assert "## Targets" in markdown
    png = (out / "loadtest.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(out / "loadtest.png") as image:
        image.verify()


@pytest.mark.slow
def test_quick_run_judges_what_it_measured_and_only_that(quick_report):
    results, _ = quick_report
    verdicts = targets.by_id(results["targets"])
    assert list(verdicts) == TARGET_IDS
    # --quick stops at concurrency 4: the targets at 16 are not measured, and so neither met nor missed.
    not_measured = {
        "throughput_vs_naive",
        "throughput_vs_model_peak",
        "engine_share_16",
        "throughput_vs_best_peer",  # and no peer runs in the quick run
        "one_client_vs_best_peer",
        "framework_floor",
        "peak_memory_16",
    }
    assert {key for key, v in verdicts.items() if v["measured"] == "not measured"} == not_measured
    assert all(verdicts[key]["met"] is None for key in not_measured)
    service = results["servers"]["service"]
    assert verdicts["ready_time"]["met"] is (service["ready_s"] <= 1)
    assert verdicts["peak_memory"]["met"] is (service["rss_peak_mb"] <= 150)
    levels = service["scenarios"]["cifar"]
    assert all(0 < a["rss_peak_so_far_mb"] <= b["rss_peak_so_far_mb"] for a, b in itertools.pairwise(levels))
    assert levels[-1]["rss_peak_so_far_mb"] <= service["rss_peak_mb"]  # the peak so far never passes the peak
    assert verdicts["cifar_p99_latency"]["met"] is (service["scenarios"]["cifar"][0]["latency_ms"]["p99"] <= 3)
    assert verdicts["model_speedup_batch1"]["met"] is (results["model"]["speedup_batch1"] >= 10)
    assert verdicts["saturation"]["met"] is (results["soak"]["only_200_and_503"] and results["soak"]["rss_stable"])
    assert verdicts["sigterm"]["met"] is True  # test_quick_run_model_soak_and_sigterm asserts it passed

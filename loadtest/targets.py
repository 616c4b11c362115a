"""The load test's targets: each with a stable id, the sentence the report shows, and how it is judged from the
results. Nothing is rounded in our favour; what was not measured is neither met nor missed.

Reports and tests key verdicts by id: sentences may be reworded, and two of them open with the same words."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loadtest.peers.specs import PEERS

# (measured, met): the number as the report shows it (None: not measured) and the verdict (None: no threshold).
Judgement = tuple[str | None, bool | None]


@dataclass(frozen=True)
class Target:
    id: str
    text: str
    judge: Callable[[dict], Judgement]


def level(results: dict, server: str, scenario: str, concurrency: int) -> dict | None:
    for entry in results.get("servers", {}).get(server, {}).get("scenarios", {}).get(scenario, []):
        if entry["concurrency"] == concurrency:
            return entry
    return None


def model_speedup(results: dict) -> Judgement:
    paired = results.get("model", {}).get("batch1_interleaved", {})  # both runtimes timed in alternation
    ort_b1 = paired.get("onnxruntime", {}).get("median_ms")
    torch_b1 = paired.get("torch", {}).get("median_ms")
    if not (ort_b1 and torch_b1):
        return None, None
    speedup = torch_b1 / ort_b1
    return f"{speedup:.1f}x ({torch_b1:.2f} ms -> {ort_b1:.3f} ms, timed in alternation)", speedup >= 10


def throughput_vs_naive(results: dict) -> Judgement:
    service, naive = level(results, "service", "cifar", 16), level(results, "naive", "cifar", 16)
    if not (service and naive and naive["throughput_rps"]):
        return None, None
    ratio = service["throughput_rps"] / naive["throughput_rps"]
    return f"{ratio:.1f}x ({service['throughput_rps']:.0f} vs {naive['throughput_rps']:.0f} req/s)", ratio >= 10


def model_peak_share(results: dict) -> tuple[str, float] | None:
    """(how the report shows it, the share): the service's req/s at 16 clients over the model's own peak images/s."""
    service = level(results, "service", "cifar", 16)
    peak = results.get("model", {}).get("onnxruntime", {}).get("peak")
    if not (service and peak):
        return None
    share = service["throughput_rps"] / peak["images_per_s"]
    how = f"batch {peak['batch']}" + (", threads spinning" if peak.get("spinning") else "")
    return f"{share:.0%} ({service['throughput_rps']:.0f} vs {peak['images_per_s']:.0f} at {how})", share


def model_peak_share_at_least(results: dict, bar: float) -> Judgement:
    measured = model_peak_share(results)
    return (None, None) if measured is None else (measured[0], measured[1] >= bar)


def best_peer(results: dict, concurrency: int) -> tuple[str, dict] | None:
    """The real framework (loadtest/peers/) with the most CIFAR req/s at this level, among those measured."""
    measured = [(name, level(results, name, "cifar", concurrency)) for name in PEERS]
    measured = [(name, entry) for name, entry in measured if entry]
    return max(measured, key=lambda item: item[1]["throughput_rps"], default=None)


def versus_best_peer(results: dict, concurrency: int, factor: float) -> Judgement:
    service, peer = level(results, "service", "cifar", concurrency), best_peer(results, concurrency)
    if not (service and peer and peer[1]["throughput_rps"]):
        return None, None
    name, entry = peer
    ratio = service["throughput_rps"] / entry["throughput_rps"]
    measured = f"{ratio:.2f}x {name} ({service['throughput_rps']:.0f} vs {entry['throughput_rps']:.0f} req/s)"
    return measured, ratio >= factor


def idle_pss(results: dict) -> Judgement:
    pss = results.get("servers", {}).get("service", {}).get("pss_ready_mb")
    return (None, None) if pss is None else (f"{pss:.0f} MB", pss <= 110)


def framework_floor(results: dict) -> Judgement:
    noop16, noop1 = level(results, "noop", "cifar", 16), level(results, "noop", "cifar", 1)
    if not (noop16 and noop1):
        return None, None
    return f"{noop16['throughput_rps']:.0f} req/s at concurrency 16; p50 {noop1['latency_ms']['p50']:.2f} ms at 1", None


def cifar_p99(results: dict) -> Judgement:
    entry = level(results, "service", "cifar", 1)
    if entry is None:
        return None, None
    p99 = entry["latency_ms"]["p99"]
    return f"{p99:.2f} ms", p99 <= 3


def phone_p50(results: dict) -> Judgement:
    entry = level(results, "service", "phone", 1)
    if entry is None:
        return None, None
    p50 = entry["latency_ms"]["p50"]
    return f"{p50:.1f} ms", p50 <= 40


def ready_time(results: dict) -> Judgement:
    ready = results.get("servers", {}).get("service", {}).get("ready_s")
    return (None, None) if ready is None else (f"{ready:.2f} s", ready <= 1)


def peak_memory(results: dict) -> Judgement:
    rss = results.get("servers", {}).get("service", {}).get("rss_peak_mb")
    return (None, None) if rss is None else (f"{rss:.0f} MB", rss <= 150)


def peak_memory_16(results: dict) -> Judgement:
    """The RSS peak through the CIFAR levels up to 16 clients (they run first, before any larger picture)."""
    entry = level(results, "service", "cifar", 16)
    rss = None if entry is None else entry.get("rss_peak_so_far_mb")
    return (None, None) if rss is None else (f"{rss:.0f} MB", rss <= 150)


def saturation(results: dict) -> Judgement:
    soak = results.get("soak")
    if not soak:
        return None, None
    rss = soak["rss_mb"]
    measured = (
        f"{soak['seconds']:.0f} s at concurrency {soak['concurrency']}: {soak['statuses']}, {soak['resent']} resent; "
        f"RSS {rss['first']:.0f} -> {rss['last']:.0f} MB (max {rss['max']:.0f})"
    )
    return measured, soak["only_200_and_503"] and soak["rss_stable"]


def sigterm(results: dict) -> Judgement:
    sig = results.get("sigterm")
    if not sig:
        return None, None
    measured = (
        f"in flight {sig['in_flight_at_sigterm']}, new connections refused from "
        f"+{sig['new_connections_refused_after_s']} s, exit {sig['exit_code']} after {sig['exit_after_s']:.2f} s"
    )
    return measured, sig["passed"]


TARGETS = (
    Target(
        "model_speedup_batch1",
        "model alone, batch 1: onnxruntime int8 >= 10x faster than PyTorch eager fp32",
        model_speedup,
    ),
    Target(
        "throughput_vs_naive",
        "service req/s at concurrency 16 (CIFAR JPEGs) >= 10x the naive server",
        throughput_vs_naive,
    ),
    Target(
        "throughput_vs_model_peak",
        "service req/s at concurrency 16 (CIFAR JPEGs) >= 50 % of the model's own peak images/s",
        lambda results: model_peak_share_at_least(results, 0.5),
    ),
    Target(
        "engine_share_16",
        "service req/s at concurrency 16 (CIFAR JPEGs) >= 90 % of the model's own peak images/s",
        # The same share, held to the bar of a server that adds almost nothing to the engine.
        lambda results: model_peak_share_at_least(results, 0.9),
    ),
    Target(
        "throughput_vs_best_peer",
        "service req/s at concurrency 16 (CIFAR JPEGs) >= 1.5x the best real framework's",
        lambda results: versus_best_peer(results, 16, 1.5),
    ),
    Target(
        "one_client_vs_best_peer",
        "service req/s at concurrency 1 (CIFAR JPEGs) >= the best real framework's",
        lambda results: versus_best_peer(results, 1, 1.0),
    ),
    Target("framework_floor", "no-op endpoint (framework floor), for reference", framework_floor),
    Target("cifar_p99_latency", "p99 at concurrency 1 (CIFAR JPEG) <= 3 ms", cifar_p99),
    Target("phone_p50_latency", "12-MP JPEG p50 (concurrency 1) <= 40 ms", phone_p50),
    Target("ready_time", "process start -> ready <= 1 s", ready_time),
    Target("peak_memory_16", "RSS <= 150 MB at its peak up to 16 clients (CIFAR JPEGs)", peak_memory_16),
    Target("peak_memory", "RSS <= 150 MB (peak over the benchmark levels)", peak_memory),
    Target("idle_pss", "memory when ready and idle (PSS) <= 110 MB", idle_pss),
    Target("saturation", "saturation: only 200 and 503, RSS stable", saturation),
    Target("sigterm", "SIGTERM under load: in-flight finish, new refused, exit 0", sigterm),
)
ID_BY_TEXT = {target.text: target.id for target in TARGETS}


def verdict(target: Target, results: dict) -> dict:
    measured, met = target.judge(results)
    return {
        "id": target.id,
        "target": target.text,
        "measured": measured or "not measured",
        "met": met if measured else None,
    }


def judge_all(results: dict) -> list[dict]:
    """Each target, in the report's order, with the number measured and whether it is met."""
    return [verdict(target, results) for target in TARGETS]


def by_id(verdicts: list[dict]) -> dict[str, dict]:
    """Verdicts keyed by target id. Reports written before targets had ids are matched by their sentence."""
    return {entry.get("id") or ID_BY_TEXT[entry["target"]]: entry for entry in verdicts}

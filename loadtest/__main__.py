"""python -m loadtest: the model alone, then each server under closed-loop load (--rounds times, in alternation), then
the soak and SIGTERM checks; writes loadtest.json, loadtest.md and loadtest.png into --out-dir. Everything runs on
127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from contract.paths import PROJECT_ROOT, SHIPPED_DIR
from loadtest import model_bench, payloads, reporting, soak
from loadtest.baseline import WEIGHTS
from loadtest.client import run_level
from loadtest.peers.specs import DEFAULT_WAIT_MS, GRANIAN, PEERS, granian_spec, peer_spec
from loadtest.process_tree import PeakSampler
from loadtest.rounds import merge_rounds
from loadtest.servers import Server, ServerSpec, naive_spec, noop_spec, service_spec

# The real frameworks (loadtest/peers/) are opt-in: each needs its own venv, built on first use.
DEFAULT_TARGETS = ("service", "naive", "noop")
TARGETS = (*DEFAULT_TARGETS, *PEERS, GRANIAN.name)
MB = 1024  # /proc reports kB
# Beyond the CIFAR sweep at --levels: the larger uploads at the few levels the targets need (a 12-MP decode costs
# far more than an inference, so their sweep would only repeat the decode time).
EXTRA_SCENARIOS = {"photo": (1, 16), "phone": (1, 4), "mix": (16,)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_DIR / "model.int8.onnx")
    parser.add_argument("--fp32-model", type=Path, help="also time this fp32 ONNX (default: model.onnx beside --model)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=WEIGHTS,
        help="weights of the same network (a Lightning checkpoint or the safetensors file), for the naive server and "
        "PyTorch timing (default: the shipped model's, committed in shipped/weights/)",
    )
    parser.add_argument("--levels", default="1,4,16,64", help="closed-loop concurrency levels (CIFAR JPEGs)")
    parser.add_argument("--requests", type=int, default=20000, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=8.0, help="at most this long per level")
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"servers to load, from {','.join(TARGETS)} (all but {','.join(DEFAULT_TARGETS)} build a venv first)",
    )
    parser.add_argument(
        "--server-cpus",
        default="",
        help="pin the servers to these CPUs (e.g. 0: a 1-vCPU instance) and the load generator to the others",
    )
    parser.add_argument("--rounds", type=int, default=1, help="load the targets this many times, in alternation")
    parser.add_argument(
        "--peer-wait-ms",
        type=float,
        default=DEFAULT_WAIT_MS,
        help="the peers' dynamic-batching window (Mosec's max_wait_time, LitServe's batch_timeout)",
    )
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="saturation soak of the service (0: skip)")
    parser.add_argument("--soak-concurrency", type=int, default=128, help="clients in the soak (> QUEUE_SIZE)")
    parser.add_argument("--payloads", default="cifar,photo,phone,mix", help="scenarios to run: cifar,photo,phone,mix")
    parser.add_argument("--model-seconds", type=float, default=2.0, help="timing per model measurement (0: skip)")
    parser.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="setting for the service (e.g. BATCH_MAX_SIZE=32); repeatable",
    )
    parser.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "benchmarks")
    parser.add_argument("--quick", action="store_true", help="a smoke run: levels 1,4, 1.5 s each, 3-s soak")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.seconds, args.requests = "1,4", min(args.seconds, 1.5), min(args.requests, 300)
        args.soak_seconds, args.model_seconds = min(args.soak_seconds, 3), min(args.model_seconds, 0.2)
        args.soak_concurrency = min(args.soak_concurrency, 16)
    args.levels = [int(n) for n in args.levels.split(",")]
    args.targets = [t for t in args.targets.split(",") if t]
    args.payloads = [p for p in args.payloads.split(",") if p]
    if set(args.payloads) - set(payloads.KINDS):
        parser.error(f"unknown --payloads; choose from {','.join(payloads.KINDS)}")
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown --targets {sorted(unknown)}; choose from {','.join(TARGETS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        args.server_cpus = {int(cpu) for cpu in args.server_cpus.split(",") if cpu}
    except ValueError:
        parser.error("--server-cpus takes CPU numbers, e.g. 0 or 0,1")
    if args.server_cpus and not (args.server_cpus < os.sched_getaffinity(0)):
        parser.error(f"--server-cpus must leave the load generator a CPU of {sorted(os.sched_getaffinity(0))}")
    if args.peer_wait_ms < 1:
        parser.error("--peer-wait-ms must be at least 1 (Mosec's shortest window)")
    try:
        args.serve_env = dict(item.split("=", 1) for item in args.serve_env)
    except ValueError:
        parser.error("--serve-env takes KEY=VALUE")
    if args.fp32_model is None and (args.model.parent / "model.onnx").is_file():
        args.fp32_model = args.model.parent / "model.onnx"
    return args


def scenarios(levels: list[int], kinds: list[str]) -> dict[str, list[int]]:
    plan = {"cifar": levels}
    for kind, wanted in EXTRA_SCENARIOS.items():
        plan[kind] = [c for c in wanted if c <= max(levels)] or [min(levels)]
    return {kind: plan[kind] for kind in kinds}


def load_level(server: Server, picker: payloads.Picker, kind: str, concurrency: int, args) -> dict:
    """One level, with the CPU time it cost the server and this client (their sum is bounded by the cores)."""
    server_cpu, client_cpu = server.cpu_seconds(), os.times()
    desc = f"{server.spec.name:7} {kind:5} c={concurrency:<3}"
    with tqdm(total=args.requests, desc=desc, leave=False, unit="req") as bar:
        result = asyncio.run(
            run_level(
                server.url,
                picker,
                concurrency=concurrency,
                max_requests=args.requests,
                max_seconds=args.seconds,
                on_done=bar.update,
            )
        )
    summary = result.summary()
    sent = summary["requests"] + concurrency  # the warm-up sends one per connection
    now = os.times()
    summary["server_cpu_ms_per_request"] = round((server.cpu_seconds() - server_cpu) * 1000 / sent, 3)
    client = now.user + now.system - client_cpu.user - client_cpu.system
    summary["client_cpu_ms_per_request"] = round(client * 1000 / sent, 3)
    lat = summary["latency_ms"]
    tqdm.write(
        f"{desc} {summary['throughput_rps']:8.1f} req/s  p50 {lat['p50']:8.2f}  p99 {lat['p99']:8.2f} ms  "
        f"cpu/req server {summary['server_cpu_ms_per_request']:.2f} client {summary['client_cpu_ms_per_request']:.2f}"
        f" ms  {summary['statuses']}"
    )
    return summary


def mb(kb: int) -> float:
    return round(kb / MB, 1)


def load_server(server: Server, bodies: dict, args: argparse.Namespace) -> dict:
    """Every level of every scenario against one started server, with its whole process tree's memory: at ready
    (idle), sampled during the load (peaks), and at the end."""
    ready = server.tree_memory_kb()
    record: dict = {"ready_s": round(server.ready_s, 3), "processes": ready["processes"]}
    record |= {"rss_ready_mb": mb(ready["rss"]), "pss_ready_mb": mb(ready["pss"]), "scenarios": {}}
    with PeakSampler(server.proc.pid) as sampler:
        for kind, levels in scenarios(args.levels, args.payloads).items():
            picker = payloads.Picker(bodies, kind)
            for concurrency in levels:
                entry = load_level(server, picker, kind, concurrency, args)
                # The RSS peak up to this level, this one included (levels run in the order of the report).
                entry["rss_peak_so_far_mb"] = rss_peak_so_far(server, sampler)
                record["scenarios"].setdefault(kind, []).append(entry)
    end, peak = server.tree_memory_kb(), sampler.peak
    record |= {"rss_end_mb": mb(end["rss"]), "pss_end_mb": mb(end["pss"]), "processes_peak": peak["processes"]}
    record |= {"rss_peak_sampled_mb": mb(peak["rss"]), "pss_peak_mb": mb(peak["pss"])}
    if peak["processes"] == 1:  # one process throughout: the kernel's own high-water mark, which no sample misses
        record |= {"rss_peak_mb": mb(server.memory_kb()["VmHWM"]), "rss_peak_source": "VmHWM"}
    else:  # no high-water mark spans processes: the largest sum sampled
        record |= {"rss_peak_mb": record["rss_peak_sampled_mb"], "rss_peak_source": "sampled"}
    return record


def rss_peak_so_far(server: Server, sampler: PeakSampler) -> float:
    """The kernel's high-water mark of a single-process server; of a tree, the largest sum sampled so far."""
    if sampler.peak["processes"] <= 1:
        return mb(server.memory_kb()["VmHWM"])
    return mb(sampler.peak["rss"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM to the load test unwinds like Ctrl-C, so the `finally` blocks stop the servers it started.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run_load_test(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def missing_input(args: argparse.Namespace) -> str | None:
    """Why the load test cannot start, if it cannot."""
    if not args.model.is_file():
        return f"model {args.model} not found (--model)"
    if "naive" in args.targets and not args.checkpoint.is_file():
        return f"checkpoint {args.checkpoint} not found (--checkpoint, needed by the naive server)"
    return None


def settings_record(args: argparse.Namespace) -> dict:
    return {
        "model": str(args.model),
        "checkpoint": str(args.checkpoint),
        "levels": args.levels,
        "scenarios": scenarios(args.levels, args.payloads),
        "max_requests_per_level": args.requests,
        "max_seconds_per_level": args.seconds,
        "service_env": args.serve_env,
        "mix_weights": payloads.MIX_WEIGHTS,
        "soak_seconds": args.soak_seconds,
        "soak_concurrency": args.soak_concurrency,
        "rounds": args.rounds,
        "server_cpus": sorted(args.server_cpus),
        "peer_wait_ms": args.peer_wait_ms,
    }


def model_alone(args: argparse.Namespace, checkpoint: Path | None) -> dict:
    """Timed in a child process that exits before any server starts. PSS splits a page between the processes that
    map it: had the load generator itself mapped onnxruntime and torch from the same venv, the service's PSS would
    read 86 MB instead of 96 (the generator still maps numpy and Pillow) or 105 MB alone, its RSS (measured)."""
    print(f"model alone: {args.model}" + (f" vs PyTorch {checkpoint}" if checkpoint else ""), file=sys.stderr)
    benchmark = functools.partial(
        model_bench.benchmark_model,
        args.model,
        checkpoint,
        fp32_model=args.fp32_model,
        threads=int(args.serve_env.get("ORT_THREADS", "0")),
        seconds=args.model_seconds,
    )
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(benchmark).result()


def server_specs(args: argparse.Namespace, checkpoint: Path | None) -> dict[str, ServerSpec]:
    """How each target starts; a peer's venv is built here, before anything is timed."""
    makers: dict[str, Callable[[], ServerSpec]] = {
        "service": lambda: service_spec(args.model, args.serve_env),
        "naive": lambda: naive_spec(checkpoint),
        "noop": noop_spec,
    }
    for name in PEERS:
        makers[name] = functools.partial(peer_spec, name, args.model, args.serve_env, args.peer_wait_ms)
    makers[GRANIAN.name] = functools.partial(granian_spec, args.model, args.serve_env)
    return {name: makers[name]() for name in args.targets}


def load_every_server(args: argparse.Namespace, specs: dict[str, ServerSpec], bodies: dict) -> list[dict]:
    """Each target server in turn, started fresh and stopped (with its exit code) after its levels; all of them
    --rounds times, in alternation. One {server: record} per round."""
    rounds = []
    for number in range(1, args.rounds + 1):
        records = {}
        for name, spec in specs.items():
            if args.rounds > 1:
                tqdm.write(f"round {number}/{args.rounds}: {name}")
            server = Server(spec, cpus=args.server_cpus)
            try:
                records[name] = load_server(server, bodies, args)
            finally:
                code = server.stop()
            records[name] |= {"exit_code": code, "left_running": server.left_running}
        rounds.append(records)
    return rounds


def soak_service(args: argparse.Namespace, bodies: dict) -> dict:
    """A fresh service under the saturation soak, then SIGTERM."""
    server = Server(service_spec(args.model, args.serve_env), cpus=args.server_cpus)
    with tqdm(total=int(args.soak_seconds), desc=f"soak c={args.soak_concurrency}", leave=False) as bar:

        def tick(info: dict) -> None:
            bar.set_postfix(info)
            bar.update(1)

        try:
            checks = soak.soak_then_sigterm(
                server,
                payloads.Picker(bodies, "mix"),
                concurrency=args.soak_concurrency,
                seconds=args.soak_seconds,
                tick=tick,
            )
        finally:
            server.stop()
    tqdm.write(f"soak: {checks['soak']['statuses']} rss {checks['soak']['rss_mb']}; sigterm: {checks['sigterm']}")
    return checks


def run_load_test(args: argparse.Namespace) -> int:
    problem = missing_input(args)
    if problem:
        print(f"loadtest: {problem}", file=sys.stderr)
        return 2
    checkpoint = args.checkpoint if args.checkpoint.is_file() else None
    if args.server_cpus:  # the load generator keeps off the servers' CPUs, as clients are off an instance's
        os.sched_setaffinity(0, os.sched_getaffinity(0) - args.server_cpus)
    results: dict = {"machine": reporting.machine(), "settings": settings_record(args)}
    bodies = payloads.build(cifar_count=32 if args.quick else 256)
    results["payloads"] = payloads.describe(bodies) | {"cifar_source": payloads.source()}
    specs = server_specs(args, checkpoint)  # first: building a peer's venv takes the CPUs for a while
    results["settings"]["servers"] = {name: spec.settings for name, spec in specs.items() if spec.settings}
    if args.model_seconds > 0:
        results["model"] = model_alone(args, checkpoint)
    rounds = load_every_server(args, specs, bodies)
    results["servers"] = merge_rounds(rounds)
    if args.rounds > 1:
        results["server_rounds"] = rounds  # each round's numbers, behind the medians
    if "service" in args.targets and args.soak_seconds > 0:
        results |= soak_service(args, bodies)
    paths = reporting.write(results, args.out_dir)
    for target in results["targets"]:
        print(f"  {reporting.met_text(target['met']):12} {target['target']}: {target['measured']}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The results, three ways: loadtest.json (everything), loadtest.md (tables, targets met or not) and loadtest.png
(latency against throughput per server). Also the machine description that every number depends on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from train.paths import PROJECT_ROOT

INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "hypervisor")
PACKAGES = ("onnxruntime", "torch", "numpy", "pillow", "starlette", "uvicorn")
MB = 1024  # /proc reports kB


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().split() if Path("/proc/meminfo").is_file() else []
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
        git = sha.stdout.strip() or None
    except OSError:
        git = None
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    return {
        "cpu": model,
        "cpu_flags": [f for f in INT8_FLAGS if f in flags],  # what onnxruntime's int8 kernels can use
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(int(meminfo[1]) / 1024 / 1024, 1) if len(meminfo) > 1 else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "git_sha": git,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def level(results: dict, server: str, scenario: str, concurrency: int) -> dict | None:
    for entry in results.get("servers", {}).get(server, {}).get("scenarios", {}).get(scenario, []):
        if entry["concurrency"] == concurrency:
            return entry
    return None


def _target(text: str, measured: str | None, met: bool | None) -> dict:
    return {"target": text, "measured": measured or "not measured", "met": met if measured else None}


def targets(results: dict) -> list[dict]:
    """Each target of the issue, with the number measured and whether it is met; nothing is rounded in our favour."""
    out = []
    model = results.get("model", {})
    paired = model.get("batch1_interleaved", {})  # both runtimes timed in alternation, under the same conditions
    ort_b1 = paired.get("onnxruntime", {}).get("median_ms")
    torch_b1 = paired.get("torch", {}).get("median_ms")
    if ort_b1 and torch_b1:
        speedup = torch_b1 / ort_b1
        measured = f"{speedup:.1f}x ({torch_b1:.2f} ms -> {ort_b1:.3f} ms, timed in alternation)"
        out.append(
            _target(
                "model alone, batch 1: onnxruntime int8 >= 10x faster than PyTorch eager fp32", measured, speedup >= 10
            )
        )
    else:
        out.append(_target("model alone, batch 1: onnxruntime int8 >= 10x faster than PyTorch eager fp32", None, None))
    svc16, naive16 = level(results, "service", "cifar", 16), level(results, "naive", "cifar", 16)
    text = "service req/s at concurrency 16 (CIFAR JPEGs) >= 10x the naive server"
    if svc16 and naive16 and naive16["throughput_rps"]:
        ratio = svc16["throughput_rps"] / naive16["throughput_rps"]
        measured = f"{ratio:.1f}x ({svc16['throughput_rps']:.0f} vs {naive16['throughput_rps']:.0f} req/s)"
        out.append(_target(text, measured, ratio >= 10))
    else:
        out.append(_target(text, None, None))
    peak = model.get("onnxruntime", {}).get("peak")
    text = "service req/s at concurrency 16 (CIFAR JPEGs) >= 50 % of the model's own peak images/s"
    if svc16 and peak:
        share = svc16["throughput_rps"] / peak["images_per_s"]
        how = f"batch {peak['batch']}" + (", threads spinning" if peak.get("spinning") else "")
        measured = f"{share:.0%} ({svc16['throughput_rps']:.0f} vs {peak['images_per_s']:.0f} at {how})"
        out.append(_target(text, measured, share >= 0.5))
    else:
        out.append(_target(text, None, None))
    noop16 = level(results, "noop", "cifar", 16)
    noop1 = level(results, "noop", "cifar", 1)
    floor = (
        f"{noop16['throughput_rps']:.0f} req/s at concurrency 16; p50 {noop1['latency_ms']['p50']:.2f} ms at 1"
        if noop16 and noop1
        else None
    )
    out.append(
        {"target": "no-op endpoint (framework floor), for reference", "measured": floor or "not measured", "met": None}
    )
    svc1 = level(results, "service", "cifar", 1)
    p99 = svc1["latency_ms"]["p99"] if svc1 else None
    out.append(
        _target("p99 at concurrency 1 (CIFAR JPEG) <= 3 ms", p99 and f"{p99:.2f} ms", p99 is not None and p99 <= 3)
    )
    phone = level(results, "service", "phone", 1)
    p50 = phone["latency_ms"]["p50"] if phone else None
    out.append(
        _target("12-MP JPEG p50 (concurrency 1) <= 40 ms", p50 and f"{p50:.1f} ms", p50 is not None and p50 <= 40)
    )
    service = results.get("servers", {}).get("service", {})
    ready = service.get("ready_s")
    out.append(_target("process start -> ready <= 1 s", ready and f"{ready:.2f} s", ready is not None and ready <= 1))
    rss = service.get("rss_peak_mb")
    out.append(
        _target(
            "RSS <= 150 MB (peak over the benchmark levels)", rss and f"{rss:.0f} MB", rss is not None and rss <= 150
        )
    )
    soak = results.get("soak")
    if soak:
        measured = (
            f"{soak['seconds']:.0f} s at concurrency {soak['concurrency']}: {soak['statuses']}, "
            f"{soak['resent']} resent; RSS "
            f"{soak['rss_mb']['first']:.0f} -> {soak['rss_mb']['last']:.0f} MB (max {soak['rss_mb']['max']:.0f})"
        )
        out.append(
            _target(
                "saturation: only 200 and 503, RSS stable", measured, soak["only_200_and_503"] and soak["rss_stable"]
            )
        )
    else:
        out.append(_target("saturation: only 200 and 503, RSS stable", None, None))
    sig = results.get("sigterm")
    if sig:
        measured = (
            f"in flight {sig['in_flight_at_sigterm']}, new connections refused from "
            f"+{sig['new_connections_refused_after_s']} s, exit {sig['exit_code']} after {sig['exit_after_s']:.2f} s"
        )
        out.append(_target("SIGTERM under load: in-flight finish, new refused, exit 0", measured, sig["passed"]))
    else:
        out.append(_target("SIGTERM under load: in-flight finish, new refused, exit 0", None, None))
    return out


def met_text(value: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "-"}[value]


def _errors(statuses: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != "200") or "0"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"# Load test, {m['date']}",
        "",
        f"Machine: {m['cpu']} ({' '.join(m['cpu_flags'])}), {m['usable_cpus']} CPUs, {m['memory_gb']} GB, "
        f"Linux {m['kernel']}, "
        + f"Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
        + f"; git {m['git_sha']}. Client and servers share these CPUs.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        *(f"| {t['target']} | {t['measured']} | {met_text(t['met'])} |" for t in results["targets"]),
        "",
        "## Servers under load (closed loop, 127.0.0.1)",
        "",
        "| server | payload | concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | not 200 "
        "| server CPU ms/req |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, server in results.get("servers", {}).items():
        for scenario, entries in server["scenarios"].items():
            for e in entries:
                lat = {k: "-" if v is None else f"{v:.2f}" for k, v in e["latency_ms"].items()}
                lines.append(
                    f"| {name} | {scenario} | {e['concurrency']} | {e['requests']} | {e['throughput_rps']:.0f} | "
                    f"{lat['p50']} | {lat['p95']} | {lat['p99']} | {lat['max']} | "
                    f"{_errors(e['statuses'])} | {e.get('server_cpu_ms_per_request', float('nan')):.2f} |"
                )
    lines += [
        "",
        "| server | start -> ready s | RSS ready MB | RSS peak MB | exit code |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, server in results.get("servers", {}).items():
        lines.append(
            f"| {name} | {server['ready_s']:.2f} | {server['rss_ready_mb']:.0f} | {server['rss_peak_mb']:.0f} | "
            f"{server['exit_code']} |"
        )
    model = results.get("model")
    if model:
        lines += [
            "",
            f"## The model alone ({model['threads']} threads, one process)",
            "",
            "| runtime | batch | median ms / call | images/s | images/s, threads spinning |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        if "batch1_interleaved" in model:
            for label, key in (("PyTorch eager fp32", "torch"), ("onnxruntime, in alternation with it", "onnxruntime")):
                t = model["batch1_interleaved"][key]
                lines.append(f"| {label} | 1 | {t['median_ms']:.3f} | {1000 / t['median_ms']:.0f} | |")
        if "onnxruntime_fp32" in model:
            t = model["onnxruntime_fp32"]["batch1"]
            lines.append(f"| onnxruntime fp32 | 1 | {t['median_ms']:.3f} | {1000 / t['median_ms']:.0f} | |")
        ort = model["onnxruntime"]
        spinning = ort.get("batches_spinning", {})
        for size, t in ort.get("batches", {}).items():
            name = "onnxruntime " + ("fp32" if ort["quantization"] == "none" else "int8")
            spin = f"{spinning[size]['images_per_s']:.0f}" if size in spinning else ""
            lines.append(f"| {name} | {size} | {t['median_ms']:.3f} | {t['images_per_s']:.0f} | {spin} |")
    for key in ("soak", "sigterm"):
        if results.get(key):
            shown = {k: v for k, v in results[key].items() if k != "rss_samples_mb"}
            lines += ["", f"## {key.capitalize()}", "", "```json", json.dumps(shown, indent=1), "```"]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name, server in results.get("servers", {}).items():
        entries = [e for e in server["scenarios"].get("cifar", []) if e["ok"]]
        if not entries:
            continue
        x = [e["throughput_rps"] for e in entries]
        (line,) = ax.plot(x, [e["latency_ms"]["p50"] for e in entries], "o-", label=f"{name} p50")
        ax.plot(x, [e["latency_ms"]["p99"] for e in entries], "x--", color=line.get_color(), label=f"{name} p99")
        for e, xi in zip(entries, x, strict=True):
            ax.annotate(
                f"c={e['concurrency']}",
                (xi, e["latency_ms"]["p50"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    peak = results.get("model", {}).get("onnxruntime", {}).get("peak")
    if peak:
        label = f"model alone, peak (batch {peak['batch']})"
        ax.axvline(peak["images_per_s"], color="grey", linestyle=":", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    m = results["machine"]
    ax.set_title(f"CIFAR-size JPEGs, closed loop; {m['cpu']}, {m['usable_cpus']} CPUs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(results: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results)
    paths = {"json": out_dir / "loadtest.json", "md": out_dir / "loadtest.md", "png": out_dir / "loadtest.png"}
    paths["json"].write_text(json.dumps(results, indent=1) + "\n")
    paths["md"].write_text(markdown(results))
    plot(results, paths["png"])
    return paths

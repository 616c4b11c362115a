"""The results, three ways: loadtest.json (everything), loadtest.md (tables, targets met or not) and loadtest.png
(latency against throughput per server). Also the machine description that every number depends on.
The targets themselves, and how each is judged, are in loadtest/targets.py."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from contract.cpu import cpu_flags, int8_session_entries
from contract.model_file import QUANTIZATION, QUANTIZATION_NONE
from contract.paths import PROJECT_ROOT
from loadtest.process_tree import PEAK_SAMPLE_S
from loadtest.targets import judge_all

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
    flags = cpu_flags()
    return {
        "cpu": model,
        "cpu_flags": [f for f in INT8_FLAGS if f in flags],  # what onnxruntime's int8 kernels can use
        "int8_session_entries": int8_session_entries(flags),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(int(meminfo[1]) / 1024 / 1024, 1) if len(meminfo) > 1 else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "git_sha": git,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def met_text(value: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "-"}[value]


def _errors(statuses: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in statuses.items() if k != "200") or "0"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _number(value: float | str) -> str:
    """A setting that is a number, or a word where the framework decides it (BentoML's adaptive window)."""
    return value if isinstance(value, str) else f"{value:g}"


def _rounds_note(results: dict) -> str:
    rounds = results.get("settings", {}).get("rounds", 1)
    return f"; medians of {rounds} rounds, the servers in alternation" if rounds > 1 else ""


def memory_table(servers: dict) -> list[str]:
    """Start-up and memory, each server's whole process tree: PSS at ready (idle) and the peaks during the load."""
    lines = [
        "| server | processes | start -> ready s | RSS ready MB | PSS ready MB | RSS peak MB | PSS peak MB "
        "| exit code |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, server in servers.items():
        peak = _mb(server["rss_peak_mb"]) + (" (sampled)" if server.get("rss_peak_source") == "sampled" else "")
        left = f", left running: {server['left_running']}" if server.get("left_running") else ""
        lines.append(
            f"| {name} | {server.get('processes', 1)} | {server['ready_s']:.2f} | {_mb(server['rss_ready_mb'])} | "
            f"{_mb(server.get('pss_ready_mb'))} | {peak} | {_mb(server.get('pss_peak_mb'))} | "
            f"{server['exit_code']}{left} |"
        )
    lines += [
        "",
        "RSS and PSS are summed over each server's process tree. RSS peak is the kernel's high-water mark (VmHWM) for "
        "a single-process server; for several processes, and PSS always, the largest sum sampled every "
        f"{PEAK_SAMPLE_S} s (a floor of the true peak). RSS counts pages that processes share once per process; PSS "
        "splits them.",
    ]
    return lines


def settings_table(settings: dict) -> list[str]:
    """How each server that has settings to say (the service, the peers) batches, infers and decodes."""
    servers = settings.get("servers")
    if not servers:
        return []
    lines = [
        "",
        "## Servers' settings",
        "",
        "| server | framework | max batch | max wait ms | inference processes | onnxruntime threads | decode | HTTP |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for name, s in servers.items():
        lines.append(
            f"| {name} | {s['framework']} | {s['max_batch_size']} | {_number(s['max_wait_ms'])} | "
            f"{s['inference_workers']} | {s['ort_threads']} | {s['decode']} | {s['http_front']} |"
        )
    return lines


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
        f"## Servers under load (closed loop, 127.0.0.1{_rounds_note(results)})",
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
    lines += ["", *memory_table(results.get("servers", {})), *settings_table(results.get("settings", {}))]
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
            name = "onnxruntime " + ("fp32" if ort[QUANTIZATION] == QUANTIZATION_NONE else "int8")
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
    results["targets"] = judge_all(results)
    paths = {"json": out_dir / "loadtest.json", "md": out_dir / "loadtest.md", "png": out_dir / "loadtest.png"}
    paths["json"].write_text(json.dumps(results, indent=1) + "\n")
    paths["md"].write_text(markdown(results))
    plot(results, paths["png"])
    return paths

"""onnxruntime's own options on the shipped int8 model: graph optimization level, QDQ vs QOperator, thread spinning.

Run from the repository root in the development venv, with the test set prepared (data/processed):
    PYTHONPATH=. .venv/bin/python benchmarks/engines/ort_options.py [--model F] [--seconds 2] [--rounds 3]
(it rewrites benchmarks/engines/ort-options.json unless given --out)

- `QOperator` is the same quantized model in operator form (QLinearConv, QLinearAdd ...): onnxruntime's own QDQ
  fusion, saved to a file by a session at ORT_ENABLE_EXTENDED. Quantizing the fp32 export again with
  `QuantFormat.QOperator` would give the same operators with newly calibrated scales; this keeps the values equal.
- Spinning: `off` is the service's setting (serve.model.load_model); `on` lets idle intra-op threads spin between
  and after runs; `during runs` spins inside a run and stops the moment the last concurrent run returns
  (`session.force_spinning_stop`), i.e. only while there is work.
- Every variant is timed in alternation with the others at batch 1, 16 and 64, `--rounds` times (medians), and its
  answers on the first `--images` test images are compared with the service's session.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from contract.cpu import add_int8_entries
from contract.model_file import INPUT_NAME, OUTPUT_NAME
from contract.paths import PROCESSED_DIR, SHIPPED_DIR
from loadtest.model_bench import interleaved, physical_cores
from loadtest.reporting import machine

LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
SPINNING = {
    "off": {"session.intra_op.allow_spinning": "0"},
    "on": {"session.intra_op.allow_spinning": "1"},
    "during runs": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
}
BATCHES = (1, 16, 64)


def options(level: str, spinning: str, threads: int, optimized_path: Path | None = None) -> ort.SessionOptions:
    """The service's session options (serve.model.load_model) with this level and spinning."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = LEVELS[level]
    for key, value in SPINNING[spinning].items():
        opts.add_session_config_entry(key, value)
    add_int8_entries(opts)  # as the service: int8 computed exactly on this CPU
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    opts.log_severity_level = 3
    return opts


def session(path: Path, level: str, spinning: str, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), options(level, spinning, threads), providers=["CPUExecutionProvider"])


def op_counts(model: Path) -> dict[str, int]:
    return dict(Counter(node.op_type for node in onnx.load(str(model)).graph.node).most_common())


def compiled_ops(path: Path, level: str, threads: int, scratch: Path) -> dict[str, int]:
    """The operators onnxruntime runs at this level (its optimized graph, saved)."""
    saved = scratch / f"{path.stem}-{level}.onnx"
    ort.InferenceSession(str(path), options(level, "off", threads, saved), providers=["CPUExecutionProvider"])
    return op_counts(saved)


def qoperator_form(path: Path, threads: int, scratch: Path) -> Path:
    """The QDQ file as onnxruntime fuses it (QLinearConv ...), saved before any CPU-specific layout change."""
    saved = scratch / "qoperator.onnx"
    ort.InferenceSession(str(path), options("extended", "off", threads, saved), providers=["CPUExecutionProvider"])
    return saved


def runner(sess: ort.InferenceSession, batch: np.ndarray):
    return lambda: sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


def logits(sess: ort.InferenceSession, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate(
        [sess.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_DIR / "model.int8.onnx")
    parser.add_argument("--seconds", type=float, default=2.0, help="per variant and batch size, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=1000, help="test images the answers are compared on")
    parser.add_argument("--threads", type=int, default=0, help="0: one per physical core, as the service")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("ort-options.json"))
    args = parser.parse_args(argv)
    threads = args.threads or physical_cores()
    scratch = Path(tempfile.mkdtemp(prefix="ort-options-"))
    qoperator = qoperator_form(args.model, threads, scratch)
    files = {"QDQ": args.model, "QOperator": qoperator}
    variants = {f"{fmt}, level {level}, spinning off": (fmt, level, "off") for fmt in files for level in LEVELS}
    variants |= {f"QDQ, level all, spinning {spin}": ("QDQ", "all", spin) for spin in ("on", "during runs")}
    sessions = {name: session(files[fmt], level, spin, threads) for name, (fmt, level, spin) in variants.items()}
    baseline = "QDQ, level all, spinning off"  # the service's session

    images = np.load(PROCESSED_DIR / "test_images.npy")[: args.images]
    labels = np.load(PROCESSED_DIR / "test_labels.npy")[: args.images]
    answers = {name: logits(sess, images) for name, sess in sessions.items()}
    agreement = {
        name: {
            "top1": round(float((out.argmax(1) == labels).mean()), 4),
            "same_answer": round(float((out.argmax(1) == answers[baseline].argmax(1)).mean()), 4),
            "max_abs_logit_diff": round(float(np.abs(out - answers[baseline]).max()), 6),
        }
        for name, out in answers.items()
    }

    speed: dict[str, dict[str, list[float]]] = {name: {str(b): [] for b in BATCHES} for name in sessions}
    for round_ in range(args.rounds):
        for size in BATCHES:
            batch = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))
            burst = max(1, 16 // size)
            timed = interleaved({n: runner(s, batch) for n, s in sessions.items()}, args.seconds, burst=burst)
            for name, result in timed.items():
                speed[name][str(size)].append(round(result["calls_per_s"] * size, 1))
            print(f"round {round_ + 1} batch {size}: " + ", ".join(f"{n}: {speed[n][str(size)][-1]}" for n in speed))

    report = {
        "machine": machine(),
        "model": str(args.model),
        "threads": threads,
        "images_compared": len(labels),
        "rounds": args.rounds,
        "seconds_per_batch_and_round": args.seconds,
        "operators": {
            **{f"QDQ, level {lvl}": compiled_ops(args.model, lvl, threads, scratch) for lvl in LEVELS},
            "QOperator file": op_counts(qoperator),
        },
        "variants": {
            name: {
                "format": fmt,
                "level": level,
                "spinning": spin,
                **agreement[name],
                "images_per_s_median": {b: statistics.median(v) for b, v in speed[name].items()},
                "images_per_s_rounds": speed[name],
            }
            for name, (fmt, level, spin) in variants.items()
        },
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    for name, row in report["variants"].items():
        print(f"{name:<36} top-1 {row['top1']:.2%} same {row['same_answer']:.1%} {row['images_per_s_median']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does OpenVINO (CPU) answer like onnxruntime on our ONNX files, which graph pattern breaks it, and how fast is it?

OpenVINO is no dependency of the repository: run this from the repository root with a venv of its own, e.g.
    python3 -m venv /tmp/ov-venv && /tmp/ov-venv/bin/pip install "openvino==2026.4.*" onnx onnxruntime==1.32.0 \
        numpy==2.4.6 pillow==13.0.0
    PYTHONPATH=. /tmp/ov-venv/bin/python benchmarks/engines/openvino_check.py accuracy [--model F] [--images 1000]
    PYTHONPATH=. /tmp/ov-venv/bin/python benchmarks/engines/openvino_check.py bisect   [--model F] [--images 200]
    PYTHONPATH=. /tmp/ov-venv/bin/python benchmarks/engines/openvino_check.py speed    [--model F] [--rounds 5]
`accuracy`: top-1 and agreement with onnxruntime, for OpenVINO on the file as it is and on the variants that avoid
the fault. `bisect`: which extra graph outputs (they keep OpenVINO from fusing across a tensor) restore agreement.
`speed`: onnxruntime with the service's session settings against OpenVINO's correct variant, alternating, batch
1/16/64, median images/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
from onnx import shape_inference

from contract.model_file import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAME
from contract.paths import PROCESSED_DIR, SHIPPED_DIR
from export.plain_flatten import plain_flatten
from serve.model import load_model

Runner = Callable[[np.ndarray], np.ndarray]
CORE = ov.Core()
THREADS = {"threads": 0}  # 0: each engine's default (every core); --threads sets both engines alike
SCRATCH = Path(tempfile.mkdtemp(prefix="openvino-check-"))


def test_set(count: int) -> tuple[np.ndarray, np.ndarray]:
    return np.load(PROCESSED_DIR / "test_images.npy")[:count], np.load(PROCESSED_DIR / "test_labels.npy")[:count]


def logits_of(run: Runner, images: np.ndarray, batch: int = 50) -> np.ndarray:
    return np.concatenate([run(images[i : i + batch]) for i in range(0, len(images), batch)])


def openvino(model: onnx.ModelProto | Path, config: dict | None = None, static_batch: int | None = None) -> Runner:
    """uint8 images -> logits; a `static_batch` fixes N, so OpenVINO constant-folds the graph's shape arithmetic."""
    if isinstance(model, onnx.ModelProto):
        onnx.save(model, SCRATCH / "variant.onnx")
        model = SCRATCH / "variant.onnx"
    read = CORE.read_model(model)
    if static_batch:
        read.reshape(
            {INPUT_NAME: [static_batch, *(dim.get_length() for dim in read.input(INPUT_NAME).get_partial_shape()[1:])]}
        )
    compiled = CORE.compile_model(read, "CPU", {"INFERENCE_NUM_THREADS": THREADS["threads"], **(config or {})})
    logits = next(port for port in compiled.outputs if OUTPUT_NAME in port.get_names())
    return lambda images: compiled(images)[logits]


def plain(source: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the file with the flatten as one Reshape [-1, C] (what the export writes now: export/plain_flatten.py);
    a file written before that still has the exporter's index arithmetic."""
    model = onnx.ModelProto()
    model.CopyFrom(source)
    plain_flatten(model)
    return model


def with_outputs(source: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The same graph with `names` declared as extra outputs (shape inference supplies their types)."""
    model = shape_inference.infer_shapes(source)
    value_info = {info.name: info for info in model.graph.value_info}
    model.graph.output.extend(value_info[name] for name in names)
    return model


def activations(model: onnx.ModelProto) -> dict[str, str]:
    """Every tensor computed from the input, in topological order -> the op type that produces it."""
    live, found = {INPUT_NAME}, {}
    for node in model.graph.node:
        if any(name in live for name in node.input):
            live.update(node.output)
            found.update({out: node.op_type for out in node.output if out not in (OUTPUT_NAME, EMBEDDING_NAME)})
    return found


def compare(label: str, run: Runner, images: np.ndarray, labels: np.ndarray, reference: np.ndarray) -> bool:
    logits = logits_of(run, images)
    agree = (logits.argmax(1) == reference.argmax(1)).mean()
    top1 = (logits.argmax(1) == labels).mean()
    print(
        f"{label:58s} top-1 {top1:6.2%}  same answer {agree:6.2%}  max|Δlogit| {np.abs(logits - reference).max():.3f}"
    )
    return agree > 0.98


def accuracy(args: argparse.Namespace) -> None:
    images, labels = test_set(args.images)
    model = onnx.load(args.model)
    reference = logits_of(load_model(args.model, threads=THREADS["threads"]).run, images)
    print(f"{args.model}, {len(images)} test images; onnxruntime top-1 {(reference.argmax(1) == labels).mean():.2%}")
    stem_conv = next(name for name, op in activations(model).items() if op == "Conv")
    for hint in ({}, {"INFERENCE_PRECISION_HINT": "f32"}):
        suffix = f" {hint}" if hint else ""
        compare(f"openvino, file as is{suffix}", openvino(args.model, hint), images, labels, reference)
        compare(f"openvino, static batch 50{suffix}", openvino(args.model, hint, 50), images, labels, reference)
        compare(f"openvino, flatten as one Reshape{suffix}", openvino(plain(model), hint), images, labels, reference)
        outputs = with_outputs(model, [stem_conv])
        compare(f"openvino, output {stem_conv!r} declared{suffix}", openvino(outputs, hint), images, labels, reference)


def bisect(args: argparse.Namespace) -> None:
    """Declare outputs by op type, then one by one for the op type that restores agreement."""
    images, labels = test_set(args.images)
    model = onnx.load(args.model)
    reference = logits_of(load_model(args.model, threads=THREADS["threads"]).run, images)
    tensors = activations(model)
    compare("no extra outputs", openvino(model), images, labels, reference)
    compare(f"all {len(tensors)} activations", openvino(with_outputs(model, list(tensors))), images, labels, reference)
    restoring = []
    for op_type in dict.fromkeys(tensors.values()):
        names = [name for name, op in tensors.items() if op == op_type]
        if compare(f"{len(names)} {op_type} outputs", openvino(with_outputs(model, names)), images, labels, reference):
            restoring.append(names)
    for names in restoring:
        for name in names:
            compare(f"  only {name!r}", openvino(with_outputs(model, [name])), images, labels, reference)


def speed(args: argparse.Namespace) -> None:
    images, _ = test_set(256)
    engines = {"onnxruntime (serve settings)": load_model(args.model, threads=THREADS["threads"]).run}
    engines["openvino, flatten as one Reshape"] = openvino(plain(onnx.load(args.model)))
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for batch in (1, 16, 64):
            for name, run in engines.items():  # alternating, so a change in load hits both alike
                run(images[:batch])
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < args.seconds:
                    run(images[count % 192 : count % 192 + batch])
                    count += batch
                results.setdefault((name, batch), []).append(count / (time.perf_counter() - start))
    for (name, batch), rates in results.items():
        print(f"{name:34s} batch {batch:3d}: {statistics.median(rates):8.1f} images/s (median of {len(rates)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("accuracy", "bisect", "speed"))
    parser.add_argument("--model", type=Path, default=SHIPPED_DIR / "model.int8.onnx")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="per engine; 0: its default")
    parser.add_argument("--seconds", type=float, default=1.0, help="per engine, batch and round")
    args = parser.parse_args()
    THREADS["threads"] = args.threads
    {"accuracy": accuracy, "bisect": bisect, "speed": speed}[args.command](args)


if __name__ == "__main__":
    main()

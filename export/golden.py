"""Golden answers in the model file: a few validation pictures and what the file answers for them, with how far any
engine may stray, so the service can check the engine it chose before it becomes ready (serve/golden.py).

The reference is onnxruntime as the service runs the file on this CPU. Every other engine and kernel choice export can
run here gives its own outputs for the same pictures: onnxruntime's exact u8 x u8 int8 kernels (what CPUs without
VNNI run, contract/cpu.py) and OpenVINO where it is installed. An engine counts only if it gives the reference's top-1
on at least AGREEMENT of AGREEMENT_PICTURES validation pictures (a wrongly compiled graph must not widen the
tolerance: OpenVINO on the exporter's old flatten agreed on 81 % here, 31 % on an AVX2 CPU; right, on 99.4 %). The
tolerance of each output is MARGIN times the widest difference of the engines that count, plus FLOOR of the output's
largest value: room for a CPU export did not run on, and far below what a wrongly compiled graph gives (4.75 on the
logits for that old flatten under OpenVINO, against 0.26-0.53 between the two engines on the right graph).

    python -m export.golden shipped/model.int8.onnx          # in place: only the metadata changes
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contract import model_file
from contract.cpu import OPENVINO_CONFIG, PRECISE_INT8, add_int8_entries
from contract.paths import PROCESSED_DIR
from export import metadata
from export.evaluation import load_split
from export.trust import split_of
from train.datamodule import validation_split

PICTURES = 16  # validation pictures, spread over the classes
AGREEMENT_PICTURES = 500
AGREEMENT = 0.98
OUTPUTS = (model_file.OUTPUT_NAME, model_file.EMBEDDING_NAME, model_file.OUTLIER_SCORE_NAME)
MARGIN = 3.0
FLOOR = 0.01
DIGITS = 7  # significant digits kept of each float32 value (its own precision)

Engine = Callable[[list[str], np.ndarray], list[np.ndarray]]


def _onnxruntime(data: bytes, entries: dict[str, str] | None = None) -> Engine:
    options = ort.SessionOptions()
    if entries is None:
        add_int8_entries(options)  # as the service runs it on this CPU
    else:
        for key, value in entries.items():
            options.add_session_config_entry(key, value)
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return lambda names, images: session.run(names, {model_file.INPUT_NAME: images})


def _openvino(path: Path) -> Engine | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    compiled = ov.Core().compile_model(str(path), "CPU", OPENVINO_CONFIG)
    request = compiled.create_infer_request()
    ports = {name: port for port in compiled.outputs for name in port.get_names()}

    def run(names: list[str], images: np.ndarray) -> list[np.ndarray]:
        result = request.infer({model_file.INPUT_NAME: images})
        return [np.array(result[ports[name]], copy=True) for name in names]

    return run


def pictures(config: dict | None, data_dir: Path = PROCESSED_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(PICTURES validation pictures of the training run's split, the first of each class in turn; the first
    AGREEMENT_PICTURES validation pictures)."""
    images, labels = load_split("train", data_dir)
    val_size, seed = split_of(config)
    val_idx, _ = validation_split(len(labels), val_size, seed)
    by_class = [val_idx[labels[val_idx] == label] for label in np.unique(labels)]
    chosen = [row[i] for i in range(PICTURES) for row in by_class if i < len(row)][:PICTURES]
    return np.ascontiguousarray(images[np.sort(chosen)]), np.ascontiguousarray(images[val_idx[:AGREEMENT_PICTURES]])


def golden(path: Path, images: np.ndarray, agreement_images: np.ndarray) -> dict:
    """The GOLDEN metadata of the file at `path` for `images`."""
    data = path.read_bytes()
    reference = _onnxruntime(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [name for name in OUTPUTS if name in {output.name for output in session.get_outputs()}]
    expected = dict(zip(names, reference(names, images), strict=True))
    (top1,) = reference([model_file.OUTPUT_NAME], agreement_images)
    others = {"onnxruntime-exact-int8": _onnxruntime(data, {PRECISE_INT8: "1"}), "openvino": _openvino(path)}
    measured: dict[str, dict] = {}
    for engine, run in others.items():
        if run is None:
            continue
        (logits,) = run([model_file.OUTPUT_NAME], agreement_images)
        agreement = float((logits.argmax(1) == top1.argmax(1)).mean())
        answers = dict(zip(names, run(names, images), strict=True))
        spread = {name: float(f"{np.abs(answers[name] - expected[name]).max():.4g}") for name in names}
        measured[engine] = {**spread, "top1_agreement": round(agreement, 4), "counted": agreement >= AGREEMENT}
    counted = [spread for spread in measured.values() if spread["counted"]]
    tolerance = {
        name: MARGIN * max((spread[name] for spread in counted), default=0.0)
        + FLOOR * float(np.abs(expected[name]).max())
        for name in names
    }
    return {
        model_file.GOLDEN_IMAGES: base64.b64encode(images.tobytes()).decode("ascii"),
        model_file.GOLDEN_SHAPE: list(images.shape),
        model_file.GOLDEN_OUTPUTS: {name: _rounded(values) for name, values in expected.items()},
        model_file.GOLDEN_TOLERANCE: {name: float(f"{value:.4g}") for name, value in tolerance.items()},
        model_file.GOLDEN_MEASURED_WITH: measured,
    }


def _rounded(values: np.ndarray) -> list:
    return np.vectorize(lambda v: float(f"{v:.{DIGITS}g}"), otypes=[float])(values).tolist()


def add_to_file(path: Path, data_dir: Path = PROCESSED_DIR) -> dict:
    """Write the golden answers into the file at `path`, in place (its graph unchanged). Returns them."""
    config = metadata.read(path).get(model_file.CONFIG)
    answers = golden(path, *pictures(config, data_dir))
    metadata.update(path, {model_file.GOLDEN: answers})
    return answers


def golden_line(answers: dict) -> str:
    """One line for export's output: the tolerance and the engines it was measured with."""
    engines = ", ".join(
        f"{engine} (top-1 agreement {m['top1_agreement']:.1%}{'' if m['counted'] else ', not counted'})"
        for engine, m in answers[model_file.GOLDEN_MEASURED_WITH].items()
    )
    count = answers[model_file.GOLDEN_SHAPE][0]
    return (
        f"golden answers: {count} pictures, tolerance {answers[model_file.GOLDEN_TOLERANCE]}; measured with {engines}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write golden answers into an exported model file, in place.")
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=PROCESSED_DIR, help="data/processed (the validation pictures)")
    args = parser.parse_args(argv)
    answers = add_to_file(args.model, args.data)
    print(f"{args.model}: {golden_line(answers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

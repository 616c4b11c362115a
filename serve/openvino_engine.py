"""OpenVINO as the model's engine (`ENGINE=openvino`), for deployments that take its size for its speed.

The file is still opened and checked by onnxruntime (serve.model.load_model); OpenVINO then compiles the same file
for the CPU and answers every batch. Installed only from requirements-serve-openvino.txt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from contract.cpu import OPENVINO_CONFIG
from contract.model_file import INPUT_NAME

# The outputs asked for (names) and the batch -> those outputs, in that order.
Runner = Callable[[list[str], np.ndarray], list[np.ndarray]]


class EngineUnavailable(Exception):
    """The engine cannot run the file here; the message is one line."""


def openvino_runner(path: Path, threads: int = 0) -> Runner:
    try:
        import openvino as ov
    except ImportError:
        raise EngineUnavailable(
            "ENGINE=openvino but OpenVINO is not installed (pip install -r requirements-serve-openvino.txt)"
        ) from None
    config = {**OPENVINO_CONFIG, **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    try:
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
        raise EngineUnavailable(f"OpenVINO cannot compile it ({' '.join(str(exc).split())[:300]})") from None
    request = compiled.create_infer_request()  # one: the batcher runs one inference at a time
    ports = {name: port for port in compiled.outputs for name in port.get_names()}

    def run(names: list[str], images: np.ndarray) -> list[np.ndarray]:
        result = request.infer({INPUT_NAME: images})
        # The request reuses its output buffers on the next call: copy before the rows are handed out.
        return [np.array(result[ports[name]], copy=True) for name in names]

    return run

"""OpenVINO as the model's engine (`ENGINE=openvino`), for deployments that take its size for its speed.

The file is still opened and checked by onnxruntime (serve.model.load_model); OpenVINO then compiles the same file
for the CPU and answers every batch. Installed only from requirements-serve-openvino.txt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

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
    # f32 for the float parts: on CPUs with bf16 units OpenVINO would run them in bf16 by default, which moved the
    # logits by up to 0.03 and measured no faster (the int8 convolutions stay int8: 2,280 images/s at batch 16).
    config = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
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

"""What every peer serves, from the service's own code: the decode and resize policy (serve.imaging), the onnxruntime
session setup (serve.model, with ORT_THREADS as the service reads it), and the answer's shape (serve.scoring), so
only the framework around it differs. These serve modules need numpy, Pillow and onnxruntime and nothing else (no
Starlette, no prometheus_client): a peer's venv holds those at the serve image's pins, plus its framework.

The service's other paths are left out on purpose: the decode-memory budget and the inline/thread split
(serve.decode_budget, serve.inline_decode) decide where and when a picture is decoded, not what it becomes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from serve.imaging import ImageRejected, to_model_input
from serve.model import LoadedModel, load_model
from serve.scoring import answer
from serve.settings import Settings

__all__ = ["Classifier", "ImageRejected"]


class Classifier:
    """The model loaded as `python -m serve` loads it, and the two steps a framework calls: decode one upload, then
    answer a batch of decoded pictures in one onnxruntime call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = load_model(settings.model_path, threads=settings.ort_threads)
        self._identity = {"name": self.model.name, "version": self.model.version}
        self.decode = _decoder(self.model, settings)  # upload bytes -> uint8 [H, W, 3], or ImageRejected

    @classmethod
    def from_env(cls) -> Classifier:
        """MODEL_PATH, ORT_THREADS, TOP_K, MAX_PIXELS, ...: the service's own settings and defaults."""
        return cls(Settings.from_env())

    @staticmethod
    def decoder(settings: Settings) -> Callable[[bytes], np.ndarray]:
        """`decode` for a process that decodes but does not run the model (a framework's front): the file's input
        size and resize policy, read once; the session is not kept."""
        return _decoder(load_model(settings.model_path, threads=1), settings)

    def classify(self, pictures: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Decoded pictures -> one answer each, in order: label, score, top_k and model, as POST /classify has them."""
        logits = self.model.run(np.stack(pictures))
        return [answer(row, self.model.labels, self.settings.top_k, self._identity) for row in logits]


def _decoder(model: LoadedModel, settings: Settings) -> Callable[[bytes], np.ndarray]:
    """Upload bytes -> uint8 [H, W, 3] for this model; raises ImageRejected for what is not a picture it can see."""
    return partial(to_model_input, size=model.input_size, policy=model.resize, max_pixels=settings.max_pixels)

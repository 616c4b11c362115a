"""The serving core, the steps every server of this model runs: setup (the model file, checked) -> decode (upload bytes
-> the model's input) -> infer (a batch of inputs -> each picture's outputs) -> answer (outputs -> the typed answer).

The service (serve/service.py) runs these steps with its batcher, budgets and log around them; the load test's peers
(loadtest/peers/) call them inside their own frameworks, so only the framework differs. This module needs numpy,
Pillow, onnxruntime and msgspec and nothing else (no Starlette, no prometheus_client): a peer's venv holds those at
the serve image's pins, plus its framework.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import msgspec
import numpy as np

from contract.model_file import EMBEDDING_NAME, OUTLIER_SCORE_NAME, OUTPUT_NAME
from serve.imaging import ImageRejected, Picture, decode_if_cheap, to_model_input
from serve.model import LoadedModel, load_model
from serve.schemas import Classification, ModelId
from serve.scoring import answer
from serve.settings import Settings

__all__ = ["Classifier", "ImageRejected", "Outputs", "Picture"]


class Outputs(NamedTuple):
    """One picture's row of the model's outputs."""

    logits: np.ndarray  # float32 [C]
    outlier_score: float | None = None  # when the file has the output
    embedding: np.ndarray | None = None  # when asked for (the prediction log keeps it) and the file has the output


class Classifier:
    """A loaded model and the steps around it. `embedding`: infer returns each picture's embedding too."""

    def __init__(self, model: LoadedModel, settings: Settings, *, embedding: bool = False) -> None:
        self.model = model
        self.top_k = settings.top_k
        self.output_names = model.answer_outputs(embedding=embedding)
        self.identity = ModelId(model.name, model.version)
        # How an upload becomes this model's input: its size and resize policy, and the pixel limit.
        self.decode_options: dict[str, Any] = {
            "size": model.input_size,
            "policy": model.resize,
            "max_pixels": settings.max_pixels,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> Classifier:
        """MODEL_PATH, ORT_THREADS, TOP_K, MAX_PIXELS, ...: the service's own settings and defaults."""
        return cls(load_model(settings.model_path, threads=settings.ort_threads, engine=settings.engine), settings)

    @classmethod
    def from_env(cls) -> Classifier:
        return cls.from_settings(Settings.from_env())

    # --- decode -----------------------------------------------------------------------------------------------

    def decode(self, data: bytes) -> np.ndarray:
        """Upload bytes -> uint8 [H, W, 3]; raises ImageRejected for what is not a picture the model can see."""
        return to_model_input(data, **self.decode_options)

    def decode_if_cheap(self, data: bytes) -> Picture | None:
        """The Picture when decoding `data` costs less than handing it to a thread (serve.inline_decode), else None."""
        return decode_if_cheap(data, **self.decode_options)

    @staticmethod
    def decoder(settings: Settings) -> Callable[[bytes], np.ndarray]:
        """`decode` for a process that decodes but does not run the model (a framework's front): the file's input
        size and resize policy, read once; the session is not kept."""
        model = load_model(settings.model_path, threads=1)
        return partial(to_model_input, size=model.input_size, policy=model.resize, max_pixels=settings.max_pixels)

    # --- infer ------------------------------------------------------------------------------------------------

    def infer(self, images: np.ndarray) -> list[Outputs]:
        """uint8 [N, H, W, 3] -> each picture's outputs, in one run of the model."""
        named = dict(zip(self.output_names, self.model.outputs(self.output_names, images), strict=True))
        logits, scores, embeddings = named[OUTPUT_NAME], named.get(OUTLIER_SCORE_NAME), named.get(EMBEDDING_NAME)
        return [
            Outputs(
                logits[i],
                None if scores is None else float(scores[i]),
                None if embeddings is None else embeddings[i],
            )
            for i in range(len(logits))
        ]

    # --- answer -----------------------------------------------------------------------------------------------

    def answer(self, outputs: Outputs) -> Classification:
        return answer(
            outputs.logits,
            self.model.labels,
            self.top_k,
            self.identity,
            outlier_score=outputs.outlier_score,
            outlier_threshold=self.model.outlier_threshold,
        )

    def classify(self, pictures: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Decoded pictures -> one answer each, in order, as the JSON object POST /classify has (without the id and
        token a service's answer adds): the whole path for a framework that batches."""
        return [msgspec.to_builtins(self.answer(outputs)) for outputs in self.infer(np.stack(pictures))]

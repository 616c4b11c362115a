"""The golden check: before the service becomes ready, the engine it chose answers the file's golden pictures
(contract/model_file.py GOLDEN, written by export/golden.py) and every output must lie within the file's tolerance
of the answers export recorded. An engine that compiles the graph wrongly, or int8 kernels that saturate, fail it
here rather than in front of users."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract import model_file
from serve.openvino_engine import Runner


class GoldenUnreadable(ValueError):
    """The file's golden answers are malformed; the message is one line."""


@dataclass(frozen=True)
class Golden:
    images: np.ndarray  # uint8 [n, H, W, 3]
    outputs: dict[str, np.ndarray]
    tolerance: dict[str, float]

    @classmethod
    def from_metadata(cls, value: Any, input_size: tuple[int, int]) -> Golden:
        """Raises GoldenUnreadable unless `value` holds pictures of the model's input size and a tolerance for every
        output it records."""
        try:
            shape = tuple(value[model_file.GOLDEN_SHAPE])
            raw = base64.b64decode(value[model_file.GOLDEN_IMAGES], validate=True)
            images = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
            outputs = {name: np.asarray(v, dtype=np.float32) for name, v in value[model_file.GOLDEN_OUTPUTS].items()}
            tolerance = {name: float(value[model_file.GOLDEN_TOLERANCE][name]) for name in outputs}
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise GoldenUnreadable(f"metadata {model_file.GOLDEN!r} is malformed ({exc})") from None
        if len(shape) != 4 or shape[1:] != (*input_size, 3) or not shape[0]:
            raise GoldenUnreadable(f"metadata {model_file.GOLDEN!r} holds pictures of shape {shape}")
        if model_file.OUTPUT_NAME not in outputs or any(len(v) != shape[0] for v in outputs.values()):
            raise GoldenUnreadable(f"metadata {model_file.GOLDEN!r} lacks the logits of every picture")
        return cls(images, outputs, tolerance)


@dataclass(frozen=True)
class GoldenCheck:
    """One engine's answers to the golden pictures against the file's."""

    engine: str
    passed: bool | None  # None: the file has no golden answers (nothing was checked)
    worst: dict[str, float] = field(default_factory=dict)  # output -> largest absolute difference
    tolerance: dict[str, float] = field(default_factory=dict)

    def failures(self) -> str:
        """One line naming each output that strayed beyond its tolerance."""
        return ", ".join(
            f"{name} off by {self.worst[name]:.3g} (tolerance {self.tolerance[name]:.3g})"
            for name in self.worst
            if not self.worst[name] <= self.tolerance[name]
        )

    def describe(self) -> dict[str, Any]:
        state = {None: "no golden answers in the file", True: "passed", False: "failed"}[self.passed]
        return {"result": state, "worst": self.worst, "tolerance": self.tolerance}


def check(engine: str, run: Runner, golden: Golden | None, available: set[str]) -> GoldenCheck:
    """Run the golden pictures on `run` and compare every recorded output the file has (`available`)."""
    if golden is None:
        return GoldenCheck(engine, None)
    names = [name for name in golden.outputs if name in available]
    answers = dict(zip(names, run(names, golden.images), strict=True))
    worst = {
        # NaN compares as the worst there is: `not worst <= tolerance` below.
        name: float(np.nan_to_num(np.abs(answers[name] - golden.outputs[name]), nan=np.inf).max())
        for name in names
    }
    tolerance = {name: golden.tolerance[name] for name in names}
    passed = all(worst[name] <= tolerance[name] for name in names)
    return GoldenCheck(engine, passed, {k: round(v, 5) for k, v in worst.items()}, tolerance)

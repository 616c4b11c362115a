"""Which engine runs the model (ENGINE): `onnxruntime`, `openvino`, or `auto` (the default): the fastest engine that
passes the file's golden check on this CPU.

The CPU's flags only pick what `auto` tries: OpenVINO where the CPU has int8 dot-product units (VNNI, AMX), where it
can be faster, and only where it is installed (never in the serve image); onnxruntime always. Each candidate must pass
the golden check (serve/golden.py); then a short timing at start decides, in alternation, the candidates' median time
for a batch of BATCH golden pictures. A named engine that fails the check, or cannot run here, stops the start; under
`auto` it is skipped and said in GET /model, and the start stops only when onnxruntime itself fails the check. A file
without golden answers runs on onnxruntime under `auto`: another engine could not be checked (OpenVINO answered the
exporter's old flatten wrongly, 33 % right, without a sign).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from contract.cpu import VNNI_FLAGS, cpu_flags
from contract.model_file import INPUT_NAME, OUTPUT_NAME
from serve import golden
from serve.openvino_engine import EngineUnavailable, Runner, openvino_runner
from serve.settings import AUTO, ENGINES, ONNXRUNTIME, OPENVINO

BATCH = 16  # the batcher's largest batch (BATCH_MAX_SIZE's default): where the engine's speed decides throughput
ROUNDS = 5  # timed runs per candidate, in alternation, after one warm-up each


class EngineRefused(Exception):
    """No engine may run the file here; the message is one line."""


@dataclass
class EngineChoice:
    name: str
    runner: Runner | None  # None: the onnxruntime session that checked the file runs it
    check: golden.GoldenCheck
    setting: str
    tried: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """GET /model's `engine`."""
        return {"name": self.name, "setting": self.setting, "golden_check": self.check.describe(), "tried": self.tried}


def candidates(setting: str, flags: set[str] | None = None) -> list[str]:
    if setting != AUTO:
        return [setting]
    flags = cpu_flags() if flags is None else flags
    return [ONNXRUNTIME, OPENVINO] if flags & VNNI_FLAGS else [ONNXRUNTIME]


def choose(
    setting: str,
    path: Path,
    session: ort.InferenceSession,
    *,
    threads: int = 0,
    answers: golden.Golden | None,
    outputs: set[str],
    flags: set[str] | None = None,
) -> EngineChoice:
    """The engine that runs the file, by `setting`; raises EngineRefused."""
    if setting not in ENGINES:
        raise EngineRefused(f"unknown engine {setting!r} (one of {', '.join(ENGINES)})")
    # name -> (its runner, None for the checking session's; what runs it; its check)
    runners: dict[str, tuple[Runner | None, Runner, golden.GoldenCheck]] = {}
    tried: dict[str, dict[str, Any]] = {}
    for name in candidates(setting, flags):
        if setting == AUTO and name != ONNXRUNTIME and answers is None:
            # Nothing to check it against: `auto` runs an unchecked file on onnxruntime, its reference, without
            # building another engine at start only to drop it.
            tried[name] = {"golden_check": golden.GoldenCheck(name, None).describe()["result"]}
            continue
        try:
            runner = None if name == ONNXRUNTIME else openvino_runner(path, threads)
        except EngineUnavailable as exc:
            if setting != AUTO:
                raise EngineRefused(str(exc)) from None
            tried[name] = {"skipped": str(exc)}
            continue
        run = runner or _session_runner(session)
        check = golden.check(name, run, answers, outputs)
        tried[name] = {"golden_check": check.describe()["result"]}
        if check.passed is False:
            if setting != AUTO or name == ONNXRUNTIME:
                raise EngineRefused(f"{name} fails the file's golden check: {check.failures()}")
            continue
        runners[name] = (runner, run, check)
    if not runners:
        raise EngineRefused("no engine can run the file here")
    if len(runners) > 1:
        images = _timing_batch(session, answers)
        timed = {name: run for name, (_, run, _) in runners.items()}
        for name, seconds in _time_in_alternation(timed, images).items():
            tried[name]["images_per_s"] = round(BATCH / seconds, 1)
    name = max(runners, key=lambda n: tried[n].get("images_per_s", 0.0))
    runner, _, check = runners[name]
    return EngineChoice(name, runner, check, setting, tried)


def _session_runner(session: ort.InferenceSession) -> Runner:
    return lambda names, images: session.run(names, {INPUT_NAME: images})


def _timing_batch(session: ort.InferenceSession, answers: golden.Golden | None) -> np.ndarray:
    """BATCH pictures: the golden ones repeated, or random pixels of the input's size."""
    if answers is not None:
        return np.resize(answers.images, (BATCH, *answers.images.shape[1:]))
    _, height, width, channels = session.get_inputs()[0].shape
    return np.random.default_rng(0).integers(0, 256, (BATCH, height, width, channels), dtype=np.uint8)


def _time_in_alternation(runners: dict[str, Runner], images: np.ndarray) -> dict[str, float]:
    """Median seconds per batch of each runner (logits only), one warm-up run each, then ROUNDS in alternation."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run([OUTPUT_NAME], images)
    for _ in range(ROUNDS):
        for name, run in runners.items():
            started = time.perf_counter()
            run([OUTPUT_NAME], images)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}

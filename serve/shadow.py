"""The shadow challenger: a second model file (SHADOW_MODEL_PATH) answers a share of the requests (SHADOW_SHARE)
after the person's answer is made, so a candidate is compared with the champion on real traffic before anyone sees
its answers. Its answer joins the request's prediction-log line as `shadow` (`python -m monitor compare` reads it).

The champion's answer never waits for the challenger: the route hands the request over (a few microseconds) and
answers; a thread of its own, at a lower CPU priority, runs the challenger on what piled up. The challenger is
dropped first: when requests are waiting for the champion, or its own queue is full, the line goes out without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from serve.core import Classifier
from serve.log_writer import Prediction
from serve.model import LoadedModel, ModelLoadError
from serve.schemas import Classification

log = logging.getLogger("serve")

BATCH = 16  # requests the challenger takes at once (the champion's BATCH_MAX_SIZE)
NICENESS = 10  # the challenger's thread yields the CPU to the champion's (Linux: nice is per thread)
OUTCOMES = ("agree", "disagree", "dropped")  # serve_shadow_answers_total{outcome}
_STOP = object()


class Shadow:
    """`offer()` from the event loop; `start()` and `stop()` around the app's life."""

    def __init__(self, challenger: Classifier, share: float, *, capacity: int, count: Callable[[str], None],
                 write: Callable[[Prediction], None] | None, rng: random.Random | None = None) -> None:  # fmt: skip
        self.challenger = challenger
        self.share = share
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._count = count  # outcome -> the metric
        self._write = write  # the prediction log's submit, or None without a log
        self._rng = rng or random.Random()
        self._thread: threading.Thread | None = None

    def offer(self, prediction: Prediction, *, busy: bool) -> bool:
        """Take the request for the challenger (True: its line is written once the challenger answered) or leave
        it (False: the caller writes the line now). Never blocks."""
        if self.share <= 0 or self._rng.random() >= self.share:
            return False
        if busy:
            self._count("dropped")
            return False
        try:
            self._queue.put_nowait(prediction)
        except queue.Full:
            self._count("dropped")
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="serve-shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Answer what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()

    def _work(self) -> None:
        # Not Linux, or not allowed: the challenger runs at the champion's priority.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            predictions = [item for item in batch if item is not _STOP]
            if predictions:
                self._answer(predictions)
            if stop:
                return

    def _answer(self, predictions: list[Prediction]) -> None:
        started = time.perf_counter()
        try:
            outputs = self.challenger.infer(np.stack([p.pixels for p in predictions]))
        except Exception:  # the challenger failing must never cost the champion's line
            log.exception("the shadow model failed on %d requests", len(predictions))
            for prediction in predictions:
                self._count("dropped")
                self._emit(prediction)
            return
        inference_ms = round((time.perf_counter() - started) * 1000, 3)
        for prediction, row in zip(predictions, outputs, strict=True):
            shadow = shadow_answer(self.challenger.answer(row)) | {"inference_ms": inference_ms}
            self._count("agree" if shadow["label"] == prediction.answer.label else "disagree")
            self._emit(dataclasses.replace(prediction, shadow=shadow))

    def _emit(self, prediction: Prediction) -> None:
        if self._write is not None:
            self._write(prediction)


def shadow_answer(answer: Classification) -> dict[str, Any]:
    """The line's `shadow`: the challenger's version, label and score (and outlier fields when its file has them);
    the caller adds `inference_ms`, the time of the challenger's batch."""
    shadow = {"version": answer.model.version, "label": answer.label, "score": answer.score}
    if answer.outlier is not None:
        shadow |= {"outlier": answer.outlier, "outlier_score": answer.outlier_score}
    return shadow


def check_challenger(champion: LoadedModel, challenger: LoadedModel) -> None:
    """ModelLoadError unless the challenger reads the champion's input (the same pixels) and answers its labels."""
    ours, theirs = (champion.input_size, champion.resize, champion.labels), (
        challenger.input_size, challenger.resize, challenger.labels)  # fmt: skip
    if ours != theirs:
        raise ModelLoadError(challenger.path, f"as the shadow model: its input and labels {theirs} are not the "
                                              f"champion's {ours}")  # fmt: skip

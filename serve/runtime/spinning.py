"""ORT_SPINNING=auto: onnxruntime's idle threads spin while requests come one at a time, and sleep once they queue.

Spinning threads answer a lone request sooner (1.14x the requests per second at one client, always on), but at 16
and 64 clients they take the CPU that decoding and HTTP need (-7 % and -13 %); switched so, 1.12x at one client and
no loss at 16 or 64 (benchmarks/ab/README.md). onnxruntime fixes the choice when a session is made, and a second
session costs ~18 MB, so the switch keeps one session and rebuilds it,
in a thread of its own, when the load changes side: after `window` batches in a row of one request with nothing
waiting it spins; once a quarter of the last `window` batches had company it sleeps again. At most one switch per
`min_dwell_s`, so a load that hovers between the two does not rebuild sessions back to back.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contract.model_file import INPUT_NAME
from serve.model import LoadedModel, ModelChanged, ort_session
from serve.settings import Settings

log = logging.getLogger("serve")


def release_free_memory() -> None:
    """glibc's malloc_trim(0): the free pages of every malloc arena back to the system (elsewhere: nothing)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        ctypes.CDLL(None).malloc_trim(0)


def spin_switch(model: LoadedModel, settings: Settings) -> SpinSwitch | None:
    """ORT_SPINNING=auto with onnxruntime running the model: the switch that rebuilds its session as the load says."""
    if settings.ort_spinning != "auto" or model.session is None:
        return None
    warm_up = np.zeros((settings.batch_max_size, *model.input_size, 3), dtype=np.uint8)

    outputs = [output.name for output in model.session.get_outputs()]

    def build(spinning: bool) -> ort.InferenceSession:
        # The bytes loaded at start (a file replaced at MODEL_PATH since changes nothing until a restart); ModelChanged
        # when they were overwritten in place: the switch then keeps the session it has.
        def session_of(source: Path | bytes) -> ort.InferenceSession:
            return ort_session(source, threads=settings.ort_threads, spinning=spinning)

        session = model.pinned.session(session_of) if model.pinned is not None else session_of(model.path)
        if [output.name for output in session.get_outputs()] != outputs:
            raise ModelChanged("the rebuilt session answers other outputs than the loaded one")
        session.run(None, {INPUT_NAME: warm_up})  # its first run allocates and picks kernels: not on a request
        return session

    return SpinSwitch(build, model.use_session)


class SpinSwitch:
    def __init__(
        self,
        build: Callable[[bool], ort.InferenceSession],
        use: Callable[[ort.InferenceSession], None],
        *,
        window: int = 32,
        min_dwell_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        trim_after_s: float = 1.0,
    ) -> None:
        """`build(spinning)` makes a session (warmed up); `use(session)` makes the model run on it from now on."""
        self._build, self._use = build, use
        self._lonely: deque[bool] = deque(maxlen=window)
        self._min_dwell_s, self._clock, self._trim_after_s = min_dwell_s, clock, trim_after_s
        self.spinning = False  # the model's first session sleeps (load_configured)
        self._switched_at = float("-inf")  # the first switch needs no dwell: there was none before it
        self._thread: threading.Thread | None = None
        self.switches = 0

    @property
    def busy(self) -> bool:
        """A session is being built."""
        return self._thread is not None and self._thread.is_alive()

    def observe(self, batch_size: int, waiting: int) -> None:
        """After each batch, on the event loop: was the batch a lone request with nothing queued behind it?"""
        self._lonely.append(batch_size == 1 and waiting == 0)
        if self.busy or self._clock() - self._switched_at < self._min_dwell_s:
            return
        full = len(self._lonely) == self._lonely.maxlen
        if not self.spinning and full and all(self._lonely):
            self._switch(True)
        elif self.spinning and self._lonely.count(False) * 4 >= len(self._lonely):
            self._switch(False)

    def _switch(self, spinning: bool) -> None:
        self.spinning = spinning
        self._switched_at = self._clock()
        self._lonely.clear()
        self.switches += 1
        self._thread = threading.Thread(target=self._rebuild, args=(spinning,), name="serve-respin", daemon=True)
        self._thread.start()

    def _rebuild(self, spinning: bool) -> None:
        try:
            session = self._build(spinning)
        except Exception:  # the file loaded once already; if it cannot again, keep the session that works
            log.exception("could not rebuild the onnxruntime session (spinning=%s); keeping the current one", spinning)
            self.spinning = not spinning
            return
        self._use(session)
        del session
        log.info("onnxruntime threads now %s while idle (ORT_SPINNING=auto)", "spin" if spinning else "sleep")
        # The old session is freed once the batch running on it returns (a batch takes milliseconds). Its memory
        # goes back to malloc, not to the system: without a trim every switch left the RSS ~20-40 MB higher
        # (110 -> 190 MB after two switches, measured).
        time.sleep(self._trim_after_s)
        release_free_memory()

    def join(self, timeout: float | None = None) -> None:
        """Wait for a rebuild under way (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

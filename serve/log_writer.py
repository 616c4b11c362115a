"""The prediction log's writer: one JSON line per answered /classify and per /feedback (the fields, the summary of
what the model saw and the embedding's compaction are contract/prediction_log.py's), to a file or stdout.

The event loop only puts a record on a bounded queue (a few microseconds); a writer thread summarises the inputs
(a batch at a time), builds and writes the lines. When the queue is full (the sink is slow or stuck) the record is
dropped and counted in `serve_prediction_log_dropped_total`: an answer never waits for its log line.

Whole lines or none: the writer writes to the file descriptor itself, and when a write fails or stops short (a full
disk, a file-size limit, a closed pipe) it cuts a file back to its last whole line, or, on a pipe, starts the next
write on a new line; every line not written whole is counted once (tests/serve/test_serve_prediction_log.py fills a
file-size limit to show it).
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from contract import input_summary
from contract import prediction_log as plog
from contract.feedback_token import input_digest
from serve.schemas import Answer

log = logging.getLogger("serve")

STDOUT = "-"
# Records the writer takes at once: one numpy pass summarises them all, one write and flush sends their lines. It
# waits WRITE_WAIT_S after the first for more to come: a record costs the writer about 350 us alone, 110 us in a batch
# of 16 or more (the summary's numpy calls cost the same for 1 image as for 64), and a line may well be 50 ms late.
WRITE_BATCH = 256
WRITE_WAIT_S = 0.05
# The writer is Python and holds the GIL while it builds lines; were it to hold it for long, the event loop would wait
# for it up to the interpreter's switch interval (5 ms) at each turn (at 16 clients: 71 -> 55 req/s). So it builds
# 8 records' lines at a time (about 1 ms) and hands the GIL back in between.
SUMMARY_CHUNK = 8
_STOP = object()


@dataclass(frozen=True, slots=True)
class Prediction:
    """What an answered /classify leaves for its line; the writer thread turns it into one."""

    request_id: str
    time: str
    model_name: str
    model_version: str
    answer: Answer  # what the client was answered
    latency_ms: float
    upload: dict[str, Any]  # format, width, height, bytes
    pixels: np.ndarray  # the model's uint8 [H, W, 3] input: summarised, never written
    embedding: np.ndarray | None  # the model's `embedding` row, when it has that output
    shadow: dict[str, Any] | None = None  # the shadow challenger's answer (serve/shadow.py), when it gave one


def prediction_lines(records: list[Prediction]) -> list[dict[str, Any]]:
    """Records of one model (one input size) -> their lines, the inputs summarised in one pass."""
    summaries = input_summary.summarize_input(np.stack([record.pixels for record in records]))
    embeddings: list[Any] = [None] * len(records)
    if all(record.embedding is not None for record in records):
        embeddings = input_summary.embedding_for_log(np.stack([record.embedding for record in records]))
    return [
        plog.build_prediction(
            request_id=record.request_id,
            model_name=record.model_name,
            model_version=record.model_version,
            label=record.answer.label,
            score=record.answer.score,
            top_k=[{"label": entry.label, "score": entry.score} for entry in record.answer.top_k],
            outlier=record.answer.outlier,
            outlier_score=record.answer.outlier_score,
            input_digest=input_digest(record.pixels),  # what the answer's token signs, computed off the event loop
            shadow=record.shadow,
            latency_ms=record.latency_ms,
            upload=record.upload,
            summary=summary,
            embedding=embedding,
            time=record.time,
        )
        for record, summary, embedding in zip(records, summaries, embeddings, strict=True)
    ]


def log_text(records: list[Any]) -> Iterator[str]:
    """Records (Predictions, or feedback lines already built) -> JSONL text, SUMMARY_CHUNK records at a time."""
    for start in range(0, len(records), SUMMARY_CHUNK):
        chunk = records[start : start + SUMMARY_CHUNK]
        predictions = [record for record in chunk if isinstance(record, Prediction)]
        built = iter(prediction_lines(predictions) if predictions else [])
        lines = [next(built) if isinstance(record, Prediction) else record for record in chunk]
        yield "".join(plog.dumps(line) + "\n" for line in lines)


def check_target(target: str) -> None:
    """OSError unless `target` (a path; "-" and "" need nothing) can be appended to: found before the server starts."""
    if target in ("", STDOUT):
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8"):
        pass


class PredictionLog:
    """`submit()` from the event loop; `start()` and `close()` around the app's life. `sink` is a text stream, or
    None to open `target` (a path, or "-" for stdout) in the writer's own start."""

    def __init__(self, target: str, *, capacity: int, on_drop: Callable[[int], None], sink: TextIO | None = None):
        self.target = target
        self._sink = sink
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._on_drop = on_drop
        self._thread: threading.Thread | None = None
        self._fd: int | None = None  # the descriptor written (a file this writer opened, or stdout's), when no sink
        self._opened = False  # the file this writer opened (and closes); never stdout nor a sink handed in
        self._regular = False  # a regular file, which a short write can be cut back on
        self._mid_line = False  # a short write left part of a line on a pipe: the next write starts a new line

    def start(self) -> None:
        if self._sink is None:
            if self.target == STDOUT:
                sys.stdout.flush()
                try:
                    self._fd = sys.stdout.fileno()
                except (AttributeError, OSError, ValueError):  # a stdout without a descriptor (a test's capture)
                    self._sink = sys.stdout
            else:
                Path(self.target).parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                self._opened = True
            if self._fd is not None:
                self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._thread = threading.Thread(target=self._write_all, name="serve-prediction-log", daemon=True)
        self._thread.start()

    def submit(self, record: Prediction | dict[str, Any]) -> bool:
        """A Prediction, or a line already built (feedback). Never blocks: a full queue drops the record (and counts
        it). True when the record is queued: it is then written within WRITE_WAIT_S, unless the process is killed."""
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            self._on_drop(1)
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to `timeout`), then stop the writer and close the file."""
        if self._thread is None:
            return
        while True:  # the stop marker must get in even when the queue is full: make room by dropping
            try:
                self._queue.put(_STOP, timeout=timeout)
                break
            except queue.Full:
                self._discard_one()
        self._thread.join(timeout)
        self._thread = None
        if self._opened and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _discard_one(self) -> None:
        try:
            self._queue.get_nowait()
            self._on_drop(1)
        except queue.Empty:
            pass

    def _write_all(self) -> None:
        while True:
            records = [self._queue.get()]
            if records[0] is not _STOP:
                time.sleep(WRITE_WAIT_S)
            while len(records) < WRITE_BATCH:
                try:
                    records.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(record is _STOP for record in records)
            records = [record for record in records if record is not _STOP]
            if records:
                self._write(records)
            if stop:
                return

    def _write(self, records: list[Any]) -> None:
        try:
            parts = []
            for text in log_text(records):
                parts.append(text)
                time.sleep(0)  # the GIL back to the event loop now, not after the 5-ms switch interval
            text = "".join(parts)
        except Exception:  # a line that cannot be built loses its batch, never the writer or an answer
            log.exception("prediction log: %d lines lost", len(records))
            self._on_drop(len(records))
            return
        if self._fd is None:
            self._write_sink(text, len(records))
        else:
            self._write_fd(text.encode("utf-8"), len(records))

    def _write_sink(self, text: str, lines: int) -> None:
        try:
            assert self._sink is not None
            self._sink.write(text)
            self._sink.flush()
        except Exception:  # a stream handed in (tests, a wrapper): all or nothing as it says
            log.exception("prediction log: %d lines lost", lines)
            self._on_drop(lines)

    def _write_fd(self, data: bytes, lines: int) -> None:
        """Write whole lines; on a failed or short write keep the whole lines written, undo the rest, count the lost."""
        assert self._fd is not None
        if self._mid_line:
            data = b"\n" + data  # ends the cut line left on the pipe: that line was counted lost already
        start = os.lseek(self._fd, 0, os.SEEK_END) if self._regular else 0
        written, error = 0, None
        while written < len(data):
            try:
                done = os.write(self._fd, data[written:])
            except OSError as exc:  # ENOSPC, EFBIG, EPIPE, ...
                error = exc
                break
            if done == 0:
                break
            written += done
        if written == len(data):
            self._mid_line = False
            return
        whole = data.rfind(b"\n", 0, written) + 1  # the bytes of the whole lines that made it
        kept = data[:whole].count(b"\n") - (1 if data.startswith(b"\n") and whole else 0)
        self._mid_line = False
        if whole < written:  # part of a line is out there
            if self._regular:
                try:
                    os.ftruncate(self._fd, start + whole)
                except OSError:
                    self._mid_line = True
            else:
                self._mid_line = True
        lost = lines - kept
        log.error("prediction log: %d lines lost (%s)", lost, error or "short write")
        self._on_drop(lost)

"""Every log record of the process (the service's own, uvicorn's, the access log) leaves the event loop through a
bounded queue; one thread writes them, the access log to stdout and the rest to stderr.

A stdout that stops being read (a paused pipe, a stuck log collector: on Cloud Run stdout is the logging pipe) then
stalls that thread alone. When the queue is full a record is dropped and counted (`serve_log_records_dropped_total`),
so an answer or a health check never waits for a log line (tests/serve/test_serve_process.py replays the stall).
The standard library's QueueHandler and QueueListener do the work; `enqueue` is the hook it documents for choosing
what a full queue does.
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import Callable
from logging.handlers import QueueHandler, QueueListener

CAPACITY = 10_000  # records waiting for the writer thread: ~20 s of access log at 500 req/s
ACCESS_LOGGER = "uvicorn.access"
FORMAT = "%(levelname)s:%(name)s:%(message)s"


class DroppingQueueHandler(QueueHandler):
    """Puts a record on the queue without waiting; a full queue drops it and says so through `on_drop`."""

    def __init__(self, records: queue.Queue, on_drop: Callable[[], None]) -> None:
        super().__init__(records)
        self.on_drop = on_drop

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.on_drop()


def start(level: int | str, on_drop: Callable[[], None], capacity: int = CAPACITY) -> QueueListener:
    """Route the root logger (and so uvicorn's, which propagate) through the queue; returns the running listener,
    which `stop()` flushes at exit."""
    records: queue.Queue = queue.Queue(capacity)
    access = logging.StreamHandler(sys.stdout)
    access.addFilter(lambda record: record.name == ACCESS_LOGGER)
    other = logging.StreamHandler(sys.stderr)
    other.addFilter(lambda record: record.name != ACCESS_LOGGER)
    for handler in (access, other):
        handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [DroppingQueueHandler(records, on_drop)]
    root.setLevel(level)
    listener = QueueListener(records, access, other, respect_handler_level=True)
    listener.start()
    return listener

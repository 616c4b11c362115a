"""Read prediction logs: local JSONL files (gzipped or not, `-` for stdin), the service's own lines or the rows of a
BigQuery export of a Cloud Logging sink (each row holding the line under `jsonPayload`). A line that is not one of
ours is skipped and counted by reason, never fatal."""

from __future__ import annotations

import gzip
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from contract import prediction_log as plog


class LogError(Exception):
    """A log file cannot be opened at all (missing, unreadable): a usage problem, exit code 2."""


@dataclass
class LogRead:
    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> lines (contract.prediction_log.CORRUPT, ...)
    lines: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(count for reason, count in self.skipped.items() if reason != plog.BLANK)


def _lines(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    file = Path(path)
    try:
        with file.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(file, "rb") as handle:
            try:
                yield from handle
            except (OSError, EOFError):  # a truncated .gz: keep what was read
                return
    except OSError as exc:
        raise LogError(f"{path}: {exc.strerror or exc}") from None


def read(paths: Iterable[str]) -> LogRead:
    """Every line of every file, in order; each kept line gains `_order` (its position) to break time ties."""
    result = LogRead()
    for path in paths:
        result.files.append(str(path))
        for raw in _lines(str(path)):
            result.lines += 1
            line, reason = plog.classify_line(raw)
            if line is None:
                result.skipped[reason] += 1
                continue
            line["_order"] = result.lines
            (result.predictions if line["kind"] == plog.KIND_PREDICTION else result.feedback).append(line)
    return result


def when(line: dict[str, Any]) -> datetime | None:
    return plog.parse_time(line.get("time"))


def chronological(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted by time (lines without one keep their place among the oldest), then by position in the log."""

    def key(line: dict[str, Any]) -> tuple[int, float, int]:
        time = when(line)
        return (0, 0.0, line["_order"]) if time is None else (1, time.timestamp(), line["_order"])

    return sorted(lines, key=key)


def latest_feedback(feedback: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], int]:
    """One feedback per request, the last one given (by time, then by position in the log), and how many earlier
    ones it replaced: a person who changes their mind is counted once, with their last answer."""
    latest: dict[str, dict[str, Any]] = {}
    for line in chronological(feedback):
        latest[line["request_id"]] = line
    return latest, len(feedback) - len(latest)

"""--rounds N: every server is loaded N times in alternation (a fresh process each time), and the report quotes, per
server and level, the median across rounds: one round's luck (a neighbour's burst of CPU) moves no verdict.

Rates, latencies, CPU per request and memory are medians; counts (requests, statuses, resends, seconds) are summed
over the rounds, lists joined; the exit code is the first non-zero one. Each round's throughput stays beside the
median, to show the spread."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

SUMMED = ("requests", "ok", "seconds", "resent")
LISTED = ("throughput_rps",)  # kept per round beside their median


def median(values: list[Any]) -> float | None:
    """The median of the values that were measured (None stands for not measured), rounded as the entries are."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    middle = statistics.median(known)
    if all(isinstance(v, int) for v in known) and float(middle).is_integer():
        return int(middle)  # counts stay counts (the median of 4 and 4 processes is 4, not 4.0)
    return round(float(middle), 3)


def _sum_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    return dict(sorted(sum(map(Counter, dicts), Counter()).items()))


def merge(values: list[Any], key: str = "") -> Any:
    """One value from the rounds' values of the same field."""
    first = values[0]
    if key == "statuses":
        return _sum_counts(values)
    if key in SUMMED:
        total = sum(values)
        return round(total, 3) if isinstance(total, float) else total
    if isinstance(first, dict):
        return {k: merge([v.get(k) for v in values], k) for k in first}
    if isinstance(first, list):  # e.g. processes left running: those of every round
        return [item for value in values for item in value]
    if isinstance(first, bool) or not isinstance(first, int | float | None):
        return first  # flags and words: the same in every round
    return median(values)


def merge_entries(entries: list[dict]) -> dict:
    """One level's entries from the rounds (same concurrency) -> the median entry."""
    merged = merge(entries)
    merged["concurrency"] = entries[0]["concurrency"]
    for key in LISTED:
        merged[f"{key}_rounds"] = [e[key] for e in entries]
    merged["rounds"] = len(entries)
    return merged


def merge_records(records: list[dict]) -> dict:
    """One server's records from N rounds -> one record in the same shape; a single round is returned as it is."""
    if len(records) == 1:
        return records[0]
    merged = merge([{k: v for k, v in r.items() if k not in ("scenarios", "exit_code")} for r in records])
    merged["scenarios"] = {}
    for kind, entries in records[0]["scenarios"].items():
        by_level = [
            [next(e for e in r["scenarios"][kind] if e["concurrency"] == entry["concurrency"]) for r in records]
            for entry in entries
        ]
        merged["scenarios"][kind] = [merge_entries(level) for level in by_level]
    codes = [r["exit_code"] for r in records]
    merged["exit_code"] = next((code for code in codes if code != 0), 0)
    merged["exit_codes"] = codes
    merged["rounds"] = len(records)
    return merged


def merge_rounds(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """[{server: record} per round] -> {server: the record of medians}, in the first round's order."""
    return {name: merge_records([r[name] for r in rounds]) for name in rounds[0]}

"""The robustness table (evaluation/robustness.py) as Markdown, and docs/robustness.md kept in step with it: the
command rewrites only the part between the two markers, so the prose around the table stays hand-written."""

from __future__ import annotations

from pathlib import Path

START = "<!-- robustness-table: start (python -m evaluation.robustness ... --docs docs/robustness.md) -->"
END = "<!-- robustness-table: end -->"


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _level(value: float) -> str:
    return f"{value:g}"


def markdown(table: dict, worst: list[tuple[str, float, float]]) -> str:
    severities = max(len(row["levels"]) for row in table["corruptions"].values())
    lines = [
        f"Model `{table['version']}`, {table['test_images']} test images (stratified, seed {table['seed']}, "
        f"data `{table['data']}`): clean top-1 **{_pct(table['clean_top1'])}**, mean corrupted top-1 "
        f"**{_pct(table['mean_corrupted_top1'])}** (the mean of the {sum(map(len, _tops(table)))} cells below).",
        "",
        "| Corruption | Parameter | " + " | ".join(f"Severity {i + 1}" for i in range(severities)) + " | Mean |",
        "|---|---|" + "---:|" * (severities + 1),
    ]
    for name, row in table["corruptions"].items():
        cells = [f"{_pct(score)} ({_level(level)})" for level, score in zip(row["levels"], row["top1"], strict=True)]
        lines.append(f"| {name} | {row['parameter']} | " + " | ".join(cells) + f" | {_pct(row['mean_top1'])} |")
    lines += ["", "| Upload path (JPEG photo -> service decode + resize) | Images | Top-1 | Same images, clean |"]
    lines.append("|---|---:|---:|---:|")
    for name, row in table["upload"].items():
        lines.append(f"| {name} | {row['images']} | {_pct(row['top1'])} | {_pct(row['clean_top1'])} |")
    if table.get("clean_flagged") is not None:
        lines += ["", f"Flagged as none of the ten (clean: {_pct(table['clean_flagged'])}):", ""]
        lines.append("| Corruption | " + " | ".join(f"Severity {i + 1}" for i in range(severities)) + " |")
        lines.append("|---|" + "---:|" * severities)
        for name, row in table["corruptions"].items():
            lines.append(f"| {name} | " + " | ".join(_pct(value) for value in row["flagged"]) + " |")
    lines += ["", "Worst cells: " + ", ".join(f"{name} {_level(level)}: {_pct(score)}" for name, level, score in worst)]
    return "\n".join(lines) + "\n"


def _tops(table: dict) -> list[list[float]]:
    return [row["top1"] for row in table["corruptions"].values()]


def _split(path: Path) -> tuple[str, str]:
    head, start, rest = path.read_text().partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"{path}: lacks the markers {START!r} and {END!r}")
    return head, tail


def check_markers(path: Path) -> None:
    _split(path)


def update_docs(path: Path, text: str) -> None:
    """Replace what lies between START and END in `path` by `text`."""
    head, tail = _split(path)
    path.write_text(f"{head}{START}\n{text}{END}{tail}")

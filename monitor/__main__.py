"""python -m monitor drift|harvest|approve|compare: check the prediction log for drift; harvest consented
corrections that check out into a review folder; approve what a person reviewed into the training dataset; compare
the champion with its shadow challenger on logged traffic.

Exit codes of `drift`: 0 compared (drift or not, unless --fail-on-drift); 1 drift found with --fail-on-drift;
2 unusable arguments, log file or reference; 3 the window holds no prediction lines (the report says so).
Exit codes of `compare`: 0 the challenger passes the gate; 1 it fails it; 2 unusable arguments or log files, or no
shadowed line; 3 too little feedback to judge.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from contract import feedback_token
from contract import prediction_log as plog
from monitor import compare, drift, drift_report, harvest, logs
from monitor.reference import DEFAULT_REFERENCE, ReferenceError, load

EXIT_OK, EXIT_DRIFT, EXIT_USAGE, EXIT_EMPTY = 0, 1, 2, 3
DATASET_DIR, REVIEW_DIR = Path("data/feedback"), Path("data/feedback-review")
SINKS = """Logs: JSONL files (.gz too, `-` for stdin): the service's own lines (PREDICTION_LOG), or a BigQuery export
of a Cloud Logging sink, one row per line with the service's line under `jsonPayload` (docs/monitoring.md)."""


def _time(text: str) -> datetime:
    parsed = plog.parse_time(text)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use ISO 8601, e.g. 2025-01-31T00:00:00Z)")
    return parsed


def _window(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("the window is at least 1 prediction")
    return value


def run_drift(args: argparse.Namespace) -> int:
    try:
        reference = load(args.reference)
        read = logs.read(args.logs)
    except (ReferenceError, logs.LogError) as exc:
        print(f"monitor drift: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result, _, extras, data = drift.check(
        read, reference, size=args.window, since=args.since, until=args.until, alpha=args.alpha
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "report.html").write_text(drift_report.render(result, reference, data, extras))
    skipped = sum(result["lines"]["skipped"].values())
    window = result["window"]
    print(
        f"{result['status']}: {window['predictions']} predictions ({window['first']} .. {window['last']}), "
        f"{len(result['tests'])} tests, drifted: {', '.join(result['drifted']) or 'none'}; "
        f"{skipped} lines skipped; wrote {args.out / 'drift.json'} and {args.out / 'report.html'}"
    )
    if result["status"] == "empty":
        return EXIT_EMPTY
    return EXIT_DRIFT if result["drift"] and args.fail_on_drift else EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    try:
        read = logs.read(args.logs)
    except logs.LogError as exc:
        print(f"monitor compare: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = compare.compare(read)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "report.html").write_text(compare.render(result))
    print(f"{result['verdict']}: {result['reason']}; wrote {args.out / 'compare.json'} and {args.out / 'report.html'}")
    return {compare.PASS: EXIT_OK, compare.FAIL: 1, compare.NO_SHADOW: EXIT_USAGE}.get(result["verdict"], EXIT_EMPTY)


def run_harvest(args: argparse.Namespace) -> int:
    try:
        labels = load(args.reference).labels
        raw_keys = os.environ.get(args.key_env, "").strip()
        keys = feedback_token.parse_keys(raw_keys) if raw_keys else ()
        summary = harvest.harvest(args.logs, args.review, args.out, labels, keys)
    except (ReferenceError, logs.LogError, harvest.HarvestError, ValueError) as exc:
        print(f"monitor harvest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps({key: value for key, value in summary.items() if key != "items"}, indent=2))
    print(f"next: review the pictures in {args.review} (summary.md), then `python -m monitor approve`")
    return EXIT_OK


def run_approve(args: argparse.Namespace) -> int:
    try:
        result = harvest.approve(args.review, args.out)
    except harvest.HarvestError as exc:
        print(f"monitor approve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result, indent=2))
    print(f"next: dvc add {args.out} && git add {args.out}.dvc  (a new dataset version; docs/monitoring.md)")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m monitor", description=__doc__.splitlines()[0], epilog=SINKS)
    commands = main.add_subparsers(dest="command", required=True)

    check = commands.add_parser("drift", help="compare a window of the log with the reference", epilog=__doc__)
    check.add_argument("logs", nargs="+", help="log files (JSONL, .gz, or - for stdin)")
    check.add_argument("--out", type=Path, required=True, help="folder for drift.json and report.html")
    check.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="reference.json of the model")
    check.add_argument("--window", type=_window, help="only the last N predictions (by time)")
    check.add_argument("--since", type=_time, help="only predictions at or after this time (ISO 8601)")
    check.add_argument("--until", type=_time, help="only predictions before this time (ISO 8601)")
    check.add_argument("--alpha", type=float, default=drift.ALPHA, help="family-wise false-alarm rate")
    check.add_argument("--fail-on-drift", action="store_true", help="exit 1 when drift is found")
    check.set_defaults(run=run_drift)

    reap = commands.add_parser("harvest", help="corrections that check out -> a review folder", epilog=harvest.__doc__)
    reap.add_argument("logs", nargs="+", help="log files (JSONL, .gz, or - for stdin): predictions and feedback")
    reap.add_argument("--review", type=Path, default=REVIEW_DIR, help="the review folder it writes")
    reap.add_argument("--out", type=Path, default=DATASET_DIR, help="the dataset (requests already in it are skipped)")
    reap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="reference.json (for the labels)")
    reap.add_argument("--key-env", default="FEEDBACK_KEY", help="re-check tokens with the keys in this variable")
    reap.set_defaults(run=run_harvest)

    versus = commands.add_parser("compare", help="champion against shadow challenger", epilog=compare.__doc__)
    versus.add_argument("logs", nargs="+", help="log files (JSONL, .gz, or - for stdin): predictions and feedback")
    versus.add_argument("--out", type=Path, required=True, help="folder for compare.json and report.html")
    versus.set_defaults(run=run_compare)

    accept = commands.add_parser("approve", help="the reviewed pictures -> the training dataset")
    accept.add_argument("--review", type=Path, default=REVIEW_DIR, help="the review folder")
    accept.add_argument("--out", type=Path, default=DATASET_DIR, help="the dataset folder")
    accept.set_defaults(run=run_approve)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

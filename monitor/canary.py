"""The canary's gate and smoke test: is the candidate revision as healthy as the one it replaces?

    python -m monitor.canary gate --project P --service S --candidate REV --baseline REV [--window 300]
    python -m monitor.canary smoke URL                  known pictures must get their known answers

Run by cloudbuilds/canary.sh between traffic steps. The gate reads Cloud Monitoring through its Prometheus API (the
same PromQL as the alert policies in monitor/cloud/policies/): per revision, the requests and 5xx answers over the
window, the p95 latency, and the share of answers flagged as none of the ten. Exit codes: 0 pass, 1 fail,
3 too little traffic to judge (the script waits and asks again until its deadline). Standard library only: the
Cloud Build step has python3 and gcloud, nothing else.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

EXIT_PASS, EXIT_FAIL, EXIT_WAIT = 0, 1, 3
PROMETHEUS_API = "https://monitoring.googleapis.com/v1/projects/{project}/location/global/prometheus/api/v1/query"
# A candidate is judged only on this many requests in the window: fewer, and one error is a 1 % swing.
MIN_REQUESTS = 100
MAX_ERROR_RATE = 0.01  # 5xx share the candidate may have at most (the ServeHigh5xxRate alert fires at 5 %)...
MAX_ERROR_RISE = 0.005  # ...and no more than this above the baseline's
MAX_LATENCY_RATIO = 1.25  # p95 latency at most this times the baseline's...
LATENCY_SLACK_MS = 20.0  # ...plus this (a quiet baseline's p95 is noisy)
MAX_OUTLIER_RISE = 0.05  # share of answers flagged as none of the ten, above the baseline's
# Known pictures and their answers (site/examples/: CIFAR-10 test pictures the shipped model answers right).
SMOKE_PICTURES = {"cifar-airplane.png": "airplane", "cifar-cat.png": "cat", "cifar-horse.png": "horse",
                  "cifar-ship.png": "ship"}  # fmt: skip
EXAMPLES = Path(__file__).resolve().parents[1] / "site" / "examples"


@dataclass(frozen=True)
class Window:
    """One revision's traffic over the gate's window."""

    requests: float
    errors: float
    p95_ms: float | None
    outlier_share: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    code: int
    reason: str


def decide(candidate: Window, baseline: Window | None) -> Verdict:
    """Pass, fail or wait for more traffic. Without a baseline (a first deploy) only the absolute limits apply."""
    if candidate.requests < MIN_REQUESTS:
        return Verdict(EXIT_WAIT, f"{candidate.requests:.0f} requests in the window, {MIN_REQUESTS} needed to judge")
    if candidate.error_rate > MAX_ERROR_RATE:
        return Verdict(EXIT_FAIL, f"5xx rate {candidate.error_rate:.2%} > {MAX_ERROR_RATE:.0%}")
    if baseline is not None and baseline.requests:
        if candidate.error_rate > baseline.error_rate + MAX_ERROR_RISE:
            return Verdict(EXIT_FAIL, f"5xx rate {candidate.error_rate:.2%} against {baseline.error_rate:.2%}")
        if candidate.p95_ms is not None and baseline.p95_ms is not None:
            limit = baseline.p95_ms * MAX_LATENCY_RATIO + LATENCY_SLACK_MS
            if candidate.p95_ms > limit:
                return Verdict(EXIT_FAIL, f"p95 latency {candidate.p95_ms:.0f} ms > {limit:.0f} ms")
        shares = candidate.outlier_share, baseline.outlier_share
        if None not in shares and shares[0] > shares[1] + MAX_OUTLIER_RISE:
            return Verdict(EXIT_FAIL, f"outlier share {shares[0]:.1%} against {shares[1]:.1%}")
    p95 = "no" if candidate.p95_ms is None else f"{candidate.p95_ms:.0f} ms"
    return Verdict(EXIT_PASS, f"{candidate.requests:.0f} requests, 5xx {candidate.error_rate:.2%}, p95 {p95}")


def queries(service: str, revision: str, window_s: int) -> dict[str, str]:
    """The PromQL of each figure of a Window (Cloud Run's own metrics, and the service's own outlier counters)."""
    run = f'monitored_resource="cloud_run_revision",service_name="{service}",revision_name="{revision}"'
    span = f"[{window_s}s]"
    return {
        "requests": f"sum(increase(run_googleapis_com:request_count{{{run}}}{span}))",
        "errors": f'sum(increase(run_googleapis_com:request_count{{{run},response_code_class="5xx"}}{span}))',
        "p95_ms": f"histogram_quantile(0.95, sum by (le) (rate(run_googleapis_com:request_latencies_bucket{{{run}}}"
        f"{span})))",
        "outlier_share": f'sum(rate(serve_prediction_outliers_total{{revision_name="{revision}"}}{span})) / '
        f'sum(rate(serve_predictions_total{{revision_name="{revision}"}}{span}))',
    }


def scalar(response: dict) -> float | None:
    """The one value of a Prometheus API instant-query answer; None when the vector is empty or not a number."""
    if response.get("status") != "success":
        raise ValueError(f"the Prometheus API answered {response.get('status')}: {response.get('error')}")
    result = response["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN: no data in the window


def window_from(answers: dict[str, dict]) -> Window:
    """A Window from the Prometheus API's answers to `queries` (name -> answer)."""
    values = {name: scalar(answer) for name, answer in answers.items()}
    return Window(values["requests"] or 0.0, values["errors"] or 0.0, values["p95_ms"], values.get("outlier_share"))


def ask(project: str, query: str, token: str) -> dict:
    url = PROMETHEUS_API.format(project=project) + "?" + urllib.parse.urlencode({"query": query})
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def measure(project: str, service: str, revision: str, window_s: int, token: str) -> Window:
    return window_from({name: ask(project, q, token) for name, q in queries(service, revision, window_s).items()})


def access_token() -> str:
    return subprocess.run(["gcloud", "auth", "print-access-token"], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def classify(url: str, name: str, picture: bytes) -> dict:
    """POST one picture to URL/classify as a browser would (multipart), the JSON answer back."""
    boundary = uuid.uuid4().hex
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n").encode() + picture + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    request = urllib.request.Request(f"{url.rstrip('/')}/classify", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Accept": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def smoke(url: str) -> Verdict:
    wrong = []
    for name, expected in SMOKE_PICTURES.items():
        got = classify(url, name, (EXAMPLES / name).read_bytes()).get("label")
        if got != expected:
            wrong.append(f"{name}: {got} (expected {expected})")
    if wrong:
        return Verdict(EXIT_FAIL, "smoke test failed: " + "; ".join(wrong))
    return Verdict(EXIT_PASS, f"smoke test passed: {len(SMOKE_PICTURES)} known pictures answered right")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.canary", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gate = commands.add_parser("gate", help="judge the candidate revision against the baseline revision")
    gate.add_argument("--project", required=True)
    gate.add_argument("--service", required=True)
    gate.add_argument("--candidate", required=True, help="the candidate's revision name")
    gate.add_argument("--baseline", help="the revision it replaces (none on a first deploy)")
    gate.add_argument("--window", type=int, default=300, help="seconds of traffic judged")
    check = commands.add_parser("smoke", help="known pictures must get their known answers")
    check.add_argument("url", help="the candidate's tagged URL")
    args = parser.parse_args(argv)
    try:
        if args.command == "smoke":
            verdict = smoke(args.url)
        else:
            token = access_token()
            candidate = measure(args.project, args.service, args.candidate, args.window, token)
            baseline = measure(args.project, args.service, args.baseline, args.window, token) if args.baseline else None
            verdict = decide(candidate, baseline)
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as exc:
        print(f"canary: cannot judge: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"canary: {verdict.reason}")
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())

"""cloudbuilds/canary.sh's flow and the gcloud commands it renders, with gcloud and the gate stubbed: traffic in
steps on passing gates, all traffic back to the baseline on a failed smoke test or gate, waiting for traffic until
the deadline, and a first deploy (no baseline) given all traffic after its smoke test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_JSON = {"status": {"traffic": [
    {"revisionName": "cifar-serve-0000001", "percent": 100},
    {"revisionName": "cifar-serve-abc1234", "percent": 0, "tag": "m-v2", "url": "https://m-v2---cifar-serve.run.app"},
]}}  # fmt: skip


@pytest.fixture
def stubs(tmp_path):
    """A gcloud that logs its arguments (and describes the service), a python whose canary module answers from
    a list of exit codes (smoke first, then each gate) and runs anything else for real."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "service.json").write_text(json.dumps(SERVICE_JSON))
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(f"""#!/usr/bin/env bash
echo "gcloud $*" >> {tmp_path}/gcloud.log
[[ $3 == describe ]] && cat {tmp_path}/service.json
exit 0
""")
    python = bin_dir / "python"
    python.write_text(f"""#!/usr/bin/env bash
if [[ $1 == -m ]]; then
  echo "$3 ${{*:4}}" >> {tmp_path}/canary.log
  code=$(head -n 1 {tmp_path}/codes); sed -i 1d {tmp_path}/codes
  exit "$code"
fi
exec {sys.executable} "$@"
""")
    for stub in (gcloud, python):
        stub.chmod(0o755)

    def run(codes: list[int], baseline: str = "cifar-serve-0000001", **env: str) -> subprocess.CompletedProcess:
        (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
        environment = os.environ | {
            "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(python), "PROJECT_ID": "proj",
            "REGION": "europe-west1", "SERVICE": "cifar-serve", "TAG": "m-v2", "CANDIDATE": "cifar-serve-abc1234",
            "BASELINE": baseline, "WINDOW_S": "0", **env,
        }  # fmt: skip
        return subprocess.run(["bash", str(ROOT / "cloudbuilds" / "canary.sh")], env=environment,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def log(name: str) -> list[str]:
        path = tmp_path / name
        return path.read_text().splitlines() if path.exists() else []

    return run, log


WHERE = "--project=proj --region=europe-west1"


def traffic(to: str) -> str:
    return f"gcloud run services update-traffic cifar-serve {WHERE} {to} --quiet"


def test_passing_gates_move_traffic_in_steps_then_follow_the_latest_revision(stubs):
    run, log = stubs
    done = run([0, 0, 0, 0])
    assert done.returncode == 0, done.stderr
    assert log("canary.log")[0] == "smoke https://m-v2---cifar-serve.run.app"
    assert log("canary.log")[1] == ("gate --project=proj --service=cifar-serve --candidate=cifar-serve-abc1234 "
                                    "--baseline=cifar-serve-0000001 --window=0")  # fmt: skip
    assert log("gcloud.log")[1:] == [traffic("--to-tags=m-v2=10"), traffic("--to-tags=m-v2=50"),
                                     traffic("--to-tags=m-v2=100"), traffic("--to-latest")]  # fmt: skip
    assert "+ gcloud run services update-traffic" in done.stdout  # every command printed


def test_a_failed_gate_sends_all_traffic_back_and_fails_the_build(stubs):
    run, log = stubs
    done = run([0, 0, 1])
    assert done.returncode == 1
    assert log("gcloud.log")[1:] == [traffic("--to-tags=m-v2=10"), traffic("--to-tags=m-v2=50"),
                                     traffic("--to-revisions=cifar-serve-0000001=100")]  # fmt: skip
    assert "gate failed at 50 %" in done.stderr


def test_a_failed_smoke_test_never_gives_the_candidate_traffic(stubs):
    run, log = stubs
    done = run([1])
    assert done.returncode == 1
    assert log("gcloud.log")[1:] == [traffic("--to-revisions=cifar-serve-0000001=100")]


def test_too_little_traffic_waits_until_the_deadline_then_rolls_back(stubs):
    run, log = stubs
    waited = run([0, 3, 3, 0, 0, 0], DEADLINE_S="5", WINDOW_S="1")  # two quiet windows, then enough traffic
    assert waited.returncode == 0, waited.stderr
    never = run([0, 3, 3, 3, 3, 3, 3, 3], DEADLINE_S="2", WINDOW_S="1")
    assert never.returncode == 1
    assert "too little traffic to judge at 10 %" in never.stderr
    assert log("gcloud.log")[-1] == traffic("--to-revisions=cifar-serve-0000001=100")


def test_a_first_deploy_takes_all_traffic_after_its_smoke_test(stubs):
    run, log = stubs
    done = run([0], baseline="")
    assert done.returncode == 0, done.stderr
    assert log("gcloud.log")[1:] == [traffic("--to-latest")]

"""The workflows and devcontainers do what this project relies on, beyond GitHub's schema and actionlint (both in
`make lint`): least privilege, pinned actions, CI runs what `make test` runs and pushes nothing, only main is
deployed, with Workload Identity Federation; each devcontainer installs the right torch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))}
PINNED = re.compile(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})")
# actionlint flags github.event.* and github.head_ref in run:; inputs of a manual run are as untrusted.
UNTRUSTED = re.compile(r"\$\{\{[^}]*\b(github\.event\.|github\.head_ref|inputs\.)[^}]*\}\}")


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps") or []]


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_least_privilege_pinned_actions_no_untrusted_input_in_scripts(name):
    workflow = WORKFLOWS[name]
    permissions = workflow["permissions"]
    assert isinstance(permissions, dict)
    assert set(permissions.values()) <= {"read", "none"}, "write access only per job, where needed"
    assert all(job.get("permissions") != "write-all" for job in workflow["jobs"].values())
    for step in steps(workflow):
        uses = step.get("uses", "./")
        assert uses.startswith(("./", "docker://")) or PINNED.fullmatch(uses), f"{uses} is not pinned"
        assert not UNTRUSTED.search(str(step.get("run", ""))), "pass it through env:"


def test_ci_runs_what_make_test_runs_and_builds_both_images_without_pushing():
    ci = WORKFLOWS["ci.yml"]
    assert {"push", "pull_request"} <= set(triggers(ci))
    runs = "\n".join(str(s.get("run", "")) for s in steps(ci))
    inputs = "\n".join(json.dumps(s.get("with") or {}) for s in steps(ci))
    # The Makefile's own targets, not the steps spelled out again; only the real-data tests left out, by marker.
    for needed in ("make lint", "make pytest", "make test-serve-venv"):
        assert needed in runs, needed
    assert re.findall(r"PYTEST_ARGS='([^']*)'", runs) == ['-m "not realdata"']
    assert "ruff" not in runs, "call the make target"
    assert "python -m pytest" not in runs, "call the make target"
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\blint\b.*\bpytest\b.*\btest-serve-venv\b", make, re.M)
    # The test job installs what `make setup` does, but the data (left out by marker above).
    setup = re.search(r"^setup: ([^#]*)##", make, re.M)
    assert setup, "the Makefile's setup target"
    installs = re.search(r"^make (venv (?:[a-z-]+ ?)+)$", runs, re.M)
    assert installs, "one `make ...` step installs the test job's tools"
    assert set(installs[1].split()) == set(setup[1].split()) - {"data"}
    for dockerfile in ("docker/serve.Dockerfile", "docker/site.Dockerfile"):
        assert "compose up --build" in runs or dockerfile in runs + inputs, dockerfile
    assert '"push": true' not in inputs, "deploy.yml and Cloud Build push, CI does not"
    assert "docker push" not in runs


def test_deploy_takes_main_only_and_authenticates_without_keys():
    deploy = WORKFLOWS["deploy.yml"]
    on = triggers(deploy)
    assert (on.get("workflow_run") or on.get("push"))["branches"] == ["main"]
    auth = [s.get("with") or {} for s in steps(deploy) if s.get("uses", "").startswith("google-github-actions/auth@")]
    assert auth
    assert all("workload_identity_provider" in w and "credentials_json" not in w for w in auth)
    runs = "\n".join(str(s.get("run", "")) for s in steps(deploy))
    config = re.search(r"gcloud builds submit[\s\S]*?--config[= ](\S+)", runs)
    assert config
    assert (ROOT / config[1]).is_file()
    assert "SHORT_SHA=" in runs, "a manual build has no SHORT_SHA of its own"


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_devcontainer_sets_up_in_one_step_with_the_right_torch(variant):
    path = ROOT / ".devcontainer" / ("devcontainer.json" if variant == "cpu" else "gpu/devcontainer.json")
    config = json.loads(path.read_text())
    assert config.get("image") or config.get("build")
    assert re.search(r"\bmake\b[^&]*\bvenv\b", config["postCreateCommand"])
    if variant == "cpu":
        assert "whl/cpu" in config["containerEnv"]["PIP_EXTRA_INDEX_URL"], "CPU torch, not the CUDA build"
    else:
        assert any(arg.startswith("--gpus") for arg in config["runArgs"])
        assert "whl/cpu" not in json.dumps(config)

"""cloudbuilds/cloudbuild.yaml does what the deploy relies on and Cloud Build's schema (check-jsonschema in
`make lint`) cannot know: each substitution declared and used, both images tagged with the commit and pushed
before they are deployed, serve deployed before the site, and the two services wired to each other's URL."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "cloudbuilds" / "cloudbuild.yaml").read_text())
SUBS = {str(k): str(v) for k, v in CONFIG["substitutions"].items()}
# Cloud Build's own (https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values).
BUILTINS = {
    "PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA", "REVISION_ID", "SHORT_SHA",
    "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME", "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT", "_HEAD_BRANCH", "_BASE_BRANCH", "_HEAD_REPO_URL", "_PR_NUMBER",
}  # fmt: skip
# $$ is a literal $; otherwise $NAME or ${NAME} (dynamic substitutions also allow ${NAME...bash operations}).
SUBST = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")
REGISTRY = "$_REGION-docker.pkg.dev/$PROJECT_ID/$_REPOSITORY/"
RUN_FLAGS = ("--region", "--memory", "--cpu", "--concurrency", "--min-instances", "--max-instances")


def references(text: str) -> set[str]:
    return {m[1] or m[2] for m in SUBST.finditer(text) if m[0] != "$$"}


def expand(text: str) -> str:
    """User substitutions expanded one level, as Cloud Build does; every reference spelt $NAME."""
    spell = lambda m: m[0] if m[0] == "$$" else "$" + (m[1] or m[2])  # noqa: E731
    return SUBST.sub(lambda m: SUBST.sub(spell, SUBS[m[1] or m[2]]) if (m[1] or m[2]) in SUBS else spell(m), text)


def repo_of(image: str) -> str:
    head, _, last = expand(image).rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}"


def flag(command: list[str], name: str) -> list[str]:
    return [t.split("=", 1)[1] for t in command if t.startswith(name + "=")]


@dataclass
class Step:
    index: int
    id: str
    script: str  # what the step runs, continuation lines joined
    commands: list[list[str]]  # each line's tokens


def parse_step(index: int, raw: dict) -> Step:
    args = [str(a) for a in raw.get("args") or []]
    if raw.get("entrypoint") == "bash":
        script = re.sub(r"\\\n\s*", " ", args[args.index("-c") + 1])
        lines = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return Step(index, raw["id"], script, [shlex.split(line, comments=True) for line in lines])
    command = ["docker" if raw["name"].endswith("/docker") else "gcloud", *args]
    return Step(index, raw["id"], " ".join(command), [command])


STEPS = [parse_step(i, raw) for i, raw in enumerate(CONFIG["steps"])]
IDS = [s.id for s in STEPS]
# Cloud Build's order: no waitFor = after every earlier step, "-" = at the start, otherwise the steps named.
PARENTS = {
    i: set(range(i)) if raw.get("waitFor") is None else {IDS.index(w) for w in raw["waitFor"] if w in IDS[:i]}
    for i, raw in enumerate(CONFIG["steps"])
}


def before(a: Step, b: Step) -> bool:
    """a has finished whenever b starts."""
    seen, todo = set(), list(PARENTS[b.index])
    while todo:
        if (j := todo.pop()) not in seen:
            seen.add(j)
            todo.extend(PARENTS[j])
    return a.index in seen


def commands(prefix: list[str]):
    return [(s, c) for s in STEPS for c in s.commands if c[: len(prefix)] == prefix]


def built_repo(name: str) -> str:
    [(_, build)] = [(s, c) for s, c in commands(["docker", "build"]) if f"--file=docker/{name}.Dockerfile" in c]
    tags = flag(build, "--tag")
    assert any(t.endswith(":$SHORT_SHA") for t in tags), f"{name} is not tagged with the commit: {tags}"
    [repo] = {repo_of(t) for t in tags}
    return repo


def deploy_of(name: str) -> tuple[Step, list[str]]:
    repo = built_repo(name)
    [found] = [(s, c) for s, c in commands(["gcloud", "run", "deploy"]) if repo_of(flag(c, "--image")[0]) == repo]
    return found


def test_substitutions_are_declared_and_used():
    assert references("$$x ${_A} $B ${C:-d}") == {"_A", "B", "C"}  # the reader itself
    used = references(json.dumps({k: v for k, v in CONFIG.items() if k != "substitutions"}))
    in_subs = set().union(*map(references, SUBS.values()))
    assert not (used | in_subs) - BUILTINS - SUBS.keys(), "used but not declared"
    assert not SUBS.keys() - used - in_subs, "declared but never used (Cloud Build rejects it)"
    assert all(re.fullmatch(r"_[A-Z0-9_]+", name) for name in SUBS)
    assert not in_subs or CONFIG["options"]["dynamicSubstitutions"] is True, "substitutions refer to each other"
    for name, value in SUBS.items():
        chained = {ref for ref in references(value) if references(SUBS.get(ref, "")) - BUILTINS}
        assert not chained, f"{name} -> {chained} -> ...: refer to plain substitutions only"


def test_steps_wait_only_for_earlier_steps():
    assert len(IDS) == len(set(IDS))
    for i, raw in enumerate(CONFIG["steps"]):
        assert set(raw.get("waitFor") or []) - {"-"} <= set(IDS[:i]), raw["id"]


@pytest.mark.parametrize("name", ["serve", "site"])
def test_image_is_built_for_artifact_registry_and_recorded_with_the_commit(name):
    repo = built_repo(name)
    assert repo.startswith(REGISTRY), repo
    assert f"{repo}:$SHORT_SHA" in {expand(i) for i in CONFIG["images"]}
    assert {repo_of(i) for i in CONFIG["images"]} <= {repo_of(i) for i in CONFIG["images"] if i.endswith("SHA")}


@pytest.mark.parametrize("name", ["serve", "site"])
def test_service_deploys_the_commit_after_its_push_with_its_resources(name):
    step, deploy = deploy_of(name)
    assert expand(flag(deploy, "--image")[0]) == f"{built_repo(name)}:$SHORT_SHA"
    for required in RUN_FLAGS:
        assert flag(deploy, required), f"gcloud run deploy needs {required}"
    pushes = [s for s, c in commands(["docker", "push"]) if built_repo(name) in map(repo_of, c[2:])]
    assert pushes
    assert before(pushes[0], step), "`images:` are pushed only after the last step: push before the deploy"


def test_every_gcloud_run_call_names_the_region():
    for step in STEPS:
        for call in re.findall(r"gcloud run [^\n]*", step.script):
            assert re.search(r"--region[= ]\$\{?_REGION\b", call), f"{step.id}: {call[:60]}"


def test_serve_then_site_each_told_the_others_url():
    (serve_step, serve), (site_step, site) = deploy_of("serve"), deploy_of("site")
    serve_name, site_name = serve[3], site[3]
    assert serve_name != site_name
    assert before(serve_step, site_step)
    assert any("CORS_ORIGINS=" in v for v in flag(serve, "--set-env-vars")), "serve allows the site's current URL"
    assert any("API_URL=" in v for v in flag(site, "--set-env-vars"))

    def reads_url(step: Step, service: str) -> list[int]:
        found = re.finditer(r"gcloud run services describe (\S+)[^\n]*status\.url", step.script)
        return [m.start() for m in found if m[1] == service]

    # serve's URL is read after serve's deploy (later in that step, or in a step between) and before the site's
    deployed_at = serve_step.script.index(f"gcloud run deploy {serve_name}")
    assert any(at > deployed_at for at in reads_url(serve_step, serve_name)) or any(
        reads_url(s, serve_name) and before(serve_step, s) and before(s, site_step) for s in STEPS
    )
    # once the site is deployed, its URL is read and allowed by serve
    assert any(
        before(site_step, s)
        and reads_url(s, site_name)
        and any(
            c[:5] == ["gcloud", "run", "services", "update", serve_name]
            and any("CORS_ORIGINS=" in v for v in flag(c, "--update-env-vars"))
            for c in s.commands
        )
        for s in STEPS
    )

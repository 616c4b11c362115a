"""Check the deployment files for the facts the product relies on, which no generic linter knows.

hadolint and actionlint check that Dockerfiles and workflows are well formed; this checks that they, compose.yaml
and the Cloud Build config say what this project needs: the serve image is torch-free, pinned and non-root on
Cloud Run's port; both images are tagged with the commit, pushed before they are deployed, and deployed with their
resources; the two services are wired to each other's origin the same way locally and on Cloud Run; every
substitution used is declared and every declared one used; actions are pinned and workflows least-privileged.

    python scripts/check_deploy_config.py [ROOT]     # exit 1 and one line per problem
    python scripts/check_deploy_config.py --self-test  # prove each rule fails on a broken copy

Needs PyYAML only (scripts/setup-linters.sh puts it in .venv-tools).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SERVE_DOCKERFILE = "docker/serve.Dockerfile"
SITE_DOCKERFILE = "docker/site.Dockerfile"
TRAIN_DOCKERFILE = "docker/train.Dockerfile"
CLOUDBUILD = "cloudbuilds/cloudbuild.yaml"
# Packages that must never reach the serving image (DESIGN.md: the service is torch-free).
TRAINING_ONLY = {"torch", "torchvision", "lightning", "pytorch-lightning", "timm", "torchmetrics", "hydra-core"}

# Cloud Build's own substitutions (https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values).
CLOUDBUILD_BUILTINS = {
    "PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA", "REVISION_ID",
    "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME", "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT",
    "_HEAD_BRANCH", "_BASE_BRANCH", "_HEAD_REPO_URL", "_PR_NUMBER",
}  # fmt: skip
# $$ is a literal $; otherwise $NAME or ${NAME} (dynamic substitutions also allow ${NAME...bash ops}).
SUBST_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")
SHA_TAG_RE = re.compile(r":\$(\{SHORT_SHA\}|SHORT_SHA\b)")
RUN_FLAGS = ("--region", "--memory", "--cpu", "--concurrency", "--min-instances", "--max-instances")

# The Compose specification's keys (compose-spec.json), to catch a misspelt key that compose would reject.
COMPOSE_TOP_KEYS = {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models"}
COMPOSE_SERVICE_KEYS = {
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
}


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    checks: int = 0

    def check(self, ok: object, where: str, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.errors.append(f"{where}: {message}")
        return bool(ok)


def load_yaml(path: Path, report: Report) -> dict | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        report.check(False, str(path), f"cannot read: {exc}")
        return None
    report.check(isinstance(data, dict), str(path), "is not a YAML mapping")
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------- Dockerfiles


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions; continuation lines joined, comments dropped (as Docker does)."""
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment inside a continuation
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((instruction, rest.strip()))
    return stages


def image_tag(ref: str) -> str | None:
    if "@sha256:" in ref:
        return ref.split("@", 1)[1]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def check_dockerfiles(root: Path, report: Report) -> None:
    paths = sorted((root / "docker").glob("*.Dockerfile"))
    report.check(paths, "docker/", "no *.Dockerfile found")
    python_tags: list[tuple[str, str]] = []
    for path in paths:
        where = str(path.relative_to(root))
        stages = parse_dockerfile(path.read_text())
        if not report.check(stages, where, "has no FROM"):
            continue
        names = {s.name for s in stages if s.name}
        for stage in stages:
            if stage.base in names:
                continue
            tag = image_tag(stage.base)
            report.check(
                tag and tag != "latest" and re.search(r"\d", tag),
                where,
                f"base image {stage.base} is not pinned to a version (tag with a version number or a digest)",
            )
            if stage.base.startswith("python:") and tag:
                python_tags.append((where, tag))
        final = stages[-1]
        users = final.args("USER")
        report.check(
            users and users[-1].split(":")[0] not in {"root", "0"},
            where,
            "the final stage must switch to a non-root USER",
        )
        if path.name in {Path(SERVE_DOCKERFILE).name, Path(SITE_DOCKERFILE).name}:
            report.check(final.args("HEALTHCHECK"), where, "the final stage needs a HEALTHCHECK")
    for where, tag in python_tags:
        report.check(
            re.fullmatch(r"3\.11\.\d+-slim-[a-z]+", tag),
            where,
            f"python base tag {tag!r} must be a pinned 3.11 slim release (e.g. 3.11.14-slim-bookworm)",
        )
    report.check(
        len({tag for _, tag in python_tags}) <= 1,
        "docker/",
        f"the Dockerfiles use different Python bases: {sorted(set(python_tags))} (one pin for all)",
    )
    check_serve_dockerfile(root, report)
    check_train_dockerfile(root, report)
    check_serve_requirements(root, report)


def check_serve_dockerfile(root: Path, report: Report) -> None:
    path = root / SERVE_DOCKERFILE
    if not report.check(path.is_file(), SERVE_DOCKERFILE, "missing"):
        return
    text = path.read_text()
    stages = parse_dockerfile(text)
    final = stages[-1]
    where = SERVE_DOCKERFILE
    report.check(len(stages) >= 2, where, "must be multi-stage (build the venv in a builder stage)")
    installs = " ".join(a for stage in stages for i, a in stage.instructions if i in {"RUN", "COPY", "ADD"})
    report.check(
        re.search(r"-r\s+\S*requirements-serve\.txt", installs), where, "must install -r requirements-serve.txt"
    )
    report.check(
        not re.search(r"requirements-(train|dev)\.txt|\btorch\b|\.\[", installs),
        where,
        "must install requirements-serve.txt only (no training requirements, extras or torch)",
    )
    final_runs = " ".join(final.args("RUN"))
    report.check(
        not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", final_runs),
        where,
        "installs a compiler in the final stage",
    )
    envs = " ".join(final.args("ENV"))
    report.check(re.search(r"\bPORT=8080\b", envs), where, "the final stage must set ENV PORT=8080 (Cloud Run)")
    report.check(re.search(r"\bHOST=0\.0\.0\.0\b", envs), where, "the final stage must set ENV HOST=0.0.0.0")
    copies = final.args("COPY")
    report.check(any("--from=" in c for c in copies), where, "the final stage must copy the venv from the builder")
    for src in ("serve/", "shipped/"):
        report.check(any(src in c.split() for c in copies), where, f"the final stage must COPY {src}")
    report.check(
        final.args("CMD") and re.sub(r"\s", "", final.args("CMD")[-1]) == '["python","-m","serve"]',
        where,
        'CMD must be ["python", "-m", "serve"]',
    )
    health = " ".join(final.args("HEALTHCHECK"))
    report.check("/healthz" in health, where, "HEALTHCHECK must probe /healthz")


def check_train_dockerfile(root: Path, report: Report) -> None:
    path = root / TRAIN_DOCKERFILE
    if not report.check(path.is_file(), TRAIN_DOCKERFILE, "missing"):
        return
    text = path.read_text()
    # What runs, comments aside: the image's instructions and its entry-point script.
    instructions = [(i, a) for stage in parse_dockerfile(text) for i, a in stage.instructions]
    report.check(
        any(i == "RUN" and re.search(r"pip install.*\s-e\s+['\"]?\.\[train\]", a) for i, a in instructions),
        TRAIN_DOCKERFILE,
        "must pip install -e '.[train]'",
    )
    report.check(
        any(i == "ARG" and a.startswith("TORCH_INDEX=") for i, a in instructions),
        TRAIN_DOCKERFILE,
        "needs ARG TORCH_INDEX=... (selects CPU or CUDA torch)",
    )
    runs = " ".join(a for _, a in instructions)
    entry = root / "docker" / "train-entrypoint.sh"
    if entry.is_file():
        runs += " " + " ".join(line for line in entry.read_text().splitlines() if not line.lstrip().startswith("#"))
    runs = re.sub(r'",\s*"', " ", runs)  # exec form ["dvc", "repro"] -> dvc repro
    for command in ("dvc pull", "dvc repro"):
        report.check(command in runs, TRAIN_DOCKERFILE, f"must run {command} (in CMD/ENTRYPOINT or its entry point)")


def check_serve_requirements(root: Path, report: Report) -> None:
    path = root / "requirements-serve.txt"
    if not report.check(path.is_file(), "requirements-serve.txt", "missing"):
        return
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"requirements-serve.txt:{n}"
        name = re.split(r"[\[=<>!~ ;]", line, maxsplit=1)[0].lower().replace("_", "-")
        report.check(name not in TRAINING_ONLY, where, f"{name} must not be a serving dependency")
        report.check(re.match(r"^[A-Za-z0-9._\-\[\],]+==[^=*]+$", line), where, f"{line!r} is not pinned with ==")


# --------------------------------------------------------------------------------------------------- compose


def published(service: dict) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) for each short-syntax or long-syntax port."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((port.get("host_ip"), int(port.get("published", 0)), int(port["target"])))
            continue
        parts = str(port).split(":")
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), int(parts[2].split("/")[0])))
        elif len(parts) == 2:
            out.append((None, int(parts[0]), int(parts[1].split("/")[0])))
    return out


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def check_compose(root: Path, report: Report) -> None:
    where = "compose.yaml"
    data = load_yaml(root / where, report) if (root / where).is_file() else None
    if not report.check(data, where, "missing or empty"):
        return
    unknown = {k for k in data if not str(k).startswith("x-")} - COMPOSE_TOP_KEYS
    report.check(not unknown, where, f"unknown top-level keys {sorted(unknown)}")
    services = data.get("services") or {}
    ports: dict[str, int] = {}
    for name, dockerfile in (("serve", SERVE_DOCKERFILE), ("site", SITE_DOCKERFILE)):
        svc = services.get(name)
        if not report.check(isinstance(svc, dict), where, f"service {name!r} missing"):
            continue
        w = f"{where}: services.{name}"
        unknown = {k for k in svc if not str(k).startswith("x-")} - COMPOSE_SERVICE_KEYS
        report.check(not unknown, w, f"unknown keys {sorted(unknown)}")
        build = svc.get("build") or {}
        report.check(
            isinstance(build, dict) and build.get("dockerfile") == dockerfile and build.get("context") == ".",
            w,
            f"must build {dockerfile} with context '.'",
        )
        report.check((root / dockerfile).is_file(), w, f"{dockerfile} does not exist")
        env = environment(svc)
        maps = published(svc)
        if report.check(len(maps) == 1, w, "must publish exactly one port"):
            host_ip, host_port, container_port = maps[0]
            ports[name] = host_port
            report.check(
                env.get("PORT") == str(container_port),
                w,
                f"PORT={env.get('PORT')} but the container port is {container_port}",
            )
            report.check(host_ip == "127.0.0.1", w, "publish on 127.0.0.1 only (a dev stack, not a LAN service)")
        test = (svc.get("healthcheck") or {}).get("test")
        test_text = " ".join(test) if isinstance(test, list) else str(test or "")
        report.check(test_text, w, "needs a healthcheck")
        if env.get("PORT"):
            report.check(
                f":{env['PORT']}/" in test_text, w, f"healthcheck must probe the container's PORT {env['PORT']}"
            )
    if {"serve", "site"} <= ports.keys():
        serve_env, site_env = environment(services["serve"]), environment(services["site"])
        site_origin = f"http://localhost:{ports['site']}"
        serve_url = f"http://localhost:{ports['serve']}"
        origins = [o.strip().rstrip("/") for o in serve_env.get("CORS_ORIGINS", "").split(",")]
        report.check(site_origin in origins, where, f"serve's CORS_ORIGINS must allow the site's origin {site_origin}")
        report.check(
            site_env.get("API_URL", "").rstrip("/") == serve_url,
            where,
            f"site's API_URL must be serve's published URL {serve_url}",
        )


# ----------------------------------------------------------------------------------------------- Cloud Build


@dataclass
class Step:
    index: int
    id: str
    raw: dict
    script: str  # what the step runs, continuation lines joined
    commands: list[list[str]]  # the commands that start a line of it, as tokens


def step_script(step: dict) -> tuple[str, list[list[str]]]:
    """A step's script (a bash -c script with its continuation lines joined) and its line-leading commands."""
    args = [str(a) for a in step.get("args") or []]
    entry = step.get("entrypoint")
    name = str(step.get("name", ""))
    if entry in {"bash", "sh"} or "script" in step:
        script = str(step.get("script") or (args[args.index("-c") + 1] if "-c" in args else ""))
        script = re.sub(r"\\\n\s*", " ", script)
        commands = []
        for line in script.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                commands.append(shlex.split(line, comments=True))
            except ValueError:
                commands.append(line.split())
        return script, commands
    if entry:
        cmd = [str(entry), *args]
    elif name.endswith("/docker"):
        cmd = ["docker", *args]
    elif "cloud-sdk" in name or name.endswith("/gcloud"):
        cmd = ["gcloud", *args]
    else:
        cmd = args
    return " ".join(cmd), [cmd]


def flag(tokens: list[str], name: str) -> list[str]:
    values = []
    for i, tok in enumerate(tokens):
        if tok == name and i + 1 < len(tokens):
            values.append(tokens[i + 1])
        elif tok.startswith(name + "="):
            values.append(tok.split("=", 1)[1])
    return values


def strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def normalise(text: str) -> str:
    """${NAME} -> $NAME, $$ -> a placeholder, so references compare equal however they are spelt."""
    return SUBST_RE.sub(lambda m: "\0" if m.group(0) == "$$" else "$" + (m.group(1) or m.group(2)), text)


def expand(text: str, subs: dict[str, str]) -> str:
    """Expand user substitutions (one level, as Cloud Build does); built-ins stay as $NAME."""
    text = normalise(text)
    return re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: normalise(subs.get(m.group(1), m.group(0))), text)


def references(text: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in SUBST_RE.finditer(text) if m.group(0) != "$$"}


def repo_of(ref: str) -> str:
    """The image repository of a reference, without its tag."""
    head, _, last = ref.rpartition("/")
    name = last.split(":", 1)[0]
    return f"{head}/{name}" if head else name


def check_cloudbuild(root: Path, report: Report) -> None:
    paths = sorted((root / "cloudbuilds").glob("*.yaml")) + sorted((root / "cloudbuilds").glob("*.yml"))
    if report.check(paths, "cloudbuilds/", "no Cloud Build config found"):
        for path in paths:
            check_cloudbuild_file(root, path, report)


def check_cloudbuild_file(root: Path, path: Path, report: Report) -> None:
    where = str(path.relative_to(root))
    data = load_yaml(path, report)
    if not data:
        return
    subs = {str(k): str(v) for k, v in (data.get("substitutions") or {}).items()}
    options = data.get("options") or {}

    # -- substitutions: every one used is declared, every declared one is used (Cloud Build rejects both)
    body = [t for t in strings({k: v for k, v in data.items() if k != "substitutions"})]
    used = set().union(*(references(t) for t in body))
    used_in_subs = set().union(*(references(v) for v in subs.values()))
    for name in sorted(used - CLOUDBUILD_BUILTINS - subs.keys()):
        report.check(False, where, f"${name} is used but not declared in substitutions (nor a built-in)")
    for name in sorted(used_in_subs - CLOUDBUILD_BUILTINS - subs.keys()):
        report.check(False, where, f"${name} is used in a substitution but not declared")
    for name in sorted(subs.keys() - used - used_in_subs):
        report.check(False, where, f"substitution {name} is declared but never used (Cloud Build rejects it)")
    for name, value in subs.items():
        report.check(re.fullmatch(r"_[A-Z0-9_]+", name), where, f"user substitution {name} must match _[A-Z0-9_]+")
        report.check(
            not references(value) or options.get("dynamicSubstitutions") is True,
            where,
            f"{name} refers to other substitutions: options.dynamicSubstitutions must be true",
        )
        for ref in references(value) - CLOUDBUILD_BUILTINS:
            report.check(
                not (references(subs.get(ref, "")) - CLOUDBUILD_BUILTINS),
                where,
                f"{name} -> {ref} -> ... chains substitutions; refer to plain ones only",
            )

    # -- steps and the order they run in (waitFor; none = after all previous steps; "-" = at the start)
    steps = [
        Step(i, str(raw.get("id", f"#{i}")), raw, *step_script(raw)) for i, raw in enumerate(data.get("steps") or [])
    ]
    if not report.check(steps, where, "has no steps"):
        return
    ids = [s.id for s in steps]
    report.check(len(ids) == len(set(ids)), where, f"duplicate step ids in {ids}")
    parents: dict[int, set[int]] = {}
    for step in steps:
        wait = step.raw.get("waitFor")
        parents[step.index] = set(range(step.index)) if wait is None else set()
        for w in wait or []:
            if w != "-" and report.check(
                w in ids[: step.index], where, f"step {step.id} waits for an unknown or later step {w!r}"
            ):
                parents[step.index].add(ids.index(w))

    def before(a: int, b: int) -> bool:
        """Step a has finished whenever step b starts."""
        seen, todo = set(), list(parents[b])
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                todo.extend(parents[j])
        return a in seen

    registry = "$_REGION-docker.pkg.dev/$PROJECT_ID/$_REPOSITORY/"

    # -- builds: which Dockerfile -> which Artifact Registry repository, tagged with the commit; pushes
    built: dict[str, str] = {}
    pushed: dict[str, int] = {}
    for step in steps:
        w = f"{where}: step {step.id}"
        for cmd in step.commands:
            if cmd[:2] == ["docker", "build"]:
                files = flag(cmd, "--file") + flag(cmd, "-f")
                tags = flag(cmd, "--tag") + flag(cmd, "-t")
                if not report.check(files, w, "docker build without --file"):
                    continue
                report.check((root / files[0]).is_file(), w, f"{files[0]} does not exist")
                report.check(
                    any(SHA_TAG_RE.search(t) for t in tags), w, f"{files[0]} is not tagged with $SHORT_SHA: {tags}"
                )
                repos = {repo_of(expand(t, subs)) for t in tags}
                report.check(len(repos) == 1, w, f"tags name several repositories: {sorted(repos)}")
                repo = repos.pop() if repos else ""
                report.check(repo.startswith(registry), w, f"image {repo} is not in Artifact Registry {registry}...")
                built[files[0]] = repo
            elif cmd[:2] == ["docker", "push"]:
                for arg in cmd[2:]:
                    if not arg.startswith("-"):
                        pushed[repo_of(expand(arg, subs))] = step.index
    for dockerfile in (SERVE_DOCKERFILE, SITE_DOCKERFILE):
        report.check(dockerfile in built, where, f"no step builds {dockerfile}")
    # `latest` may be listed as well, never alone: every image is recorded with its commit tag.
    images = [str(i) for i in data.get("images") or []]
    listed = {repo_of(expand(i, subs)) for i in images if SHA_TAG_RE.search(i)}
    for image in images:
        report.check(repo_of(expand(image, subs)) in listed, where, f"images: {image} has no $SHORT_SHA tag beside it")
    for repo in built.values():
        report.check(repo in listed, where, f"images: must list {repo}:$SHORT_SHA (the build's recorded result)")

    # -- deploys
    deploys: dict[str, tuple[Step, list[str]]] = {}  # dockerfile -> (step, the gcloud run deploy command)
    service_of: dict[str, str] = {}
    for step in steps:
        w = f"{where}: step {step.id}"
        for call in re.finditer(r"gcloud run [^\n]*", step.script):
            report.check(
                re.search(r"--region[= ]\$\{?_REGION\b", call.group(0)),
                w,
                f"`{call.group(0)[:45]}...` must pass --region=${{_REGION}}",
            )
        for cmd in step.commands:
            if cmd[:3] != ["gcloud", "run", "deploy"]:
                continue
            image = expand((flag(cmd, "--image") or [""])[0], subs)
            repo = repo_of(image)
            dockerfile = next((d for d, r in built.items() if r == repo), None)
            if not report.check(dockerfile, w, f"deploys {image or 'no --image'}, which no step builds"):
                continue
            deploys[dockerfile] = (step, cmd)
            service_of[dockerfile] = normalise(cmd[3]) if len(cmd) > 3 else ""
            report.check(SHA_TAG_RE.search(image), w, f"must deploy the $SHORT_SHA tag, not {image}")
            for name in RUN_FLAGS:
                report.check(flag(cmd, name), w, f"gcloud run deploy needs {name}")
            report.check(
                flag(cmd, "--set-env-vars") or flag(cmd, "--update-env-vars"), w, "sets no environment variables"
            )
            push = pushed.get(repo)
            report.check(
                push is not None and before(push, step.index),
                w,
                f"{repo} must be pushed by an earlier step it waits for (`images:` are pushed only after all steps)",
            )
    serve, site = deploys.get(SERVE_DOCKERFILE), deploys.get(SITE_DOCKERFILE)
    report.check(serve, where, "serve is not deployed")
    report.check(site, where, "site is not deployed")
    if not (serve and site):
        return
    serve_svc, site_svc = service_of[SERVE_DOCKERFILE], service_of[SITE_DOCKERFILE]
    report.check(serve_svc != site_svc, where, "serve and site are deployed as the same service")
    report.check(before(serve[0].index, site[0].index), where, "serve must be deployed before the site")

    def url_reads(step: Step, service: str) -> list[int]:
        """Offsets in the step's script where `gcloud run services describe SERVICE ... status.url` runs."""
        return [
            m.start()
            for m in re.finditer(r"gcloud run services describe (\S+)[^\n]*status\.url", step.script)
            if normalise(m.group(1)) == service
        ]

    def deploy_at(step: Step, service: str) -> int:
        m = re.search(r"gcloud run deploy (\S+)", step.script)
        return m.start() if m and normalise(m.group(1)) == service else -1

    # The site is given serve's URL as API_URL, read after serve's deploy: later in the same step or in a step
    # between the two deploys.
    site_env = " ".join(flag(site[1], "--set-env-vars") + flag(site[1], "--update-env-vars"))
    report.check("API_URL=" in site_env, where, "the site's deploy must set API_URL")
    reads_serve_url = [
        s
        for s in steps
        if (s.index == site[0].index or before(s.index, site[0].index))
        and (
            any(o > deploy_at(s, serve_svc) for o in url_reads(s, serve_svc))
            if s.index == serve[0].index
            else url_reads(s, serve_svc) and before(serve[0].index, s.index)
        )
    ]
    report.check(
        reads_serve_url,
        where,
        f"serve's URL (`gcloud run services describe {serve_svc} --format='value(status.url)'`) must be read "
        "after serve's deploy and before the site's",
    )
    # serve allows the site's origin: CORS_ORIGINS updated from the site's URL once the site is deployed.
    cors_updates = [
        s
        for s in steps
        if before(site[0].index, s.index)
        and url_reads(s, site_svc)
        and any(
            cmd[:4] == ["gcloud", "run", "services", "update"]
            and len(cmd) > 4
            and normalise(cmd[4]) == serve_svc
            and "CORS_ORIGINS=" in " ".join(flag(cmd, "--update-env-vars") + flag(cmd, "--set-env-vars"))
            for cmd in s.commands
        )
    ]
    report.check(
        cors_updates,
        where,
        "after the site's deploy, a step must read the site's URL and update serve's CORS_ORIGINS with it",
    )
    serve_env = " ".join(flag(serve[1], "--set-env-vars") + flag(serve[1], "--update-env-vars"))
    report.check("CORS_ORIGINS=" in serve_env, where, "serve's deploy must set CORS_ORIGINS (the site's current URL)")


# ------------------------------------------------------------------------------------------------- workflows

USES_RE = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
UNTRUSTED_RE = re.compile(r"\$\{\{[^}]*\b(github\.event\.|github\.head_ref|inputs\.)[^}]*\}\}")


def workflow_steps(wf: dict):
    for job_id, job in (wf.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            yield job_id, job, step


def check_workflows(root: Path, report: Report) -> None:
    wf_dir = root / ".github" / "workflows"
    paths = sorted(wf_dir.glob("*.yml")) + sorted(wf_dir.glob("*.yaml"))
    report.check(paths, ".github/workflows/", "no workflows")
    parsed: dict[str, dict] = {}
    for path in paths:
        where = str(path.relative_to(root))
        wf = load_yaml(path, report)
        if not wf:
            continue
        parsed[path.name] = wf
        perms = wf.get("permissions")
        report.check(
            isinstance(perms, dict) and all(v in {"read", "none"} for v in perms.values()),
            where,
            "top-level permissions must be an explicit read-only map (write access only per job, where needed)",
        )
        for job_id, job in (wf.get("jobs") or {}).items():
            jp = job.get("permissions")
            report.check(jp != "write-all", where, f"job {job_id}: permissions write-all")
            report.check(job.get("timeout-minutes"), where, f"job {job_id}: set timeout-minutes")
        for job_id, _job, step in workflow_steps(wf):
            uses = step.get("uses")
            if uses and not uses.startswith(("./", "docker://")):
                report.check(
                    USES_RE.match(uses), where, f"job {job_id}: `{uses}` must be pinned to a version tag or a sha"
                )
            if "run" in step:
                bad = UNTRUSTED_RE.search(str(step["run"]))
                report.check(
                    not bad, where, f"job {job_id}: `{bad.group(0) if bad else ''}` in run: (pass it through env:)"
                )
    ci = parsed.get("ci.yml")
    if report.check(ci, ".github/workflows/ci.yml", "missing"):
        triggers = ci.get("on", ci.get(True)) or {}
        for event in ("push", "pull_request"):
            report.check(event in triggers, "ci.yml", f"must run on {event}")
        runs = "\n".join(str(s.get("run", "")) for _, _, s in workflow_steps(ci))
        uses_with = "\n".join(yaml.safe_dump(s.get("with") or {}) for _, _, s in workflow_steps(ci))
        for needle, what in (
            ("ruff check", "ruff check"),
            ("ruff format --check", "ruff format --check"),
            ("scripts/lint-deploy.sh", "the deploy lints (hadolint, actionlint, this checker)"),
            ("pytest", "pytest"),
            ("e2e", "the export + parity chain (pytest -m e2e)"),
            ("test-serve-venv", "the serve tests in the serve-only venv"),
        ):
            report.check(needle in runs, "ci.yml", f"must run {what}")
        composed = "compose up --build" in runs or "compose build" in runs
        for dockerfile in (SERVE_DOCKERFILE, SITE_DOCKERFILE):
            report.check(
                composed or dockerfile in runs or dockerfile in uses_with, "ci.yml", f"must build {dockerfile}"
            )
        report.check(
            not re.search(r"\bpush:\s*true", uses_with) and "docker push" not in runs,
            "ci.yml",
            "must not push images (deploy.yml/Cloud Build does)",
        )
    deploy = parsed.get("deploy.yml")
    if report.check(deploy, ".github/workflows/deploy.yml", "missing"):
        triggers = deploy.get("on", deploy.get(True)) or {}
        branches = (triggers.get("workflow_run") or triggers.get("push") or {}).get("branches") or []
        report.check(branches == ["main"], "deploy.yml", "must deploy main only (push or workflow_run on main)")
        auth = [
            s for _, _, s in workflow_steps(deploy) if str(s.get("uses", "")).startswith("google-github-actions/auth@")
        ]
        report.check(
            auth
            and all("workload_identity_provider" in (s.get("with") or {}) for s in auth)
            and not any("credentials_json" in (s.get("with") or {}) for s in auth),
            "deploy.yml",
            "must authenticate with Workload Identity Federation (no service account keys)",
        )
        runs = "\n".join(str(s.get("run", "")) for _, _, s in workflow_steps(deploy))
        config = re.search(r"gcloud builds submit[\s\S]*?--config[= ](\S+)", runs)
        if report.check(config, "deploy.yml", "must run gcloud builds submit --config=..."):
            report.check((root / config.group(1)).is_file(), "deploy.yml", f"{config.group(1)} does not exist")
        report.check("SHORT_SHA=" in runs, "deploy.yml", "must pass SHORT_SHA (manual builds have none)")


# --------------------------------------------------------------------------------------------- devcontainers


def check_devcontainers(root: Path, report: Report) -> None:
    variants = {".devcontainer/devcontainer.json": "cpu", ".devcontainer/gpu/devcontainer.json": "gpu"}
    for rel, kind in variants.items():
        path = root / rel
        if not report.check(path.is_file(), rel, "missing"):
            continue
        try:
            config = json.loads(path.read_text())
        except ValueError as exc:
            report.check(False, rel, f"is not JSON: {exc}")
            continue
        report.check(config.get("image") or config.get("build"), rel, "needs an image or a build")
        report.check(
            re.search(r"\bmake\b[^&]*\bvenv\b", str(config.get("postCreateCommand", ""))),
            rel,
            "postCreateCommand must set up the environment in one step (make venv ...)",
        )
        env = config.get("containerEnv") or {}
        if kind == "cpu":
            report.check(
                "whl/cpu" in env.get("PIP_EXTRA_INDEX_URL", ""),
                rel,
                "the CPU variant must install CPU torch (PIP_EXTRA_INDEX_URL .../whl/cpu), not the CUDA build",
            )
        else:
            report.check(
                any(str(a).startswith("--gpus") for a in config.get("runArgs") or []),
                rel,
                "the GPU variant must pass --gpus to docker run",
            )
            report.check("whl/cpu" not in json.dumps(config), rel, "the GPU variant must not install CPU-only torch")


# ------------------------------------------------------------------------------------------------------ main


def check_all(root: Path) -> Report:
    report = Report()
    check_dockerfiles(root, report)
    check_compose(root, report)
    check_cloudbuild(root, report)
    check_workflows(root, report)
    check_devcontainers(root, report)
    return report


# Each mutation breaks one fact; the self-test asserts the checker reports it (the message must contain `expect`).
MUTATIONS: list[tuple[str, str, str, str]] = [
    # file, old, new, expected message fragment
    (SERVE_DOCKERFILE, "USER 10001:10001", "USER root", "non-root USER"),
    (SERVE_DOCKERFILE, "python:3.11.14-slim-bookworm AS builder", "python:latest AS builder", "not pinned"),
    (SERVE_DOCKERFILE, "python:3.11.14-slim-bookworm AS builder", "python:3.12.9-slim-bookworm AS builder", "3.11"),
    (SERVE_DOCKERFILE, "    PORT=8080 \\", "    PORT=8000 \\", "PORT=8080"),
    (SERVE_DOCKERFILE, "/requirements-serve.txt", "/requirements-train.txt", "requirements-serve.txt"),
    (SERVE_DOCKERFILE, "HEALTHCHECK --interval", "# HEALTHCHECK --interval", "HEALTHCHECK"),
    (SERVE_DOCKERFILE, "COPY shipped/ shipped/", "", "COPY shipped/"),
    (SERVE_DOCKERFILE, '"-m", "serve"]', '"-m", "uvicorn"]', "CMD"),
    (TRAIN_DOCKERFILE, "USER 10001:10001", "", "non-root USER"),
    (TRAIN_DOCKERFILE, "-e '.[train]'", "-e '.'", ".[train]"),
    ("requirements-serve.txt", "onnxruntime==", "torch==2.14.1\nonnxruntime==", "torch must not"),
    ("requirements-serve.txt", "starlette==", "starlette>=", "not pinned"),
    ("compose.yaml", "CORS_ORIGINS: http://localhost:8080", "CORS_ORIGINS: http://localhost:3000", "CORS_ORIGINS"),
    ("compose.yaml", "API_URL: http://localhost:8000", "API_URL: http://localhost:9000", "API_URL"),
    ("compose.yaml", '"127.0.0.1:8000:8000"', '"127.0.0.1:8000:9000"', "container port"),
    ("compose.yaml", "    healthcheck:\n      test: [", "    healtcheck:\n      test: [", "healthcheck"),
    ("compose.yaml", "dockerfile: docker/site.Dockerfile", "dockerfile: docker/nope.Dockerfile", "site.Dockerfile"),
    (CLOUDBUILD, "--tag=${_SERVE_IMAGE}:$SHORT_SHA", "--tag=${_SERVE_IMAGE}:dev", "SHORT_SHA"),
    (CLOUDBUILD, "  _SITE_SERVICE: cifar-site\n", "", "_SITE_SERVICE is used but not declared"),
    (CLOUDBUILD, "substitutions:\n", "substitutions:\n  _UNUSED: x\n", "never used"),
    (CLOUDBUILD, "  dynamicSubstitutions: true\n", "", "dynamicSubstitutions"),
    (CLOUDBUILD, "--image=${_SITE_IMAGE}:$SHORT_SHA", "--image=${_SITE_IMAGE}:latest", "SHORT_SHA"),
    (CLOUDBUILD, "--concurrency=32", "", "--concurrency"),
    (CLOUDBUILD, "--set-env-vars=\"API_URL=", "--set-env-vars=\"X_URL=", "API_URL"),
    (CLOUDBUILD, "waitFor: [push-serve, push-site]", "waitFor: [build-serve]", "pushed"),
    (CLOUDBUILD, "--update-env-vars=\"CORS_ORIGINS=", "--update-env-vars=\"X=", "CORS_ORIGINS"),
    (CLOUDBUILD, "-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/site", ".gcr.io/site", "Artifact"),
    ("docker/train-entrypoint.sh", "dvc pull --allow-missing", "true", "dvc pull"),
    (TRAIN_DOCKERFILE, "ARG TORCH_INDEX=", "ARG TORCH_URL=", "TORCH_INDEX"),
    (TRAIN_DOCKERFILE, 'CMD ["dvc", "repro"]', 'CMD ["dvc", "status"]', "dvc repro"),
    ("compose.yaml", '"127.0.0.1:8080:8080"', '"8080:8080"', "127.0.0.1"),
    (CLOUDBUILD, "waitFor: [deploy-serve]", "waitFor: [push-serve, push-site]", "before the site"),
    (CLOUDBUILD, "update ${_SERVE_SERVICE} --region=${_REGION}", "update ${_SERVE_SERVICE}", "region"),
    (CLOUDBUILD, "_SERVE_IMAGE: ${_REGION}", "_SERVE_IMAGE: ${_SERVE_RUNTIME_SA}", "chains"),
    (CLOUDBUILD, "  - ${_SITE_IMAGE}:$SHORT_SHA\n", "", "images: must list"),
    (".github/workflows/ci.yml", "          push: false", "          push: true", "must not push"),
    (".github/workflows/deploy.yml", "branches: [main]", "branches: [main, dev]", "main only"),
    (".github/workflows/deploy.yml", "SHORT_SHA=${DEPLOY_SHA", "_SHA=${DEPLOY_SHA", "SHORT_SHA"),
    (".devcontainer/devcontainer.json", "/whl/cpu", "/whl/cu128", "CPU torch"),
    (".devcontainer/gpu/devcontainer.json", '"--gpus=all", ', "", "--gpus"),
    (".devcontainer/devcontainer.json", '"postCreateCommand": "make venv', '"postCreateCommand": "true', "one step"),
    (".github/workflows/ci.yml", "actions/checkout@v5", "actions/checkout@main", "pinned"),
    (".github/workflows/ci.yml", "permissions:\n  contents: read", "permissions: write-all", "permissions"),
    (".github/workflows/ci.yml", "ruff format --check .", "ruff format .", "ruff format --check"),
    (".github/workflows/deploy.yml", 'echo "not a commit', 'echo "${{ github.event.workflow_run.head_branch }}',
     "run:"),
    (".github/workflows/deploy.yml", "workload_identity_provider:", "credentials_json:", "Workload Identity"),
]  # fmt: skip


def self_test(root: Path) -> int:
    baseline = check_all(root)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rel in ("docker", "cloudbuilds", ".github/workflows", ".devcontainer"):
            shutil.copytree(root / rel, work / rel)
        for rel in ("compose.yaml", "requirements-serve.txt"):
            shutil.copy(root / rel, work / rel)
        for rel, old, new, expect in MUTATIONS:
            path = work / rel
            original = path.read_text()
            if old not in original:
                failures.append(f"{rel}: the mutation target {old!r} is gone; update MUTATIONS")
                continue
            path.write_text(original.replace(old, new, 1))
            new_errors = [e for e in check_all(work).errors if e not in baseline.errors]
            path.write_text(original)
            if not any(expect in e for e in new_errors):
                failures.append(f"{rel}: {old!r} -> {new!r} was not reported (expected {expect!r}; got {new_errors})")
    for failure in failures:
        print(f"self-test FAILED: {failure}", file=sys.stderr)
    print(f"check_deploy_config self-test: {len(MUTATIONS) - len(failures)}/{len(MUTATIONS)} broken copies caught")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parent.parent, type=Path)
    parser.add_argument("--self-test", action="store_true", help="prove every rule fails on a broken copy")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args.root)
    report = check_all(args.root)
    for error in report.errors:
        print(f"deploy-config: {error}", file=sys.stderr)
    status = "FAILED" if report.errors else "ok"
    print(f"check_deploy_config: {report.checks} checks, {len(report.errors)} problems: {status}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())

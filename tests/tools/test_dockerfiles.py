"""What the images must be beyond what hadolint knows: the serve image is torch-free, pinned, non-root and on
Cloud Run's port; every image is pinned and non-root; the training image runs the DVC pipeline."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
# Never a serving dependency (docs/design.md: the service is torch-free).
TRAINING_ONLY = {"torch", "torchvision", "lightning", "pytorch-lightning", "timm", "torchmetrics", "hydra-core"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def stages(path: Path) -> list[Stage]:
    """The stages and their instructions, as Docker reads them: comment lines dropped, continuations joined."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    result: list[Stage] = []
    for line in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            result.append(Stage(parts[0], parts[2] if len(parts) == 3 and parts[1].lower() == "as" else None))
        elif instruction:
            result[-1].instructions.append((instruction.upper(), rest.strip()))
    return result


def test_the_three_images_exist():
    assert {p.name for p in DOCKERFILES} >= {"serve.Dockerfile", "site.Dockerfile", "train.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_is_pinned_and_runs_as_non_root(path):
    all_stages = stages(path)
    names = {s.name for s in all_stages}
    for stage in all_stages:
        if stage.base not in names:
            last = stage.base.rsplit("/", 1)[-1]
            tag = stage.base.split("@", 1)[1] if "@" in stage.base else last.partition(":")[2]
            assert tag != "latest", stage.base
            assert re.search(r"\d", tag), f"{stage.base} is not pinned to a version or digest"
    users = all_stages[-1].args("USER")
    assert users, "the final stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_one_python_for_all_images():
    bases = {s.base for path in DOCKERFILES for s in stages(path) if s.base.startswith("python:")}
    assert len(bases) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", bases.pop())


def test_serve_image_is_torch_free_and_ready_for_cloud_run():
    all_stages = stages(ROOT / "docker" / "serve.Dockerfile")
    final = all_stages[-1]
    assert len(all_stages) >= 2, "the venv is built in a builder stage"
    installs = " ".join(a for s in all_stages for i, a in s.instructions if i in {"RUN", "COPY", "ADD"})
    assert re.search(r"--require-hashes\s.*-r\s+\S*requirements-serve\.lock", installs)
    assert not re.search(r"requirements-(train|dev)\.txt|\btorch\b|\.\[", installs), "requirements-serve.lock only"
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", " ".join(final.args("RUN")))
    envs = " ".join(final.args("ENV"))
    assert re.search(r"\bPORT=8080\b", envs), "Cloud Run's port"
    assert re.search(r"\bHOST=0\.0\.0\.0\b", envs), "the loopback is unreachable from outside a container"
    copies = final.args("COPY")
    assert any("--from=" in c for c in copies), "the final stage copies the venv from the builder"
    for source in ("serve/", "shipped/"):
        assert any(source in c.split() for c in copies), source
    assert re.sub(r"\s", "", final.args("CMD")[-1]) == '["python","-m","serve"]'
    assert "/healthz" in " ".join(final.args("HEALTHCHECK"))


def test_site_image_has_a_healthcheck_and_ships_no_python():
    assert stages(ROOT / "docker" / "site.Dockerfile")[-1].args("HEALTHCHECK")
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert any(fnmatch.fnmatch("site/server.py", pattern) for pattern in ignored), "site/server.py is local only"


def test_serving_requirements_are_pinned_and_torch_free():
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements-serve.txt").read_text().splitlines()]
    for line in filter(None, lines):
        name = re.split(r"[\[=<>!~ ;]", line, maxsplit=1)[0].lower().replace("_", "-")
        assert name not in TRAINING_ONLY, f"{name} must not be a serving dependency"
        assert re.fullmatch(r"[A-Za-z0-9._\-\[\],]+==[^=*]+", line), f"{line!r} is not pinned with =="


def test_training_image_runs_the_dvc_pipeline():
    instructions = [(i, a) for s in stages(ROOT / "docker" / "train.Dockerfile") for i, a in s.instructions]
    assert any(i == "RUN" and re.search(r"pip install.*\s-e\s+['\"]?\.\[train\]", a) for i, a in instructions)
    assert any(i == "ARG" and a.startswith("TORCH_INDEX=") for i, a in instructions), "selects CPU or CUDA torch"
    entrypoint = (ROOT / "docker" / "train-entrypoint.sh").read_text().splitlines()
    runs = " ".join([a for _, a in instructions] + [line for line in entrypoint if not line.lstrip().startswith("#")])
    runs = re.sub(r'",\s*"', " ", runs)  # exec form ["dvc", "repro"] -> dvc repro
    assert "dvc pull" in runs
    assert "dvc repro" in runs


def locked(text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, hashes) of a pip-compile lock."""
    entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M)
    return {name.lower(): (version, hashes.count("--hash=")) for name, version, hashes in entries}


def test_the_lock_holds_the_serving_pins_each_with_its_hashes():
    lock = locked((ROOT / "requirements-serve.lock").read_text())
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements-serve.txt").read_text().splitlines()]
    pins = dict(line.lower().split("==") for line in filter(None, lines))
    stale = {name: (version, lock.get(name, ("missing",))[0]) for name, version in pins.items()}
    stale = {name: pair for name, pair in stale.items() if pair[0] != pair[1]}
    assert not stale, f"requirements-serve.lock is stale (pin, locked): {stale}; run `make lock`"
    assert all(hashes for _, hashes in lock.values()), "every locked package has its sha256 (`make lock`)"
    assert not set(lock) & TRAINING_ONLY, "nothing of training is pulled in"

"""The model registry: every shipped version, the stages (`candidate`, `prod`) and who moved them when, in one file
that travels with every commit (shipped/registry.json; git tags are not carried by every way commits move).

    python -m export.registry register [CARD]            a shipped card becomes a version and the candidate
    python -m export.registry promote VERSION [--stage prod]
    python -m export.registry rollback [--project P]     prod back to the version before it (files restored from git;
                                                         with a project, Cloud Run's traffic back to its revision)
    python -m export.registry history | show

A version's files are the shipped/ files of the commit that holds its model file (found by the file's git blob id),
so a rollback restores exactly what was served. A Cloud Run revision is tagged `m-<version>` when it is deployed
(cloudbuilds/cloudbuild.yaml), which is how a rollback finds the revision that served a version.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from contract.paths import PROJECT_ROOT, SHIPPED_DIR

REGISTRY = SHIPPED_DIR / "registry.json"
MODEL = SHIPPED_DIR / "model.int8.onnx"
CARD = SHIPPED_DIR / "model-card.json"
STAGES = ("candidate", "prod")
SERVICE, REGION = "cifar-serve", "europe-west1"  # cloudbuilds/cloudbuild.yaml's _SERVE_SERVICE and _REGION


class RegistryError(Exception):
    """A move the registry refuses; the message is one line."""


def revision_tag(version: str) -> str:
    """The Cloud Run traffic tag of the revision serving `version` (tags start with a letter)."""
    return f"m-{version}"


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if done.returncode:
        raise RegistryError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def summary(card: dict) -> dict:
    """What the registry keeps of a card: enough to choose between versions without opening the files."""
    quantization = card.get("quantization") or {}
    return {
        "version": card["version"],
        "created": card.get("created"),
        "git_sha": card.get("git_sha"),
        "int8_top1": quantization.get("int8_top1"),
        "mean_corrupted_top1": (card.get("robustness") or {}).get("mean_corrupted_top1"),
        "ece_test": ((card.get("calibration") or {}).get("ece_test") or {}).get("after"),
        "outlier_mean_auroc": (card.get("outlier_benchmark") or {}).get("mean_auroc"),
    }


@dataclass
class Registry:
    versions: dict[str, dict] = field(default_factory=dict)
    stages: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(STAGES))
    history: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path = REGISTRY) -> Registry:
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        return cls(data["versions"], {**dict.fromkeys(STAGES), **data["stages"]}, data["history"])

    def save(self, path: Path = REGISTRY) -> None:
        data = {"versions": self.versions, "stages": self.stages, "history": self.history}
        path.write_text(json.dumps(data, indent=2) + "\n")

    def register(self, card: dict, model_blob: str) -> str:
        version = card["version"]
        self.versions[version] = summary(card) | {"model_blob": model_blob}
        return version

    def move(self, stage: str, version: str, *, by: str, commit: str, note: str = "", when: str | None = None) -> None:
        if stage not in STAGES:
            raise RegistryError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")
        if version not in self.versions:
            raise RegistryError(f"unknown version {version!r}; registered: {', '.join(self.versions) or 'none'}")
        previous = self.stages.get(stage)
        self.stages[stage] = version
        when = when or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.history.append({"time": when, "stage": stage, "version": version, "previous": previous, "by": by,
                             "commit": commit, "note": note})  # fmt: skip

    def previous_prod(self) -> str:
        """The version that held prod before the current one (skipping the current version's own re-promotions)."""
        current = self.stages.get("prod")
        for entry in reversed(self.history):
            if entry["stage"] == "prod" and entry["previous"] and entry["previous"] != current:
                return entry["previous"]
        raise RegistryError(f"prod ({current}) has no earlier version to roll back to")


def author(root: Path) -> str:
    name = _config(root, "user.name") or os.environ.get("USER", "unknown")
    email = _config(root, "user.email")
    return f"{name} <{email}>" if email else name


def _config(root: Path, key: str) -> str:
    """git's setting `key`, or "" where it is unset."""
    done = subprocess.run(["git", "config", key], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def mover(root: Path) -> dict[str, str]:
    """Who moves a stage, and at which commit: the `by` and `commit` of a move."""
    return {"by": author(root), "commit": git(root, "rev-parse", "HEAD")}


def commit_with_blob(root: Path, path: Path, blob: str) -> str:
    """The latest commit whose `path` is the blob `blob` (a version's model file)."""
    relative = path.relative_to(root).as_posix()
    for commit in git(root, "rev-list", "HEAD", "--", relative).split():
        if git(root, "rev-parse", f"{commit}:{relative}") == blob:
            return commit
    raise RegistryError(f"no commit holds {relative} as blob {blob[:12]}: the version's files are not in this history")


SHIPPED = SHIPPED_DIR.relative_to(PROJECT_ROOT)


def restore_shipped(root: Path, commit: str) -> None:
    """shipped/ exactly as `commit` had it (model, card, drift reference, weights), the registry itself excepted."""
    keep = (SHIPPED / REGISTRY.name).as_posix()
    then = set(git(root, "ls-tree", "-r", "--name-only", commit, "--", SHIPPED.as_posix()).split()) - {keep}
    now = set(git(root, "ls-files", "--", SHIPPED.as_posix()).split()) - {keep}
    for stale in now - then:
        (root / stale).unlink(missing_ok=True)
    git(root, "checkout", commit, "--", *sorted(then))


def traffic_command(version: str, project: str, region: str = REGION, service: str = SERVICE) -> list[str]:
    """The gcloud command that sends all of `service`'s traffic to the revision tagged for `version`."""
    return ["gcloud", "run", "services", "update-traffic", service, f"--project={project}", f"--region={region}",
            f"--to-tags={revision_tag(version)}=100", "--quiet"]  # fmt: skip


def rollback(root: Path, registry: Registry, *, project: str | None = None, region: str = REGION,
             service: str = SERVICE, dry_run: bool = False) -> tuple[str, list[str] | None]:  # fmt: skip
    """Move prod back to the version before it and restore its shipped/ files from git; with a project, send Cloud
    Run's traffic to its revision (printed, not run, with dry_run). Returns (version, gcloud command or None)."""
    target = registry.previous_prod()
    commit = commit_with_blob(root, root / SHIPPED.as_posix() / MODEL.name, registry.versions[target]["model_blob"])
    restore_shipped(root, commit)
    registry.move("prod", target, **mover(root), note=f"rollback; files from {commit[:12]}")
    command = traffic_command(target, project, region, service) if project else None
    if command and not dry_run:
        subprocess.run(command, check=True)
    return target, command


def history_lines(registry: Registry) -> list[str]:
    lines = [f"{stage}: {registry.stages.get(stage) or '-'}" for stage in STAGES]
    for entry in registry.history:
        was = entry["previous"] or "-"
        lines.append(f"{entry['time']}  {entry['stage']:9s} {was} -> {entry['version']}  by {entry['by']} at "
                     f"{entry['commit'][:12]}  {entry['note']}".rstrip())  # fmt: skip
    return lines


def main(argv: list[str] | None = None, root: Path = PROJECT_ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.registry", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="a shipped card becomes a version and the candidate")
    register.add_argument("card", type=Path, nargs="?", default=CARD)
    promote = commands.add_parser("promote", help="move a stage to a version")
    promote.add_argument("version")
    promote.add_argument("--stage", choices=STAGES, default="prod")
    back = commands.add_parser("rollback", help="prod back to the previous version")
    back.add_argument("--project", default=os.environ.get("PROJECT_ID") or None, help="Cloud Run project")
    back.add_argument("--region", default=REGION)
    back.add_argument("--service", default=SERVICE)
    back.add_argument("--dry-run", action="store_true", help="print the gcloud command instead of running it")
    commands.add_parser("history", help="the stages and every move")
    args = parser.parse_args(argv)
    path = root / REGISTRY.relative_to(PROJECT_ROOT)
    registry = Registry.load(path)
    try:
        if args.command == "register":
            card = json.loads(args.card.read_text())
            model = args.card.parent / MODEL.name
            version = registry.register(card, git(root, "hash-object", str(model)))
            registry.move("candidate", version, **mover(root), note="registered")
            print(f"registered {version}; candidate: {version}")
        elif args.command == "promote":
            registry.move(args.stage, args.version, **mover(root))
            print(f"{args.stage}: {args.version}")
        elif args.command == "rollback":
            version, command = rollback(root, registry, project=args.project, region=args.region,
                                        service=args.service, dry_run=args.dry_run)  # fmt: skip
            print(f"prod: {version} (shipped/ restored; commit it to deploy these files)")
            if command:
                print(("would run: " if args.dry_run else "ran: ") + shlex.join(command))
        else:
            print("\n".join(history_lines(registry)))
            return 0
    except (RegistryError, OSError, KeyError, json.JSONDecodeError) as exc:
        print(f"export.registry: {exc}", file=sys.stderr)
        return 1
    registry.save(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The model registry (export/registry.py) on a fresh repository: register, promote, roll back (files restored from
git, the Cloud Run command rendered), history; refusals for unknown versions and a prod with nothing before it."""

from __future__ import annotations

import json
import subprocess

import pytest

from export import registry


def git(root, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def ship(root, version: str, model: bytes, extra: dict[str, str]) -> None:
    """What `make ship` leaves in shipped/: a model file, its card, and other files, committed."""
    shipped = root / "shipped"
    shipped.mkdir(exist_ok=True)
    (shipped / "model.int8.onnx").write_bytes(model)
    card = {"version": version, "created": "2026-12-06T00:00:00+00:00", "quantization": {"int8_top1": 0.9}}
    (shipped / "model-card.json").write_text(json.dumps(card))
    for name, text in extra.items():
        (shipped / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"ship {version}")


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.name", "Release Manager")
    git(tmp_path, "config", "user.email", "rm@example.org")
    return tmp_path


def run(repo, *argv: str) -> int:
    return registry.main(list(argv), root=repo)


def test_promote_rollback_and_history_on_a_fresh_repository(repo, capsys):
    ship(repo, "aaa", b"first model", {"weights.txt": "first weights"})
    assert run(repo, "register", str(repo / "shipped" / "model-card.json")) == 0
    assert run(repo, "promote", "aaa") == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "aaa to prod")
    ship(repo, "bbb", b"second model", {"weights.txt": "second weights", "new-file.txt": "only in bbb"})
    assert run(repo, "register", str(repo / "shipped" / "model-card.json")) == 0
    saved = json.loads((repo / "shipped" / "registry.json").read_text())
    assert saved["stages"] == {"candidate": "bbb", "prod": "aaa"}
    assert run(repo, "promote", "bbb", "--stage", "prod") == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bbb to prod")

    capsys.readouterr()
    assert run(repo, "rollback", "--project", "my-project", "--dry-run") == 0
    printed = capsys.readouterr().out
    assert "prod: aaa" in printed
    assert ("would run: gcloud run services update-traffic cifar-serve --project=my-project "
            "--region=europe-west1 --to-tags=m-aaa=100 --quiet") in printed  # fmt: skip
    shipped = repo / "shipped"
    assert (shipped / "model.int8.onnx").read_bytes() == b"first model"  # the files that served aaa
    assert (shipped / "weights.txt").read_text() == "first weights"
    assert json.loads((shipped / "model-card.json").read_text())["version"] == "aaa"
    assert not (shipped / "new-file.txt").exists()
    saved = json.loads((shipped / "registry.json").read_text())  # the registry keeps its whole history
    assert saved["stages"]["prod"] == "aaa"
    assert [(e["stage"], e["previous"], e["version"]) for e in saved["history"]] == [
        ("candidate", None, "aaa"), ("prod", None, "aaa"), ("candidate", "aaa", "bbb"), ("prod", "aaa", "bbb"),
        ("prod", "bbb", "aaa"),
    ]  # fmt: skip
    assert all(e["by"] == "Release Manager <rm@example.org>" for e in saved["history"])
    assert saved["history"][-1]["commit"] == git(repo, "rev-parse", "HEAD")
    assert "rollback" in saved["history"][-1]["note"]

    assert run(repo, "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["candidate: bbb", "prod: aaa"]
    assert "prod      bbb -> aaa  by Release Manager" in lines[-1]


def test_the_registry_refuses_what_it_cannot_do(repo, capsys):
    ship(repo, "aaa", b"first model", {})
    assert run(repo, "register", str(repo / "shipped" / "model-card.json")) == 0
    assert run(repo, "promote", "zzz") == 1
    assert "unknown version 'zzz'" in capsys.readouterr().err
    assert run(repo, "promote", "aaa") == 0
    assert run(repo, "rollback") == 1  # nothing before the first prod
    assert "no earlier version" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(repo, "promote", "aaa", "--stage", "staging")


def test_the_committed_registry_holds_the_shipped_model_as_prod():
    saved = registry.Registry.load()
    card = json.loads(registry.CARD.read_text())
    assert saved.stages["prod"] == card["version"]
    blob = git(registry.PROJECT_ROOT, "hash-object", str(registry.MODEL))
    assert saved.versions[card["version"]]["model_blob"] == blob  # its files are the shipped ones

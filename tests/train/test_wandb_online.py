"""W&B stays off the network unless WANDB_MODE=online, and an online run records its files as artifacts.

No test here talks to W&B: the online paths run against a stand-in `wandb` module.
"""

from __future__ import annotations

import sys
import types

import pytest
from hydra.utils import instantiate

from tests.train.conftest import compose_config, task_config
from train import wandb_online
from train.train import train

# What configs/logger/wandb.yaml needs for the mode to follow WANDB_MODE (see train/wandb_online.py).
MODE_FROM_ENV = ["logger.wandb.offline=${wandb_offline:}", "logger.wandb.log_model=${wandb_online:}"]


@pytest.mark.parametrize(
    ("env", "mode"),
    [(None, "offline"), ("offline", "offline"), ("dryrun", "offline"), ("disabled", "disabled"),
     ("online", "online"), ("run", "online"), (" Online ", "online")],
)  # fmt: skip
def test_only_an_explicit_online_mode_is_online(monkeypatch, env, mode):
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    assert wandb_online.wandb_mode() == mode
    assert wandb_online.is_online() is (mode == "online")


@pytest.mark.parametrize(("env", "offline", "log_model"), [("offline", True, False), ("disabled", False, False),
                                                            ("online", False, True)])  # fmt: skip
def test_the_logger_config_follows_wandb_mode_and_logs_the_checkpoint_only_online(monkeypatch, env, offline, log_model):
    monkeypatch.setenv("WANDB_MODE", env)
    cfg = task_config(["logger=wandb", *MODE_FROM_ENV])
    assert (cfg.logger.wandb.offline, cfg.logger.wandb.log_model) == (offline, log_model)
    logger = instantiate(cfg.logger.wandb)  # Lightning refuses log_model with offline: never both
    assert logger._log_model is log_model


@pytest.fixture
def fresh_wandb():
    """wandb keeps one run and its settings per process: a WandbLogger would reuse an earlier test's."""
    import wandb

    wandb.finish()
    wandb.teardown()
    yield
    wandb.finish()
    wandb.teardown()


@pytest.mark.slow
def test_wandb_mode_disabled_really_disables_the_logger(cfg_fast, tmp_path, monkeypatch, fresh_wandb):
    # With offline=true Lightning would set WANDB_MODE=dryrun and write an offline run despite "disabled".
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    train(cfg_fast("model=mlp", "logger=wandb", *MODE_FROM_ENV, "trainer.limit_train_batches=2", "test=false"))
    assert not list((tmp_path / "logs").rglob("offline-run-*"))
    import wandb

    assert wandb.run is None or wandb.run.disabled


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[tuple] = []
        self.finished = False

    def log_artifact(self, artifact, aliases):
        self.logged.append((artifact, aliases))

    def finish(self):
        self.finished = True


class FakeArtifact:
    def __init__(self, name, type, metadata):
        self.name, self.type, self.metadata, self.files = name, type, metadata, []

    def add_file(self, path, name):
        self.files.append((path, name))


@pytest.fixture
def fake_wandb(monkeypatch):
    run = FakeRun()
    inits = []
    module = types.SimpleNamespace(
        run=None, Artifact=FakeArtifact, init=lambda **kwargs: inits.append(kwargs) or run, inits=inits, fake_run=run
    )
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_offline_records_nothing_and_never_starts_wandb(monkeypatch, tmp_path, fake_wandb, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    assert wandb_online.main([str(onnx), "--name", "onnx"]) == 0
    assert not fake_wandb.inits
    assert not fake_wandb.fake_run.logged
    assert "not recorded" in capsys.readouterr().out


def test_online_records_the_files_as_one_model_artifact_in_the_runs_project(monkeypatch, tmp_path, fake_wandb):
    monkeypatch.setenv("WANDB_MODE", "online")
    files = [tmp_path / "model.onnx", tmp_path / "model-card.json"]
    for f in files:
        f.write_bytes(b"x")
    assert wandb_online.main([*map(str, files), "--name", "onnx"]) == 0
    assert fake_wandb.inits == [{"project": "cifar-classifier", "job_type": "export", "resume": "allow"}]
    ((artifact, aliases),) = fake_wandb.fake_run.logged
    assert (artifact.name, artifact.type, aliases) == ("onnx", "model", ["latest"])
    assert artifact.files == [(str(files[0]), "model.onnx"), (str(files[1]), "model-card.json")]
    assert fake_wandb.fake_run.finished


def test_a_missing_file_fails_before_anything_is_uploaded(monkeypatch, tmp_path, fake_wandb):
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(FileNotFoundError, match=r"model\.onnx"):
        wandb_online.log_files([tmp_path / "model.onnx"], "onnx", "model")
    assert not fake_wandb.inits


def test_the_project_is_the_one_the_logger_logs_to():
    assert compose_config(["logger=wandb"]).logger.wandb.project == wandb_online.PROJECT

"""Fixtures shared by the train, export and end-to-end tests: synthetic raw data, prepared once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic import write_raw


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    return write_raw(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def processed_dir(raw_dir, tmp_path_factory) -> Path:
    from train.prepare import prepare

    out = tmp_path_factory.mktemp("processed")
    prepare(raw_dir, out)
    return out


@pytest.fixture(scope="session")
def mlp_checkpoint(processed_dir, tmp_path_factory) -> Path:
    """A real checkpoint from `train.train.train`: the MLP, a few epochs on the synthetic data (seconds)."""
    from tests.train.conftest import fast_overrides, task_config
    from train.train import train

    tmp = tmp_path_factory.mktemp("mlp-run")
    train(task_config([*fast_overrides(processed_dir, tmp), "model=mlp", "trainer.max_epochs=4"]))
    return tmp / "ckpt" / "mlp" / "last.ckpt"

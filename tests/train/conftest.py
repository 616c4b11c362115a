"""The Hydra config composed once, with overrides that make a run take seconds on synthetic data."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from safetensors.torch import save_file

import train.train  # noqa: F401  (registers the project_root resolver)
from contract.paths import PROJECT_ROOT
from train.models import build


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def fast_overrides(processed_dir, tmp_path) -> list[str]:
    return [
        f"paths.data_dir={processed_dir}",
        f"paths.ckpt_root={tmp_path / 'ckpt'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "logger=none",
        "data.batch_size=32",
        "data.eval_batch_size=40",
        "data.val_size=40",
        "trainer.max_epochs=1",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
    ]


@pytest.fixture
def cfg_fast(processed_dir, tmp_path):
    """Compose with the fast overrides plus any given: cfg_fast("model=mlp", ...)."""

    def make(*overrides: str) -> DictConfig:
        return task_config([*fast_overrides(processed_dir, tmp_path), *overrides])

    return make


def task_config(overrides: list[str]) -> DictConfig:
    """The config as @hydra.main hands it to the task: ${hydra:...} resolvable, no hydra node."""
    cfg = compose_config(overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def warm_start(tmp_path) -> str:
    """A committed-weights file of a freshly initialised MLP (seed 0), for the fine-tune's warm start and teacher."""
    torch.manual_seed(0)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in build("mlp", 10).state_dict().items()}, str(path))
    return str(path)

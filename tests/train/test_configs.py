import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from tests.train.conftest import compose_config

GROUP_OPTIONS = {
    "model": ["resnet18", "resnet18_pretrained", "mlp"],
    "trainer": ["cpu", "gpu", "ddp"],
    "logger": ["csv", "wandb", "none"],
    "data": ["cifar10"],
    "callbacks": ["default"],
    "experiment": ["ship", "quick"],
}


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_every_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    assert cfg.model._target_ == "train.module.LitClassifier"
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert str(cfg.paths.data_dir).endswith("data/processed")


def test_paths_do_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = compose_config([])
    assert not str(cfg.paths.data_dir).startswith(str(tmp_path))
    assert cfg.paths.root
    assert cfg.paths.ckpt_root.startswith(cfg.paths.root)


def test_ddp_trainer_is_data_parallel():
    cfg = compose_config(["trainer=ddp"])
    assert cfg.trainer.strategy == "ddp"
    assert cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize("option", ["mlp", "resnet18"])
def test_model_configs_instantiate(option):
    model = instantiate(compose_config([f"model={option}"]).model)
    assert model.hparams.arch == option


def test_unknown_model_is_a_clear_hydra_error():
    with pytest.raises(ConfigCompositionException, match="nosuchmodel"):
        compose_config(["model=nosuchmodel"])

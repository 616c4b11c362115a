import pytest
import yaml
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from contract.paths import PROJECT_ROOT
from tests.train.conftest import compose_config

GROUP_OPTIONS = {
    "model": ["resnet18", "resnet18_pretrained", "mlp"],
    "trainer": ["cpu", "gpu", "ddp", "ddp_cpu"],
    "logger": ["csv", "wandb", "none"],
    "data": ["cifar10"],
    "callbacks": ["default"],
    "experiment": ["ship_gpu", "ship_lowres", "ship", "ship_refine", "quick"],
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


def test_ship_warm_starts_from_the_lowres_stage():
    lowres, ship = compose_config(["experiment=ship_lowres"]), compose_config(["experiment=ship"])
    assert lowres.model.arch_kwargs.max_pool is True
    assert ship.model.arch_kwargs.max_pool is False
    assert ship.model.init_weights == f"{lowres.paths.ckpt_root}/{lowres.run_name}/last.ckpt"
    assert ship.data.split_seed == lowres.data.split_seed  # stage 2 never trains on stage 1's validation images


def test_refine_continues_the_ship_stage_with_the_same_network_and_split():
    ship, refine = compose_config(["experiment=ship"]), compose_config(["experiment=ship_refine"])
    assert refine.model.init_weights == f"{ship.paths.ckpt_root}/{ship.run_name}/last.ckpt"
    assert refine.run_name != ship.run_name  # its own checkpoint folder: stage 2's stays the warm start
    assert refine.model.arch_kwargs == ship.model.arch_kwargs
    assert (refine.data.val_size, refine.data.split_seed) == (ship.data.val_size, ship.data.split_seed)
    assert refine.model.lr < ship.model.lr


def test_gpu_recipe_trains_from_scratch_on_the_same_split():
    gpu, lowres = compose_config(["experiment=ship_gpu"]), compose_config(["experiment=ship_lowres"])
    assert gpu.trainer.accelerator == "gpu"
    assert gpu.trainer.precision == "bf16-mixed"
    assert gpu.model.init_weights is None
    assert gpu.model.arch_kwargs.max_pool is False
    assert gpu.model.cutout > 0
    assert (gpu.data.val_size, gpu.data.split_seed) == (lowres.data.val_size, lowres.data.split_seed)


def test_sweep_parameters_are_valid_overrides():
    sweep = yaml.safe_load((PROJECT_ROOT / "configs" / "sweep.yaml").read_text())
    for key, spec in sweep["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec["min"]
        cfg = compose_config([f"{key}={str(value).lower()}"])
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, key

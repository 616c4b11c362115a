import json

import lightning as L
import pytest
import torch

from train.train import train


class Killed(Exception):
    """What a background run meets when the machine goes away: no hook after it runs."""


class Kill(L.Callback):
    """Kills fitting as epoch `epoch` starts; everything before it must already be on disk."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed


@pytest.mark.slow
def test_mlp_run_killed_mid_way_resumes_and_writes_a_checkpoint_that_loads_weights_only(
    cfg_fast, processed_dir, tmp_path
):
    killed = [f"+callbacks.kill._target_={__name__}.Kill", "+callbacks.kill.epoch=2", "test=false"]
    with pytest.raises(Killed):
        train(cfg_fast("model=mlp", "trainer.max_epochs=3", *killed))
    ckpt_dir = tmp_path / "ckpt" / "mlp"
    at_kill = torch.load(ckpt_dir / "last.ckpt", weights_only=True)
    assert at_kill["epoch"] == 1  # saved as the second epoch (index 1) ended: no finished epoch is lost
    steps_per_epoch = at_kill["global_step"] // 2

    results = train(cfg_fast("model=mlp", "trainer.max_epochs=3"))  # resumes from last.ckpt
    assert results["epochs"] == 3
    ckpt = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3 * steps_per_epoch  # the resumed run ran the third epoch only
    assert ckpt["labels"][0] == "airplane"
    assert ckpt["hyper_parameters"]["arch"] == "mlp"
    meta = json.loads((processed_dir / "meta.json").read_text())
    assert torch.allclose(ckpt["state_dict"]["net.preprocess.std"].flatten(), torch.tensor(meta["std"]))
    saved = json.loads((ckpt_dir / "metrics.json").read_text())
    assert saved["test_top1"] == results["test_top1"] > 0.5  # synthetic classes are easy: far above 10% chance
    # What a Hydra sweeper optimises: the validation split's top-1, recorded beside (never instead of) the test's.
    assert saved["val_top1"] == results["val_top1"] > 0.5
    assert len(saved["confusion_matrix"]) == 10
    assert set(saved["per_class_accuracy"]) == set(ckpt["labels"])


@pytest.mark.slow
def test_resnet18_run(cfg_fast, tmp_path):
    results = train(cfg_fast("model=resnet18", "trainer.limit_train_batches=2"))
    assert (tmp_path / "ckpt" / "resnet18" / "last.ckpt").is_file()
    # Two batches teach a ResNet little, so its accuracy is not asserted; that it is the test set's, counted right, is.
    confusion = torch.tensor(results["confusion_matrix"])
    assert confusion.sum() == 80  # every synthetic test image (8 per class), each counted once
    assert results["test_top1"] == pytest.approx(float(confusion.trace() / confusion.sum()))
    assert results["per_class_accuracy"]["cat"] == pytest.approx(float(confusion[3, 3] / confusion[3].sum()))


@pytest.mark.slow
def test_the_gpu_recipe_runs_on_cpu_with_cutout(cfg_fast, tmp_path):
    # The shipped model's recipe (no max-pool, Cutout, its LR) on a few batches: every code path but the GPU's.
    cfg = cfg_fast("experiment=ship_gpu", "trainer.accelerator=cpu", "trainer.limit_train_batches=2")
    assert cfg.model.cutout > 0
    results = train(cfg)
    assert (tmp_path / "ckpt" / "ship-gpu" / "last.ckpt").is_file()
    assert results["config"]["model"]["cutout"] == cfg.model.cutout


@pytest.mark.slow
def test_wandb_logger_works_offline_without_a_server(cfg_fast, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    train(cfg_fast("model=mlp", "logger=wandb", "trainer.limit_train_batches=2"))
    assert list((tmp_path / "logs" / "wandb").glob("offline-run-*"))


def test_init_weights_warm_starts_the_network_from_another_run(mlp_checkpoint):
    from train.module import LitClassifier

    saved = torch.load(mlp_checkpoint, map_location="cpu", weights_only=True)
    hparams = {k: v for k, v in saved["hyper_parameters"].items() if k != "init_weights"}
    fresh = LitClassifier(**hparams)
    warm = LitClassifier(**hparams, init_weights=str(mlp_checkpoint))
    for name, tensor in warm.net.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][f"net.{name}"]), name
    assert not all(torch.equal(fresh.net.state_dict()[k], v) for k, v in warm.net.state_dict().items())

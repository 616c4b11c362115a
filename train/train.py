"""Thin training entry point: instantiate everything from the Hydra config, fit, test, report the metric."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from contract.paths import PROJECT_ROOT
from train import precision, wandb_online  # noqa: F401  (register the cpu_precision, wandb_online/_offline resolvers)

OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


def train(cfg: DictConfig) -> dict:
    """Fit and test; returns the final validation top-1 and the test metrics (also in <checkpoint dir>/metrics.json)."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    ckpt_dir = Path(cfg.paths.ckpt_root) / cfg.run_name
    last = ckpt_dir / "last.ckpt"
    trainer.fit(model, datamodule, ckpt_path=str(last) if cfg.resume and last.is_file() else None)
    val_acc = trainer.callback_metrics.get("val/acc")
    fitted = {"val_top1": float(val_acc) if val_acc is not None else float("nan")}
    if not cfg.test:
        return fitted
    trainer.test(model, datamodule)
    results = {
        **fitted,
        **model.test_results,
        "labels": model.labels,
        "epochs": trainer.current_epoch,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if trainer.is_global_zero:  # under DDP every process has the same (synced) results: one writes them
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"test top-1: {results['test_top1']:.4f}  ({ckpt_dir / 'metrics.json'})")
    return results


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "configs"), config_name="train")
def main(cfg: DictConfig) -> float:
    # The value a Hydra sweeper optimises: validation top-1. The test set never selects anything.
    return train(cfg)["val_top1"]

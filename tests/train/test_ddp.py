"""`trainer=ddp_cpu`: real two-process data parallel (gloo) through the real entry point, `python -m train`.

Lightning's ddp strategy starts rank 1 by re-running the command (with Hydra's run folder handed over), so the
test runs it exactly as a user would. Each rank writes what it saw and what it ended with (RankProbe below); the
ranks must have trained on different batches and still hold identical weights: the gradients were all-reduced.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from contract.paths import PROJECT_ROOT
from tests.train.conftest import compose_config, fast_overrides

# Two MLP epochs on the synthetic data take ~45 s on 2 busy cores, most of it two processes importing torch.
TIMEOUT_S = 300


def weights_digest(named: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(named):
        digest.update(name.encode())
        digest.update(named[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RankProbe(L.Callback):
    """Writes <out_dir>/rank<N>.json: this process's rank, steps, the batches it trained on and its weights' hash."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: list[str] = []

    def _weights(self, pl_module: L.LightningModule) -> str:
        return weights_digest(dict(pl_module.net.named_parameters()))

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = self._weights(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.batches.append(hashlib.sha256(batch[0].cpu().numpy().tobytes()).hexdigest())

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "pid": os.getpid(),
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "global_step": trainer.global_step,
            "batches": self.batches,
            "parameters": [name for name, _ in pl_module.net.named_parameters()],
            "initial": self.initial,
            "final": self._weights(pl_module),
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def test_ddp_cpu_is_two_gloo_processes_on_the_cpu_with_the_cpu_precision():
    ddp_cpu, cpu = compose_config(["trainer=ddp_cpu"]).trainer, compose_config(["trainer=cpu"]).trainer
    assert ddp_cpu.strategy._target_ == "lightning.pytorch.strategies.DDPStrategy"
    assert ddp_cpu.strategy.process_group_backend == "gloo"
    assert (ddp_cpu.accelerator, ddp_cpu.devices, ddp_cpu.num_nodes) == ("cpu", 2, 1)
    assert ddp_cpu.precision == cpu.precision
    # The GPU / multi-node option is untouched.
    ddp = compose_config(["trainer=ddp"]).trainer
    assert (ddp.strategy, ddp.accelerator) == ("ddp", "gpu")


@pytest.mark.slow
def test_two_ddp_processes_train_on_different_batches_and_end_with_identical_weights(processed_dir, tmp_path):
    probe_dir = tmp_path / "probe"
    overrides = [
        "trainer=ddp_cpu",
        "model=mlp",
        *fast_overrides(processed_dir, tmp_path),
        "trainer.max_epochs=2",  # a second epoch: the per-rank split must hold after the sampler's reshuffle
        f"+callbacks.probe._target_={__name__}.RankProbe",
        f"+callbacks.probe.out_dir={probe_dir}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in {"LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_PORT"}}
    env |= {"PYTHONPATH": str(PROJECT_ROOT), "WANDB_MODE": "disabled"}
    # Its own process group, so a timeout kills rank 1 too (Lightning starts it as a child of rank 0).
    proc = subprocess.Popen(
        [sys.executable, "-m", "train", *overrides],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"DDP run took over {TIMEOUT_S} s:\n{output[-4000:]}")
    assert proc.returncode == 0, output[-4000:]

    ranks = [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in ranks)
    assert ranks[0]["pid"] != ranks[1]["pid"]  # two processes, not one doing both
    # 200 training images, batches of 32 (drop_last): 6 a epoch, 3 per rank, for 2 epochs.
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 6
    seen = [set(r["batches"]) for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 6
    assert not seen[0] & seen[1]  # data parallel: each rank trained on its own share of every epoch
    assert ranks[0]["initial"] == ranks[1]["initial"]
    assert ranks[0]["final"] == ranks[1]["final"] != ranks[0]["initial"]  # trained, and in sync

    # Rank 0 alone wrote the checkpoint and the metrics, with what both ranks hold.
    ckpt = torch.load(tmp_path / "ckpt" / "mlp" / "last.ckpt", map_location="cpu", weights_only=True)
    saved = {name: ckpt["state_dict"][f"net.{name}"] for name in ranks[0]["parameters"]}
    assert weights_digest(saved) == ranks[0]["final"]
    metrics = json.loads((tmp_path / "ckpt" / "mlp" / "metrics.json").read_text())
    assert sum(map(sum, metrics["confusion_matrix"])) == 80  # the test set counted once over both ranks
    assert output.count("test top-1:") == 1

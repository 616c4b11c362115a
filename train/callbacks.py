"""Callbacks of our own (the rest come from Lightning by config)."""

from __future__ import annotations

import time

import lightning as L


class EpochSpeed(L.Callback):
    """Prints training images/s and epoch time, and logs them: the CPU speed table in docs/training.md."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[1])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        speed = self._images / seconds if seconds > 0 else 0.0
        pl_module.log_dict({"speed/images_per_s": speed, "speed/epoch_s": seconds})
        print(f"\nepoch {trainer.current_epoch}: {self._images} images in {seconds:.1f} s = {speed:.0f} images/s")

"""The LightningModule: loss, metrics, optimiser and schedule around a `train.models` network."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors.torch import load_file
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from train import augment, outlier_exposure, pixmix
from train.feature_margin import FeatureMargin, head, head_input_hook
from train.models import build, network_state, recalibrate_batchnorm
from train.outlier_photos import load as load_photo_bank


def warm_start_state(path: str) -> dict[str, torch.Tensor]:
    """The network weights of a training checkpoint (.ckpt) or of a committed weights file (.safetensors)."""
    if Path(path).suffix == ".safetensors":
        return load_file(path, device="cpu")
    return network_state(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])


class LitClassifier(L.LightningModule):
    def __init__(
        self,
        arch: str = "resnet18",
        arch_kwargs: dict | None = None,
        num_classes: int = 10,
        lr: float = 0.2,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.1,
        pct_start: float = 0.25,
        crop_padding: int = 4,
        hflip: bool = True,
        cutout: int = 0,
        corruption_p: float = 0.0,
        channels_last: bool = True,
        init_weights: str | None = None,
        recalibrate_batchnorm: int = 0,
        distill_weight: float = 0.0,
        distill_temperature: float = 2.0,
        teacher_weights: str | None = None,
        outlier_share: float = 0.0,
        outlier_weight: float = 0.5,
        outlier_photos: str | None = None,
        outlier_feature_weight: float = 0.0,
        pixmix_p: float = 0.0,
        pixmix_fractals: int = 1000,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build(arch, num_classes, **(arch_kwargs or {}))
        self.teacher: torch.nn.Module | None = None
        if init_weights:
            # A warm start (unlike resume: fresh optimiser and schedule).
            self.net.load_state_dict(warm_start_state(init_weights), strict=True)
            if distill_weight:
                # The warm start's own function (or teacher_weights', when a fine-tune goes on from its own
                # checkpoint), frozen: it sees the clean picture, the network the corrupted one.
                self.teacher = build(arch, num_classes, **(arch_kwargs or {}))
                self.teacher.load_state_dict(warm_start_state(teacher_weights or init_weights), strict=True)
                self.teacher.requires_grad_(False).eval()
        elif distill_weight:
            raise ValueError("distill_weight needs init_weights: the teacher is the warm start")
        for network in (self.net, self.teacher):
            if channels_last and network is not None:
                network.to(memory_format=torch.channels_last)
        # Both move with the module to the training device; not persistent, never saved in a checkpoint: the fractals
        # are drawn again from their seed in every run, the photos read again from their bank.
        self.register_buffer("fractals", pixmix.fractals(pixmix_fractals) if pixmix_p else None, persistent=False)
        self.register_buffer("photos", load_photo_bank(outlier_photos) if outlier_photos else None, persistent=False)
        self.feature_margin: FeatureMargin | None = None
        if outlier_feature_weight:
            self.features: dict[str, torch.Tensor] = {}
            head_input_hook(self.net, self.features)
            self.feature_margin = FeatureMargin(num_classes, head(self.net).in_features)
        self.labels: list[str] = [str(i) for i in range(num_classes)]
        metrics = {"num_classes": num_classes}
        self.train_acc = MulticlassAccuracy(**metrics, average="micro")
        self.val_acc = MulticlassAccuracy(**metrics, average="micro")
        self.test_acc = MulticlassAccuracy(**metrics, average="micro")
        self.test_class_acc = MulticlassAccuracy(**metrics, average=None)
        self.test_confusion = MulticlassConfusionMatrix(**metrics)
        self.test_results: dict[str, Any] = {}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None:
            self.net.preprocess.set_stats(datamodule.mean, datamodule.std)
            if self.teacher is not None:
                self.teacher.preprocess.set_stats(datamodule.mean, datamodule.std)
            self.labels = list(datamodule.classes)
            if self.hparams.init_weights and self.hparams.recalibrate_batchnorm:
                # The committed weights have BatchNorm folded into the convolutions (identity statistics): give it
                # the real statistics back, computing the same function, so training can normalise batches again.
                batches = (images for images, _ in datamodule.train_dataloader())
                recalibrate_batchnorm(self.net, itertools.islice(batches, self.hparams.recalibrate_batchnorm))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training batches become (pictures the network sees, labels, the same pictures clean): one crop and flip
        for both, then the corruption, PixMix and the cutout for the network only (the teacher, if any, sees them
        clean)."""
        images, labels = batch
        if not self.trainer.training:
            return images, labels
        if self.hparams.crop_padding:
            images = augment.random_crop(images, self.hparams.crop_padding)
        if self.hparams.hflip:
            images = augment.random_hflip(images)
        clean = images
        if self.hparams.corruption_p:
            images = augment.random_corruption(images, self.hparams.corruption_p)
        if self.fractals is not None:
            images = pixmix.pixmix(images, self.fractals, self.hparams.pixmix_p)
        if self.hparams.cutout:
            images = augment.random_cutout(images, self.hparams.cutout)
        return images, labels, clean

    def _step(self, batch, metric) -> torch.Tensor:
        images, labels = batch[:2]
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        metric.update(logits.float(), labels)
        return loss

    def _training_loss(self, batch) -> torch.Tensor:
        """Cross-entropy on the labels; with `distill_weight`, part of it replaced by matching the teacher's answer
        on the clean picture (holds clean accuracy while the network learns the corrupted ones); with
        `outlier_share`, generated outliers (and real photos, with `outlier_photos`) appended to the batch with a
        uniform target (outlier exposure), and with `outlier_feature_weight` their embeddings pushed away from the
        classes'."""
        images, labels, clean = batch
        count = round(self.hparams.outlier_share * len(images))
        extra = outlier_exposure.outlier_batch(clean, count, photos=self.photos) if count else images[:0]
        logits = self(torch.cat([images, extra]))
        logits, outlier_logits = logits[: len(images)], logits[len(images) :]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        self.train_acc.update(logits.float(), labels)
        if self.teacher is not None:
            self.teacher.eval()  # Lightning sets every submodule to training mode each epoch
            with torch.no_grad():
                target = F.softmax(self.teacher(clean).float() / self.hparams.distill_temperature, dim=1)
            temperature, weight = self.hparams.distill_temperature, self.hparams.distill_weight
            student = F.log_softmax(logits.float() / temperature, dim=1)
            distill = F.kl_div(student, target, reduction="batchmean") * temperature**2
            self.log("train/distill", distill)
            loss = (1 - weight) * loss + weight * distill
        if count:
            uniform = -F.log_softmax(outlier_logits.float(), dim=1).mean(dim=1).mean()
            self.log("train/outlier", uniform)
            loss = loss + self.hparams.outlier_weight * uniform
        if count and self.feature_margin is not None:
            embeddings = self.features["embedding"]
            margin = self.feature_margin.loss(embeddings[: len(images)], labels, embeddings[len(images) :])
            self.log("train/outlier_features", margin)
            loss = loss + self.hparams.outlier_feature_weight * margin
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._training_loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val/loss", self._step(batch, self.val_acc), prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images).float()
        self.log("test/loss", F.cross_entropy(logits, labels))
        self.test_acc.update(logits, labels)
        self.test_class_acc.update(logits, labels)
        self.test_confusion.update(logits, labels)
        self.log("test/acc", self.test_acc)

    def on_test_epoch_end(self) -> None:
        per_class = self.test_class_acc.compute().tolist()
        for label, acc in zip(self.labels, per_class, strict=True):
            self.log(f"test/acc_{label}", acc)
        self.test_results = {
            "test_top1": float(self.test_acc.compute()),
            "per_class_accuracy": dict(zip(self.labels, per_class, strict=True)),
            "confusion_matrix": self.test_confusion.compute().tolist(),
        }
        self.test_class_acc.reset()
        self.test_confusion.reset()

    def configure_optimizers(self):
        # No weight decay on biases and BatchNorm weights: decaying them only hurts.
        decay, no_decay = [], []
        for param in self.parameters():
            if param.requires_grad:
                (decay if param.ndim > 1 else no_decay).append(param)
        optimizer = torch.optim.SGD(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
            momentum=self.hparams.momentum,
            nesterov=self.hparams.nesterov,
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams.lr,
            total_steps=int(self.trainer.estimated_stepping_batches),
            pct_start=self.hparams.pct_start,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["labels"] = list(self.labels)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.labels = list(checkpoint.get("labels", self.labels))

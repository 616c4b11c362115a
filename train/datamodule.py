"""CIFAR-10 from data/processed: a seeded train/val split of the training set; test = the 10,000 test images.

Optionally the training split also gets the pictures people corrected (`feedback_dir`: the image folder that
`python -m monitor harvest` writes, <label>/<request_id>.png); validation and test never do, so their numbers stay
comparable between runs with and without it."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from train.prepare import IMAGE_SHAPE, DataError


class ArrayDataset(Dataset):
    """Indexed by a list of indices (one fancy-index per batch instead of per-image indexing and collation)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.ascontiguousarray(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def load_image_folder(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """<class>/<name>.png (32x32 RGB, as harvested) -> uint8 [N, 32, 32, 3] and int64 labels, in sorted order."""
    from PIL import Image

    if not folder.is_dir():
        raise DataError(f"{folder} is missing: run `dvc pull {folder}.dvc` or `python -m monitor harvest`")
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise DataError(f"{folder}: folders {unknown} are not classes of this dataset ({classes})")
    images, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.png")) if (folder / name).is_dir() else []:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
            if array.shape != IMAGE_SHAPE:
                raise DataError(f"{path} is {array.shape[1]}x{array.shape[0]}, expected 32x32")
            images.append(array)
            labels.append(index)
    if not images:
        return np.empty((0, *IMAGE_SHAPE), dtype=np.uint8), np.empty(0, dtype=np.int64)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def validation_split(count: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) indices of the training set, each sorted: the one seeded split training and export
    (which fits calibration and the outlier threshold on the validation part) share."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[:val_size]), np.sort(order[val_size:])


class CIFAR10DataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str,
        batch_size: int = 256,
        eval_batch_size: int = 500,
        val_size: int = 5000,
        split_seed: int = 0,
        num_workers: int = 0,
        feedback_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        meta_path = self.data_dir / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path} is missing: run `dvc pull` and `python -m train.prepare` (or `dvc repro`)")
        meta = json.loads(meta_path.read_text())
        self.classes: list[str] = meta["classes"]
        self.mean: list[float] = meta["mean"]
        self.std: list[float] = meta["std"]
        self.datasets: dict[str, ArrayDataset] = {}

    def _load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.load(self.data_dir / f"{split}_images.npy"),
            np.load(self.data_dir / f"{split}_labels.npy"),
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and "train" not in self.datasets:
            images, labels = self._load("train")
            val_idx, train_idx = validation_split(len(labels), self.hparams.val_size, self.hparams.split_seed)
            train_images, train_labels = images[train_idx], labels[train_idx]
            if self.hparams.feedback_dir:
                extra_images, extra_labels = load_image_folder(Path(self.hparams.feedback_dir), self.classes)
                train_images = np.concatenate([train_images, extra_images])
                train_labels = np.concatenate([train_labels, extra_labels])
            self.datasets["train"] = ArrayDataset(train_images, train_labels)
            self.datasets["val"] = ArrayDataset(images[val_idx], labels[val_idx])
        if stage in ("test", None) and "test" not in self.datasets:
            self.datasets["test"] = ArrayDataset(*self._load("test"))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        base = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        size = self.hparams.batch_size if shuffle else self.hparams.eval_batch_size
        batches = BatchSampler(base, size, drop_last=shuffle)
        return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

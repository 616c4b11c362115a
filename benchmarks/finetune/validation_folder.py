"""Write the training run's validation pictures as a prepared "test" folder, so the robustness and outlier
benchmarks (`--data`) measure fine-tune candidates on validation data and the test set stays for the final report.

    python benchmarks/finetune/validation_folder.py OUT [--val-size 2000] [--split-seed 0]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from contract.paths import PROCESSED_DIR
from train.datamodule import validation_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--val-size", type=int, default=2000, help="data.val_size of the runs compared")
    parser.add_argument("--split-seed", type=int, default=0, help="data.split_seed of the runs compared")
    args = parser.parse_args()
    images, labels = np.load(PROCESSED_DIR / "train_images.npy"), np.load(PROCESSED_DIR / "train_labels.npy")
    val_idx, _ = validation_split(len(labels), args.val_size, args.split_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "test_images.npy", images[val_idx])
    np.save(args.out / "test_labels.npy", labels[val_idx])
    shutil.copy(PROCESSED_DIR / "meta.json", args.out / "meta.json")
    print(f"{len(val_idx)} validation pictures -> {args.out}")


if __name__ == "__main__":
    main()

"""Decode the raw CIFAR-10 tarballs once into uint8 arrays: data/raw/*.tar.gz -> data/processed/.

Deterministic: members are sorted by class and file name and the arrays are written with `np.save`, so the same raw
data always gives the same bytes. Output per split: `{split}_images.npy` (uint8 [N, 32, 32, 3], RGB) and
`{split}_labels.npy` (int64 [N]); plus `meta.json` with the class names (index order), the per-channel mean/std of
the training images (the model's normalisation) and the md5 of the raw files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from contract.paths import PROCESSED_DIR, RAW_DIR

SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)


class DataError(RuntimeError):
    """The raw data is missing or unusable; the message says what to do."""


def tarball_path(raw_dir: Path, split: str) -> Path:
    return raw_dir / f"cifar10-{split}.tar.gz"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every `split/<class>/<name>.jpg` member; a bad member is an error naming it, never a silent skip."""
    if not path.is_file():
        raise DataError(f"{path} is missing: run `dvc pull` (or `make data`) to fetch the raw CIFAR-10")
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            entries = []
            for member in members:
                parts = Path(member.name).parts
                if len(parts) != 3 or parts[0] != split:
                    raise DataError(f"{path}: unexpected member {member.name!r} (want {split}/<class>/<file>)")
                entries.append((parts[1], parts[2], member))
            entries.sort(key=lambda e: (e[0], e[1]))
            classes = sorted({cls for cls, _, _ in entries})
            class_index = {name: i for i, name in enumerate(classes)}
            images = np.empty((len(entries), *IMAGE_SHAPE), dtype=np.uint8)
            labels = np.empty(len(entries), dtype=np.int64)
            for i, (cls, _, member) in enumerate(entries):
                images[i] = _decode(tar.extractfile(member).read(), f"{path.name}:{member.name}")
                labels[i] = class_index[cls]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path} is corrupt ({exc}): run `dvc pull` again") from exc
    if not entries:
        raise DataError(f"{path} holds no images")
    return images, labels, classes


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            array = np.asarray(img.convert("RGB"))
    except Exception as exc:
        raise DataError(f"cannot decode {name}: {exc}") from exc
    if array.shape != IMAGE_SHAPE:
        raise DataError(f"{name} is {array.shape[1]}x{array.shape[0]}, expected 32x32")
    return array


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return [round(v, 6) for v in pixels.mean(0)], [round(v, 6) for v in pixels.std(0)]


def prepare(raw_dir: Path = RAW_DIR, out_dir: Path = PROCESSED_DIR) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    meta: dict = {"raw_md5": {}}
    for split in SPLITS:
        path = tarball_path(raw_dir, split)
        images, labels, classes = read_split(path, split)
        if "classes" in meta and classes != meta["classes"]:
            raise DataError(f"{path}: classes {classes} differ from the training classes {meta['classes']}")
        meta["classes"] = classes
        meta["raw_md5"][path.name] = _md5(path)
        meta[f"{split}_size"] = len(labels)
        if split == "train":
            meta["mean"], meta["std"] = channel_stats(images)
        np.save(out_dir / f"{split}_images.npy", images)
        np.save(out_dir / f"{split}_labels.npy", labels)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help="folder with the two tarballs")
    parser.add_argument("--out", type=Path, default=PROCESSED_DIR, help="output folder")
    args = parser.parse_args(argv)
    try:
        meta = prepare(args.raw, args.out)
    except DataError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 1
    print(f"prepared {meta['train_size']} train + {meta['test_size']} test images into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

import hashlib
import json

import numpy as np
import pytest

from tests.synthetic import CLASSES, write_split
from train.prepare import DataError, main, prepare


def digest(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_prepare_writes_arrays_labels_and_meta(processed_dir):
    images = np.load(processed_dir / "train_images.npy")
    labels = np.load(processed_dir / "train_labels.npy")
    meta = json.loads((processed_dir / "meta.json").read_text())
    assert images.dtype == np.uint8
    assert images.shape == (240, 32, 32, 3)
    assert labels.tolist() == [i for i in range(10) for _ in range(24)]
    assert meta["classes"] == CLASSES
    assert meta["test_size"] == 80
    assert all(0 < m < 1 for m in meta["mean"])
    assert all(0 < s < 1 for s in meta["std"])


def test_prepare_is_deterministic(raw_dir, tmp_path):
    prepare(raw_dir, tmp_path / "a")
    prepare(raw_dir, tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_missing_raw_data_says_dvc_pull(tmp_path, capsys):
    assert main(["--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert "dvc pull" in err
    assert len(err.splitlines()) == 1


def test_corrupt_member_is_named(raw_dir, tmp_path):
    bad = tmp_path / "raw"
    bad.mkdir()
    (bad / "cifar10-test.tar.gz").write_bytes((raw_dir / "cifar10-test.tar.gz").read_bytes())
    write_split(bad / "cifar10-train.tar.gz", "train", 2, seed=0, corrupt="train/cat/0001.jpg")
    with pytest.raises(DataError, match=r"train/cat/0001\.jpg"):
        prepare(bad, tmp_path / "out")


def test_truncated_tarball_is_an_error(raw_dir, tmp_path):
    bad = tmp_path / "raw"
    bad.mkdir()
    data = (raw_dir / "cifar10-train.tar.gz").read_bytes()
    (bad / "cifar10-train.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt"):
        prepare(bad, tmp_path / "out")

"""Harvest: consented, labelled thumbnails -> <label>/<request_id>.png, each request once (the last feedback wins),
and the training option that adds them to the training split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from contract import prediction_log as plog
from monitor.__main__ import EXIT_OK, main
from tests.monitor.conftest import pictures, thumbnail, time_at, write_log
from tests.synthetic import CLASSES
from tests.train.conftest import fast_overrides, task_config


def feedback(request_id: str, label: str, image: np.ndarray, *, share: bool = True, at: float = 0) -> dict:
    return plog.build_feedback(
        request_id=request_id, label=label, predicted="cat", thumbnail=thumbnail(image), share_thumbnail=share,
        time=time_at(at),
    )  # fmt: skip


@pytest.fixture
def harvested(tmp_path, reference_file):
    images, _ = pictures(6, seed=5)
    lines = [
        feedback("r1", "dog", images[0], at=1),
        feedback("r1", "horse", images[0], at=5),  # changed their mind: the last one wins
        feedback("r2", "cat", images[1], at=2),  # "right" answers are training data too
        feedback("r3", "ship", images[2], share=False, at=3),  # no consent
        feedback("r4", plog.NONE_OF_THESE, images[3], at=4),
        feedback("r5", "truck", images[4], at=6) | {"thumbnail": "bm90IGEgcG5n"},  # not a PNG
        feedback("r6", "frog", images[5], at=7),
    ]
    log = write_log(tmp_path / "feedback.jsonl", lines, ["garbage\n"])
    out = tmp_path / "feedback"
    assert main(["harvest", str(log), "--out", str(out), "--reference", str(reference_file)]) == EXIT_OK
    return out, log, images


def test_harvest_writes_each_consented_request_once(harvested):
    out, _, images = harvested
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == ["cat/r2.png", "frog/r6.png", "horse/r1.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "horse/r1.png")), images[0])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"] == 3
    assert manifest["per_label"] == {"cat": 1, "frog": 1, "horse": 1}
    assert manifest["items"]["r1"]["label"] == "horse"
    assert manifest["items"]["r1"]["time"] == time_at(5)


def test_a_later_harvest_moves_a_changed_answer_and_keeps_the_rest(harvested, tmp_path, reference_file):
    out, _, images = harvested
    later = write_log(tmp_path / "later.jsonl", [feedback("r1", "deer", images[0], at=10)])
    assert main(["harvest", str(later), "--out", str(out), "--reference", str(reference_file)]) == EXIT_OK
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == ["cat/r2.png", "deer/r1.png", "frog/r6.png"]  # the rotated-away log's pictures stay
    stale = write_log(tmp_path / "stale.jsonl", [feedback("r1", "dog", images[0], at=0)])
    assert main(["harvest", str(stale), "--out", str(out), "--reference", str(reference_file)]) == EXIT_OK
    assert (out / "deer/r1.png").is_file()  # an older answer never replaces a newer one


def test_training_uses_harvested_images_for_training_only(harvested, processed_dir, tmp_path):
    from train.datamodule import CIFAR10DataModule
    from train.train import train

    out, _, _ = harvested
    plain = CIFAR10DataModule(str(processed_dir), val_size=40)
    plain.setup("fit")
    with_feedback = CIFAR10DataModule(str(processed_dir), val_size=40, feedback_dir=str(out))
    with_feedback.setup()
    assert len(with_feedback.datasets["train"]) == len(plain.datasets["train"]) + 3
    assert len(with_feedback.datasets["val"]) == len(plain.datasets["val"])
    assert len(with_feedback.datasets["test"]) == len(CLASSES) * 8
    images, labels = with_feedback.datasets["train"][
        list(range(len(plain.datasets["train"]), len(with_feedback.datasets["train"])))
    ]
    assert sorted(CLASSES[i] for i in labels.tolist()) == ["cat", "frog", "horse"]
    assert images.shape[1:] == (32, 32, 3)
    # a short real run with the option set
    cfg = task_config([*fast_overrides(processed_dir, tmp_path), "model=mlp", f"data.feedback_dir={out}"])
    assert cfg.data.feedback_dir == str(out)
    results = train(cfg)
    assert np.isfinite(results["val_top1"])


def test_training_refuses_a_folder_that_is_not_this_dataset(tmp_path, processed_dir):
    from train.datamodule import CIFAR10DataModule
    from train.prepare import DataError

    (tmp_path / "feedback" / "spaceship").mkdir(parents=True)
    module = CIFAR10DataModule(str(processed_dir), val_size=40, feedback_dir=str(tmp_path / "feedback"))
    with pytest.raises(DataError, match="spaceship"):
        module.setup("fit")
    module = CIFAR10DataModule(str(processed_dir), val_size=40, feedback_dir=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="missing"):
        module.setup("fit")

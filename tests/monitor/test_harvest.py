"""Harvest: only corrections that check out against the answers in the log (answered, same answer, the picture the
model saw, the token re-checked with the key, the first per answer) go to a review folder; approve moves what a
person kept into the dataset; the training option adds the dataset to the training split. The flood and the overwrite
of the issue "Corrections nobody can forge", replayed through the real service, harvest nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from contract import feedback_token as ft
from contract import input_summary
from contract import prediction_log as plog
from monitor.__main__ import EXIT_OK, EXIT_USAGE, main
from serve.app import create_app
from serve.settings import Settings
from tests.monitor.conftest import pictures, thumbnail, time_at, write_log
from tests.serve.test_serve_feedback import png_base64
from tests.serve.test_serve_feedback_tokens import png
from tests.serve.tiny_model import build_model
from tests.synthetic import CLASSES
from tests.train.conftest import fast_overrides, task_config

KEY = b"k" * 32
VERSION = "v1"


def answer_line(request_id: str, image: np.ndarray, label: str = "cat", at: float = 0) -> dict:
    summary = input_summary.summarize_input(image[None])[0]
    return plog.build_prediction(
        request_id=request_id, model_name="synthetic", model_version=VERSION, label=label, score=0.9,
        top_k=[{"label": label, "score": 0.9}], latency_ms=3.0, upload={"format": "PNG"}, summary=summary,
        input_digest=ft.input_digest(image), time=time_at(at),
    )  # fmt: skip


def feedback(request_id: str, label: str, image: np.ndarray, *, answered: np.ndarray | None = None,
             predicted: str = "cat", share: bool = True, at: float = 1, key: bytes = KEY) -> dict:  # fmt: skip
    """A feedback line as the service writes it: the token of the answer (of `answered`, the picture the model saw,
    by default `image`), with `image` as the shared thumbnail."""
    digest = ft.input_digest(image if answered is None else answered)
    token = ft.mint(key, ft.Answer(request_id, VERSION, predicted, digest, issued=0))
    return plog.build_feedback(
        request_id=request_id, label=label, predicted=predicted, thumbnail=thumbnail(image), share_thumbnail=share,
        model_version=VERSION, input_digest=digest, token=token, time=time_at(at),
    )  # fmt: skip


def harvest(tmp_path, reference_file, *logs, env_key: bytes | None = None, monkeypatch=None) -> tuple[int, dict]:
    review, out = tmp_path / "review", tmp_path / "dataset"
    args = ["harvest", *map(str, logs), "--review", str(review), "--out", str(out), "--reference", str(reference_file)]
    if env_key is not None:
        monkeypatch.setenv("FEEDBACK_KEY", env_key.decode())
    code = main(args)
    summary = json.loads((review / "summary.json").read_text()) if (review / "summary.json").is_file() else {}
    return code, summary


def approve(tmp_path) -> int:
    return main(["approve", "--review", str(tmp_path / "review"), "--out", str(tmp_path / "dataset")])


@pytest.fixture
def images():
    return pictures(8, seed=5)[0]


@pytest.fixture
def harvested(tmp_path, reference_file, images):
    lines = [answer_line(f"r{i}", images[i], at=i) for i in range(7)] + [
        feedback("r1", "dog", images[1], at=10),
        feedback("r1", "horse", images[1], at=15),  # a second correction of the same answer: the first one stands
        feedback("r2", "cat", images[2], at=11),  # "right" answers are training data too
        feedback("r3", "ship", images[3], share=False, at=12),  # no consent
        feedback("r4", plog.NONE_OF_THESE, images[4], at=13),
        feedback("r5", "truck", images[5], at=16) | {"thumbnail": "bm90IGEgcG5n"},  # not a PNG
        feedback("r6", "frog", images[6], at=17),
        feedback("never", "frog", images[7], at=18),  # no answer with that id in the logs
    ]
    log = write_log(tmp_path / "log.jsonl", lines, ["garbage\n"])
    code, summary = harvest(tmp_path, reference_file, log)
    assert code == EXIT_OK
    return tmp_path / "review", summary


def test_harvest_keeps_the_first_consented_correction_of_each_answer_for_review(harvested, images):
    review, summary = harvested
    files = sorted(str(p.relative_to(review)) for p in review.rglob("*.png"))
    assert files == ["cat/r2.png", "dog/r1.png", "frog/r6.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(review / "dog/r1.png")), images[1])
    assert summary["kept"] == 3
    assert summary["rejected"] == {"never_answered": 1, "bad_thumbnail": 1, "repeated": 1, "none_of_these": 1,
                                   "no_consent": 1}  # fmt: skip
    assert summary["skipped_lines"] == {"corrupt": 1}
    assert "| dog | 1 |" in (review / "summary.md").read_text()


def test_approve_moves_what_the_reviewer_kept_into_the_dataset(harvested, tmp_path, reference_file, images):
    review, _ = harvested
    (review / "frog/r6.png").unlink()  # the reviewer disagreed
    assert approve(tmp_path) == EXIT_OK
    dataset = tmp_path / "dataset"
    assert sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*.png")) == ["cat/r2.png", "dog/r1.png"]
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["images"] == 2
    assert manifest["per_label"] == {"cat": 1, "dog": 1}
    assert manifest["items"]["r1"]["time"] == time_at(10)
    assert not review.exists()
    assert approve(tmp_path) == EXIT_USAGE  # nothing left to approve
    # A later harvest never replaces what is in the dataset, and picks up what is new.
    later = write_log(tmp_path / "later.jsonl", [
        answer_line("r1", images[1]), feedback("r1", "deer", images[1], at=1),
        answer_line("r7", images[7]), feedback("r7", "bird", images[7], at=2)])  # fmt: skip
    code, summary = harvest(tmp_path, reference_file, later)
    assert code == EXIT_OK
    assert summary["rejected"] == {"already_in_dataset": 1}
    assert list(summary["items"]) == ["r7"]


def test_an_unapproved_review_folder_is_not_overwritten(harvested, tmp_path, reference_file):
    code, _ = harvest(tmp_path, reference_file, tmp_path / "log.jsonl")
    assert code == EXIT_USAGE


def test_feedback_that_is_not_about_the_answer_given_is_rejected(tmp_path, reference_file, images, monkeypatch):
    lines = [answer_line(f"a{i}", images[i], label="cat") for i in range(4)] + [
        feedback("a0", "dog", images[0], predicted="truck"),  # the answer was cat
        feedback("a1", "dog", images[7], answered=images[1]),  # a thumbnail that is not what the model saw
        feedback("a2", "dog", images[2], key=b"x" * 32),  # a token the service never made
        feedback("a3", "dog", images[3]),
    ]
    log = write_log(tmp_path / "log.jsonl", lines)
    code, summary = harvest(tmp_path, reference_file, log, env_key=KEY, monkeypatch=monkeypatch)
    assert code == EXIT_OK
    assert summary["tokens_rechecked"] is True
    assert summary["rejected"] == {"not_the_answer": 1, "thumbnail_mismatch": 1, "bad_token": 1}
    assert list(summary["items"]) == ["a3"]


def test_a_forged_flood_and_an_overwrite_through_the_service_harvest_nothing_forged(tmp_path, reference_file):
    """2,000 forged corrections from one client, then 10 corrections carrying the ids of 10 genuine ones: the
    service refuses them all (no token), and the genuine ten are what harvest keeps."""
    log = tmp_path / "predictions.jsonl"
    model_path = build_model(tmp_path / "tiny.onnx")
    settings = Settings(model_path=model_path, ort_threads=1, log_level="warning", prediction_log=str(log),
                        feedback_keys=(KEY,), feedback_burst=100_000)  # fmt: skip
    rng = np.random.default_rng(1)
    genuine = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(10)]
    truck = png_base64(np.full((32, 32, 3), 90, dtype=np.uint8))
    headers = {"Content-Type": "application/json"}
    with TestClient(create_app(settings)) as client:
        for i, picture in enumerate(genuine):
            answer = client.post("/classify", content=png(picture), headers={"X-Request-ID": f"g{i}"}).json()
            body = {"request_id": f"g{i}", "token": answer["feedback_token"], "label": "dog", "share_thumbnail": True,
                    "thumbnail": png_base64(picture)}  # fmt: skip
            assert client.post("/feedback", content=json.dumps(body), headers=headers).status_code == 202
        forged = [{"request_id": f"forged-{i}", "label": "cat", "predicted": "truck", "share_thumbnail": True,
                   "thumbnail": truck} for i in range(2000)]  # fmt: skip
        forged += [{"request_id": f"g{i}", "label": "cat", "share_thumbnail": True, "thumbnail": truck,
                    "token": "forged.token"} for i in range(10)]  # fmt: skip
        statuses = {client.post("/feedback", content=json.dumps(b), headers=headers).status_code for b in forged}
        assert statuses <= {400, 403}
    code, summary = harvest(tmp_path, reference_file, log)
    assert code == EXIT_OK
    assert summary["kept"] == 10
    assert summary["per_label"] == {"dog": 10}


def test_training_uses_harvested_images_for_training_only(harvested, processed_dir, tmp_path):
    from train.datamodule import CIFAR10DataModule
    from train.train import train

    review, _ = harvested
    assert approve(review.parent) == EXIT_OK
    out = review.parent / "dataset"
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
    assert sorted(CLASSES[i] for i in labels.tolist()) == ["cat", "dog", "frog"]
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

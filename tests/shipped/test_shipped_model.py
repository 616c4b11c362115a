"""The model in shipped/ is the one its card describes: accuracy recomputed on the real test set with onnxruntime
alone, its origin visible through /model, and real photos (not 32x32) classified through /classify."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from starlette.testclient import TestClient

from serve.app import create_app
from serve.settings import DEFAULT_MODEL_PATH, Settings
from tests.photos import CIFAR_TEST_TAR, ROOT, cifar_test_jpeg, landscape_photo

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

CARD = DEFAULT_MODEL_PATH.parent / "model-card.json"
# The release floor for the shipped int8 model (docs/training.md, "The shipped model"): nothing below it ships.
MIN_TOP1 = 0.90

# Runs in a fresh interpreter where importing torch fails: the number comes from onnxruntime, numpy and Pillow only
# (and the stdlib-only contract for the file's names, tests/photos.py for the decoding). The labels come from the
# tarball's folder names, mapped through the model's own label list.
RECOMPUTE = """
import json, sys
from pathlib import Path
sys.modules["torch"] = None
import numpy as np, onnxruntime as ort
from contract.cpu import add_int8_entries
from contract.model_file import INPUT_NAME, LABELS, OUTPUT_NAME
from tests.photos import cifar_test_set
model, tarball = sys.argv[1], sys.argv[2]
options = ort.SessionOptions()
add_int8_entries(options)  # int8 files computed exactly on this CPU (contract/cpu.py)
sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
labels = json.loads(sess.get_modelmeta().custom_metadata_map[LABELS])
images, truth = cifar_test_set(labels, Path(tarball))
predicted = np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: images[i:i + 500]})[0].argmax(1)
                            for i in range(0, len(images), 500)])
print(json.dumps({"images": len(images), "top1": float((predicted == truth).mean())}))
"""


@pytest.fixture(scope="module")
def card() -> dict:
    assert DEFAULT_MODEL_PATH.is_file(), f"{DEFAULT_MODEL_PATH} is missing: the repository ships it"
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(create_app(Settings())) as client:
        yield client


def test_test_top1_recomputed_without_torch_matches_the_card(card):
    assert CIFAR_TEST_TAR.is_file(), f"{CIFAR_TEST_TAR} is missing: run `make data` (dvc pull)"
    done = subprocess.run(
        [sys.executable, "-c", RECOMPUTE, str(DEFAULT_MODEL_PATH), str(CIFAR_TEST_TAR)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout)
    claimed = card["quantization"]["int8_top1"]
    print(f"shipped int8 test top-1: measured {measured['top1']:.2%}, card {claimed:.2%}")
    assert measured["images"] == 10_000
    assert abs(measured["top1"] - claimed) <= 0.001
    assert measured["top1"] >= MIN_TOP1


def test_model_endpoint_names_the_origin(client, card):
    model = client.get("/model").json()
    assert model["version"] == card["version"]
    tracked = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]["md5"]
    assert model["data_md5"] == card["data_md5"] == tracked  # the DVC hash of data/raw it was trained on
    assert model["git_sha"] == card["git_sha"] != "unknown"
    assert model["config"]["model"]["arch"] == "resnet18"
    assert model["card"]["quantization"]["int8_top1"] == card["quantization"]["int8_top1"]


@pytest.mark.parametrize("member", ["test/cat/0001.jpg", "test/ship/0000.jpg", "test/horse/0002.jpg"])
def test_a_640x480_photo_gets_the_same_answer_as_its_thumbnail(client, member):
    thumbnail = client.post("/classify", content=cifar_test_jpeg(member), headers={"Content-Type": "image/jpeg"})
    photo = client.post("/classify", content=landscape_photo(cifar_test_jpeg(member)),
                        headers={"Content-Type": "image/jpeg"})  # fmt: skip
    assert thumbnail.status_code == 200
    assert photo.status_code == 200, photo.text
    assert photo.json()["label"] == thumbnail.json()["label"]

"""OpenVINO as the engine (ENGINE=openvino) passes the int8 export's accuracy gate on the shipped model: top-1 on the
full test set within 0.5 pp of the card's fp32 top-1, through the service's own load_model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.quantize import MAX_DROP  # the int8 gate's
from serve.model import load_model
from serve.settings import DEFAULT_MODEL_PATH
from tests.photos import CIFAR_TEST_TAR, cifar_test_set

pytest.importorskip("openvino", reason="OpenVINO is an option (requirements-serve-openvino.txt)")
pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_openvino_top1_on_the_full_test_set_is_within_the_gate_of_fp32():
    card = json.loads((DEFAULT_MODEL_PATH.parent / "model-card.json").read_text())
    model = load_model(DEFAULT_MODEL_PATH, engine="openvino")
    assert CIFAR_TEST_TAR.is_file(), f"{CIFAR_TEST_TAR} is missing: run `make data` (dvc pull)"
    images, labels = cifar_test_set(model.labels)
    logits = np.concatenate([model.run(images[i : i + 250]) for i in range(0, len(images), 250)])
    top1 = float((logits.argmax(1) == labels).mean())
    fp32 = card["quantization"]["fp32_top1"]
    print(f"OpenVINO int8 test top-1 {top1:.2%}, card fp32 {fp32:.2%}")
    assert len(labels) == 10_000
    assert fp32 - top1 <= MAX_DROP

"""The whole loop on real data: CIFAR-10 test JPEGs through the real app with the shipped model and its prediction log,
then `python -m monitor drift` on that log. Clean traffic is not flagged; darkened, grayscale and blurred traffic is."""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageFilter, ImageOps
from starlette.testclient import TestClient

from monitor.__main__ import EXIT_DRIFT, EXIT_OK, main
from serve.app import create_app
from serve.settings import Settings
from tests.photos import CIFAR_TEST_TAR

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

WINDOW = 400  # the window the detection benchmark (benchmarks/drift-detection.md) is judged at


def _jpeg(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.convert("RGB").save(out, "JPEG", quality=75)  # the quality CIFAR-10 is stored at
    return out.getvalue()


SHIFTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "darkened": lambda p: p.point(lambda v: v // 2),
    "grayscale": ImageOps.grayscale,
    "blurred": lambda p: p.filter(ImageFilter.GaussianBlur(1.5)),
}


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    assert CIFAR_TEST_TAR.is_file(), f"{CIFAR_TEST_TAR} is missing: run `make data`"
    with tarfile.open(CIFAR_TEST_TAR) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        chosen = random.Random(7).sample(members, WINDOW)
        return [Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB") for m in chosen]


def _served_log(tmp_path: Path, bodies: list[bytes]) -> Path:
    log = tmp_path / "predictions.jsonl"
    with TestClient(create_app(Settings(prediction_log=str(log)))) as client:
        for body in bodies:
            assert client.post("/classify", content=body, headers={"Content-Type": "image/jpeg"}).status_code == 200
    return log  # the app's shutdown flushes the log writer


def _drift(tmp_path: Path, log: Path) -> tuple[int, dict]:
    code = main(["drift", str(log), "--out", str(tmp_path / "report"), "--fail-on-drift"])
    return code, json.loads((tmp_path / "report" / "drift.json").read_text())


def test_clean_traffic_through_the_service_is_not_flagged(tmp_path, pictures):
    log = _served_log(tmp_path, [_jpeg(p) for p in pictures])
    lines = log.read_text().splitlines()
    assert len(lines) == WINDOW
    code, report = _drift(tmp_path, log)
    assert report["drift"] is False, report
    assert code == EXIT_OK


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_shifted_traffic_through_the_service_is_flagged(tmp_path, pictures, shift):
    log = _served_log(tmp_path, [_jpeg(SHIFTS[shift](p)) for p in pictures])
    code, report = _drift(tmp_path, log)
    assert report["drift"] is True, report
    assert code == EXIT_DRIFT

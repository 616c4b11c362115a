"""`python -m monitor compare`: champion against shadow challenger, on hand-made lines (every verdict of the gate)
and on real traffic: CIFAR-10 test JPEGs through the real service with the shipped model as champion and the previous
release (from git) as challenger, each answer confirmed or corrected with its true label."""

from __future__ import annotations

import io
import json
import random
import subprocess
import tarfile

import pytest
from PIL import Image
from starlette.testclient import TestClient

from contract import input_summary
from contract import prediction_log as plog
from contract.paths import PROJECT_ROOT, SHIPPED_DIR
from monitor import compare
from monitor.__main__ import main
from serve.app import create_app
from serve.settings import Settings
from tests.photos import CIFAR_TEST_TAR

PREVIOUS_RELEASE = "d12f60b"  # the commit that shipped 662bcc9c2096 (shipped/registry.json's history)


def prediction(request_id: str, label: str, shadow_label: str | None, *, outlier=False, shadow_outlier=False) -> str:
    shadow = {"version": "chall", "label": shadow_label, "score": 0.8, "outlier": shadow_outlier, "outlier_score": 2.0,
              "inference_ms": 7.0}  # fmt: skip
    line = plog.build_prediction(
        request_id=request_id, model_name="m", model_version="champ", label=label, score=0.9,
        top_k=[{"label": label, "score": 0.9}], latency_ms=5.0, upload={},
        summary=dict.fromkeys(input_summary.FEATURES, 0.5),
        outlier=outlier, outlier_score=1.0,
        shadow=None if shadow_label is None else shadow,
    )  # fmt: skip
    return plog.dumps(line)


def feedback(request_id: str, label: str, predicted: str) -> str:
    return plog.dumps(plog.build_feedback(request_id=request_id, label=label, predicted=predicted))


def run(tmp_path, lines: list[str]) -> tuple[int, dict]:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(line + "\n" for line in lines))
    code = main(["compare", str(log), "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert "<table>" in (tmp_path / "out" / "report.html").read_text()
    return code, result


def traffic(challenger_right: int, champion_right: int, total: int = 40) -> list[str]:
    """`total` shadowed cat pictures, all confirmed or corrected: each model right on its first N."""
    lines = []
    for i in range(total):
        champion = "cat" if i < champion_right else "dog"
        challenger = "cat" if i < challenger_right else "dog"
        lines += [prediction(f"r{i}", champion, challenger), feedback(f"r{i}", "cat", champion)]
    return lines


def test_an_equal_or_better_challenger_passes(tmp_path):
    code, result = run(tmp_path, traffic(challenger_right=36, champion_right=35))
    assert code == 0
    assert result["verdict"] == compare.PASS
    assert result["champion"]["accuracy"] == 35 / 40
    assert result["challenger"]["accuracy"] == 36 / 40
    assert result["agreement"] == 39 / 40
    assert result["challenger"]["inference_ms"] == {"p50": 7.0, "p95": 7.0}


def test_a_less_accurate_challenger_fails(tmp_path):
    code, result = run(tmp_path, traffic(challenger_right=30, champion_right=35))
    assert code == 1
    assert "less accurate" in result["reason"]


def test_a_challenger_flagging_more_outliers_fails(tmp_path):
    lines = [prediction(f"r{i}", "cat", "cat", shadow_outlier=i < 10) for i in range(40)]
    code, result = run(tmp_path, lines)
    assert code == 1
    assert result["challenger"]["outlier_share"] == 0.25
    assert "outliers" in result["reason"]


def test_too_little_feedback_cannot_be_judged_and_no_shadow_is_a_usage_error(tmp_path):
    code, result = run(tmp_path, traffic(challenger_right=5, champion_right=5, total=10))
    assert (code, result["verdict"]) == (3, compare.TOO_LITTLE_FEEDBACK)
    code, result = run(tmp_path, [prediction("r", "cat", None)])
    assert (code, result["verdict"]) == (2, compare.NO_SHADOW)


def test_none_of_these_is_judged_by_the_outlier_flag(tmp_path):
    lines = [prediction("a", "cat", "cat", outlier=True), feedback("a", plog.NONE_OF_THESE, "cat")]
    _, result = run(tmp_path, lines)
    assert result["champion"]["none_of_these_caught"] == 1.0
    assert result["challenger"]["none_of_these_caught"] == 0.0
    assert result["champion"]["judged"] == 0  # no class to be right about


@pytest.mark.realdata
@pytest.mark.slow
def test_compare_on_real_traffic_with_feedback(tmp_path):
    assert CIFAR_TEST_TAR.is_file(), f"{CIFAR_TEST_TAR} is missing: run `make data`"
    previous = tmp_path / "previous.int8.onnx"
    previous.write_bytes(subprocess.run(["git", "show", f"{PREVIOUS_RELEASE}:shipped/model.int8.onnx"],
                                        cwd=PROJECT_ROOT, check=True, capture_output=True).stdout)  # fmt: skip
    with tarfile.open(CIFAR_TEST_TAR) as tar:
        members = random.Random(11).sample([m for m in tar.getmembers() if m.isfile()], 200)
        pictures = [(m.name.split("/")[-2], tar.extractfile(m).read()) for m in members]
    log = tmp_path / "predictions.jsonl"
    settings = Settings(prediction_log=str(log), shadow_model_path=previous, shadow_share=1.0, queue_size=256,
                        feedback_burst=1000)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        for truth, jpeg in pictures:
            assert Image.open(io.BytesIO(jpeg)).size == (32, 32)
            answer = client.post("/classify", content=jpeg, headers={"Content-Type": "image/jpeg"}).json()
            body = {"request_id": answer["request_id"], "token": answer["feedback_token"], "label": truth,
                    "predicted": answer["label"]}  # fmt: skip
            assert client.post("/feedback", content=json.dumps(body),
                               headers={"Content-Type": "application/json"}).status_code == 202  # fmt: skip
    code = main(["compare", str(log), "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["shadowed"] == result["feedback_joined"] == 200  # one request at a time: none dropped
    assert result["champion"]["versions"] == [json.loads((SHIPPED_DIR / "model-card.json").read_text())["version"]]
    assert result["challenger"]["versions"] == ["662bcc9c2096"]
    # Both releases are ~91.7 % models: on 200 pictures each is right on most, and they mostly agree.
    assert result["champion"]["accuracy"] > 0.85
    assert result["challenger"]["accuracy"] > 0.85
    assert result["agreement"] > 0.85
    assert result["challenger"]["outlier_share"] is None  # the previous release had no outlier score
    assert 0 <= result["champion"]["outlier_share"] < 0.2
    assert code == {compare.PASS: 0, compare.FAIL: 1}[result["verdict"]]

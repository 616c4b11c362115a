"""The whole chain as a user runs it, one real command a step: train (tiny) -> export -> verify -> quantize -> ship
check -> serve."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from PIL import Image

from tests.servers import ROOT, SERVICE_READY_TIMEOUT, free_port, start

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def command(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def exported(processed_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("chain")
    command(
        "-m", "train", "experiment=quick", "logger=none", "~callbacks.progress_bar", "trainer.max_epochs=4",
        "data.val_size=40", "data.batch_size=32", f"paths.data_dir={processed_dir}", f"paths.ckpt_root={work / 'ckpt'}",
        f"paths.log_dir={work / 'logs'}",
    )  # fmt: skip
    checkpoint = work / "ckpt" / "quick" / "last.ckpt"
    out = command(
        "-m", "export", str(checkpoint), "--out-dir", str(work / "export"), "--data-dir", str(processed_dir),
        "--calibration-images", "200",
    )  # fmt: skip
    assert "parity PASSED" in out
    assert "int8 accepted" in out
    assert "are version" in command("-m", "export.ship_check", str(checkpoint), str(work / "export"))  # make ship
    return work / "export"


def test_the_exported_int8_model_serves_a_picture(exported, tmp_path):
    card = json.loads((exported / "model-card.json").read_text())
    port = free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), MODEL_PATH=str(exported / "model.int8.onnx"))
    proc = start("serve", [sys.executable, "-m", "serve"], env, f"http://127.0.0.1:{port}", tmp_path)
    try:
        proc.wait_ready("/readyz", SERVICE_READY_TIMEOUT)
        photo = io.BytesIO()
        Image.new("RGB", (640, 480), (200, 120, 40)).save(photo, "JPEG")
        request = urllib.request.Request(
            proc.url + "/classify", data=photo.getvalue(), headers={"Content-Type": "image/jpeg"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert response.status == 200
        assert answer["label"] in card["labels"]
        assert answer["model"]["version"] == card["version"]
    finally:
        proc.stop()
    assert proc.popen.returncode == 0, proc.log_tail()

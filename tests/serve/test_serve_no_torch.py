"""The service never imports torch (nor train/ or export/), even when they are installed next to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: this pytest process may have imported torch for other test folders.
SCRIPT = """
import io, sys
from PIL import Image
from starlette.testclient import TestClient
import serve.__main__
from serve.app import create_app
from serve.settings import Settings

buffer = io.BytesIO()
Image.new("RGB", (64, 64), (255, 0, 0)).save(buffer, "JPEG")
with TestClient(create_app(Settings(model_path=sys.argv[1]))) as client:
    assert client.post("/classify", content=buffer.getvalue()).status_code == 200
    assert client.post("/classify", files={"file": ("a.jpg", buffer.getvalue(), "image/jpeg")}).status_code == 200
    for path in ["/model", "/metrics", "/docs", "/openapi.json", "/readyz"]:
        assert client.get(path).status_code == 200
training = {"torch", "torchvision", "lightning", "train", "export"}
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in training)
print(forbidden)
"""


def test_torch_is_never_imported(model_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

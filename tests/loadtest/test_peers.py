"""The real frameworks the service is measured against: each serves the service's answers (the same decoding, model
session and answer shape), from its own pinned venv, built once. The slow tests build each venv from PyPI and check
the running framework against the service, picture by picture."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from contract.paths import PROJECT_ROOT
from loadtest import reporting, targets
from loadtest.payloads import jpeg, photo_like
from loadtest.peers import specs, venv
from loadtest.servers import Server, ServerSpec, service_spec
from serve.app import create_app
from serve.core import Classifier, ImageRejected
from serve.settings import Settings
from tests.serve.tiny_model import build_model

SCORE_TOLERANCE = 1e-6
# What the brief of each peer fixes: the framework's release the comparison is about.
FRAMEWORK_RELEASES = {"mosec": "0.9.8", "litserve": "0.2.19", "bentoml": "1.4.40", "rayserve": "2.60.0"}
SERVE_PINNED = ("numpy", "pillow", "onnxruntime")  # the service's decoding and model: the serve image's pins


def coloured(top: tuple[int, int, int], size: tuple[int, int], seed: int) -> np.ndarray:
    """A photo-like picture (height, width) whose top half leans to one colour: the tiny model's answer."""
    picture = photo_like(*size, seed=seed, grain=4).astype(np.int16)
    picture[: size[0] // 2] = (picture[: size[0] // 2] // 3 + np.array(top, dtype=np.int16)).clip(0, 255)
    return picture.astype(np.uint8)


@pytest.fixture(scope="module")
def pictures() -> list[bytes]:
    """Four uploads: small and large (decoded inline and in a thread by the service), square and not, and one a
    phone stores rotated (EXIF orientation 6), each answered differently by the tiny model."""
    return [
        jpeg(coloured((150, 20, 20), (32, 32), seed=1), 90),
        jpeg(coloured((20, 150, 30), (60, 80), seed=2), 90),
        jpeg(coloured((30, 40, 160), (480, 640), seed=3), 85),
        jpeg(coloured((120, 110, 10), (300, 200), seed=4), 90, orientation=6),
    ]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("peers") / "tiny.onnx")


@pytest.fixture(scope="module")
def service_answers(tiny_model, pictures) -> list[dict]:
    """POST /classify of the real app for each picture."""
    settings = Settings(model_path=tiny_model, ort_threads=1, log_level="warning")
    with TestClient(create_app(settings)) as client:
        responses = [client.post("/classify", content=p, headers={"Content-Type": "image/jpeg"}) for p in pictures]
    assert [r.status_code for r in responses] == [200] * len(pictures)
    return [r.json() for r in responses]


def assert_same_answer(peer: dict, service: dict) -> None:
    assert peer["label"] == service["label"]
    assert peer["score"] == pytest.approx(service["score"], abs=SCORE_TOLERANCE)
    assert [t["label"] for t in peer["top_k"]] == [t["label"] for t in service["top_k"]]
    assert [t["score"] for t in peer["top_k"]] == pytest.approx([t["score"] for t in service["top_k"]], abs=1e-6)
    assert peer["model"] == service["model"]


def test_the_pictures_get_different_answers(service_answers):
    assert len({a["label"] for a in service_answers}) >= 3  # a peer answering one constant label would fail


def test_the_classifier_answers_a_batch_as_the_service_answers_each(tiny_model, pictures, service_answers):
    classifier = Classifier.from_settings(Settings(model_path=tiny_model, ort_threads=1))
    answers = classifier.classify([classifier.decode(p) for p in pictures])
    assert len(answers) == len(service_answers)
    for answer, expected in zip(answers, service_answers, strict=True):
        assert_same_answer(answer, expected)


def test_the_classifier_refuses_what_is_not_a_picture(tiny_model):
    classifier = Classifier.from_settings(Settings(model_path=tiny_model, ort_threads=1))
    with pytest.raises(ImageRejected):
        classifier.decode(b"not a picture at all")


def test_a_peer_runs_its_venvs_python_with_the_services_settings(tiny_model, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(specs, "ensure_venv", lambda name, req: built.append((name, req)) or tmp_path / "python")
    spec = specs.peer_spec("mosec", tiny_model, {"ORT_THREADS": "1", "QUEUE_SIZE": "4"}, wait_ms=3)
    assert built == [("mosec", specs.PEERS["mosec"].requirements)]
    assert spec.argv == [str(tmp_path / "python"), "-m", "loadtest.peers.mosec_server"]
    assert (spec.path, spec.ready_path) == ("/inference", "/")
    env = spec.env
    assert env["MODEL_PATH"] == str(tiny_model)
    assert env["PYTHONPATH"] == str(PROJECT_ROOT)  # so the program imports serve
    assert env["ORT_THREADS"] == "1"  # the service's setting, given to the peer alike
    assert env["BATCH_MAX_SIZE"] == str(Settings.batch_max_size)  # the service's default batch
    assert env["BATCH_MAX_WAIT_MS"] == "3"
    assert "QUEUE_SIZE" not in env  # the service's own queue means nothing to a framework
    assert spec.settings["max_batch_size"] == Settings.batch_max_size
    assert spec.settings["max_wait_ms"] == 3
    assert spec.settings["framework"] == f"mosec {FRAMEWORK_RELEASES['mosec']}"


@pytest.mark.parametrize("name", sorted(specs.PEERS))
def test_each_peer_pins_its_framework_and_takes_the_serve_pins(name):
    peer = specs.PEERS[name]
    assert peer.version() == FRAMEWORK_RELEASES[name]
    lines = [ln.strip() for ln in peer.requirements.read_text().splitlines() if ln.strip() and ln[0] != "#"]
    constraints = [ln.split(maxsplit=1)[1] for ln in lines if ln.startswith("-c ")]
    assert [(peer.requirements.parent / c).resolve() for c in constraints] == [venv.SERVE_REQUIREMENTS]
    serve_pins = {
        ln.split("==")[0].lower().replace("_", "-")
        for ln in venv.SERVE_REQUIREMENTS.read_text().splitlines()
        if "==" in ln and not ln.startswith("#")
    }
    for line in (ln for ln in lines if not ln.startswith("-")):
        package = re.split(r"[=<>!~\[ ]", line)[0].lower().replace("_", "-")
        if package in serve_pins:
            assert "==" not in line, f"{line}: the serve image's pin must rule, not a second one"
        else:
            assert "==" in line, f"{line}: every requirement of a peer is pinned"
    assert set(SERVE_PINNED) <= {re.split(r"[=<>!~\[ ]", ln)[0].lower() for ln in lines}


@pytest.fixture
def fake_pip(monkeypatch):
    """subprocess.run for venv and pip, faked: makes the venv's python, records each command, fails on demand."""
    calls: list[list[str]] = []
    outcome = {"pip": 0}

    def run(command, **kwargs):
        calls.append(command)
        if command[1:3] == ["-m", "venv"]:
            python = Path(command[-1]) / "bin" / "python"
            python.parent.mkdir(parents=True, exist_ok=True)
            python.write_text("")
            return subprocess.CompletedProcess(command, 0)
        return subprocess.CompletedProcess(command, outcome["pip"])

    monkeypatch.setattr(venv.subprocess, "run", run)
    return calls, outcome


def test_a_peer_venv_is_built_once_and_again_when_its_requirements_change(tmp_path, fake_pip):
    calls, outcome = fake_pip
    requirements = tmp_path / "requirements-x.txt"
    requirements.write_text("x==1\n")
    root = tmp_path / "venvs"
    python = venv.ensure_venv("x", requirements, root)
    assert python == root / "x" / "bin" / "python"
    assert [c[1:3] for c in calls] == [["-m", "venv"], ["-m", "pip"]]
    assert calls[1][-2:] == ["-r", str(requirements)]
    assert venv.ensure_venv("x", requirements, root) == python
    assert len(calls) == 2  # the marker matched: nothing installed again
    requirements.write_text("x==2\n")
    venv.ensure_venv("x", requirements, root)
    assert len(calls) == 4
    requirements.write_text("x==3\n")
    outcome["pip"] = 1
    with pytest.raises(RuntimeError, match="pip could not install"):
        venv.ensure_venv("x", requirements, root)
    assert not venv.is_current(root / "x", requirements)  # a failed install is never taken for a built venv


def post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def spec_of(name: str, model: Path) -> ServerSpec:
    if name == specs.GRANIAN.name:
        return specs.granian_spec(model, {"ORT_THREADS": "1"})
    return specs.peer_spec(name, model, {"ORT_THREADS": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("name", [*sorted(specs.PEERS), specs.GRANIAN.name])
def test_the_peer_answers_each_picture_as_the_service_does(name, tiny_model, pictures, service_answers):
    """Its venv built from PyPI (once), the framework started on the tiny model, all pictures sent at once (so its
    batching is in play), each answer compared with the service's; then SIGTERM stops the whole tree, cleanly.
    Granian runs the service's own app: the same route and batching settings as the service too."""
    spec = spec_of(name, tiny_model)
    if name == specs.GRANIAN.name:
        assert spec.path == service_spec(tiny_model).path
        assert spec.settings["max_batch_size"] == service_spec(tiny_model).settings["max_batch_size"]
    server = Server(spec)
    try:
        with ThreadPoolExecutor(len(pictures)) as pool:
            replies = list(pool.map(lambda body: post(server.port, spec.path, body), pictures))
    finally:
        code = server.stop()
    assert [status for status, _ in replies] == [200] * len(pictures), replies
    for (_, answer), expected in zip(replies, service_answers, strict=True):
        assert_same_answer(answer, expected)
    assert code == 0
    assert server.left_running == []


def test_the_report_shows_each_peer_beside_the_service_with_its_settings(tiny_model, monkeypatch):
    monkeypatch.setattr(specs, "ensure_venv", lambda name, req: Path("/venv/bin/python"))
    servers = {"service": service_spec(tiny_model), "litserve": specs.peer_spec("litserve", tiny_model, wait_ms=2)}
    memory = {
        "service": {"processes": 1, "pss_ready_mb": 70.4, "rss_peak_mb": 131.0, "rss_peak_source": "VmHWM"},
        "litserve": {"processes": 5, "pss_ready_mb": 190.2, "rss_peak_mb": 411.0, "rss_peak_source": "sampled"},
    }
    results = {
        "machine": reporting.machine(),
        "settings": {"rounds": 3, "servers": {name: spec.settings for name, spec in servers.items()}},
        "servers": {
            name: {"ready_s": 1.5, "rss_ready_mb": 100.0, "pss_peak_mb": 200.0, "exit_code": 0, "scenarios": {}} | m
            for name, m in memory.items()
        },
    }
    results["targets"] = targets.judge_all(results)
    markdown = reporting.markdown(results)
    assert "medians of 3 rounds" in markdown
    assert "| service | 1 | 1.50 | 100 | 70 | 131 | 200 | 0 |" in markdown
    assert "| litserve | 5 | 1.50 | 100 | 190 | 411 (sampled) | 200 | 0 |" in markdown
    assert f"| litserve | litserve {FRAMEWORK_RELEASES['litserve']} | {Settings.batch_max_size} | 2 | 1 |" in markdown
    assert f"| service | {servers['service'].settings['framework']} | {Settings.batch_max_size} | 0 | 1 |" in markdown

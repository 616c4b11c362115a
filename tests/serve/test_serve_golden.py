"""The golden check (serve/golden.py) and the engine choice (serve/engine_choice.py): the engine that runs the file
must give the file's golden answers within its tolerance before the service is ready; `auto` takes the fastest that
does. Engine-independent: a wrong engine is played by a runner that moves the logits."""

from __future__ import annotations

import base64
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from contract import model_file
from serve import engine_choice
from serve.app import create_app
from serve.model import ModelLoadError, load_model
from serve.settings import Settings
from tests.serve.tiny_model import INPUT_SIZE, build_model, contract_metadata

PICTURES = np.random.default_rng(7).integers(0, 256, (4, *INPUT_SIZE, 3), dtype=np.uint8)


def golden_of(path, *, shift: float = 0.0, tolerance: float = 1e-3, images: str | None = None) -> dict:
    """Golden answers computed with onnxruntime, as export writes them; `shift` alters the recorded logits."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run([model_file.OUTPUT_NAME], {model_file.INPUT_NAME: PICTURES})
    return {
        model_file.GOLDEN_IMAGES: images if images is not None else base64.b64encode(PICTURES.tobytes()).decode(),
        model_file.GOLDEN_SHAPE: list(PICTURES.shape),
        model_file.GOLDEN_OUTPUTS: {model_file.OUTPUT_NAME: (logits + shift).tolist()},
        model_file.GOLDEN_TOLERANCE: {model_file.OUTPUT_NAME: tolerance},
        model_file.GOLDEN_MEASURED_WITH: {},
    }


@pytest.fixture
def with_golden(tmp_path):
    """with_golden(**golden_of options) -> a tiny model file carrying golden answers."""

    def make(**options):
        plain = build_model(tmp_path / "plain.onnx")
        path = tmp_path / "golden.onnx"
        return build_model(path, metadata=contract_metadata(golden=golden_of(plain, **options)))

    return make


def wrong_engine(path, threads=0):
    """An engine that compiles the graph wrongly: onnxruntime's answers, the logits moved by 0.5."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(names, images):
        outputs = session.run(names, {model_file.INPUT_NAME: images})
        return [out + 0.5 if name == model_file.OUTPUT_NAME else out for name, out in zip(names, outputs, strict=True)]

    return run


def test_the_engine_that_gives_the_golden_answers_runs_the_file_and_says_so(with_golden):
    model = load_model(with_golden(), engine="onnxruntime")
    report = model.describe()["engine"]
    assert report["name"] == "onnxruntime"
    assert report["golden_check"]["result"] == "passed"
    assert report["golden_check"]["worst"]["logits"] <= report["golden_check"]["tolerance"]["logits"] == 1e-3
    assert model.describe()["golden"]["pictures"] == len(PICTURES)  # the summary, not the pictures


@pytest.mark.parametrize("engine", ["onnxruntime", "auto"])
def test_altered_golden_answers_refuse_the_file(with_golden, engine):
    with pytest.raises(ModelLoadError, match=r"onnxruntime fails the file's golden check: logits off by 0\.25"):
        load_model(with_golden(shift=0.25), engine=engine)


@pytest.mark.parametrize(
    ("options", "problem"),
    [({"images": "not base64!"}, "malformed"), ({"images": base64.b64encode(b"\0" * 12).decode()}, "malformed")],
)
def test_malformed_golden_answers_refuse_the_file(with_golden, options, problem):
    with pytest.raises(ModelLoadError, match=f"metadata 'golden' is {problem}"):
        load_model(with_golden(**options))


def test_a_file_without_golden_answers_loads_and_says_nothing_was_checked(model_path):
    report = load_model(model_path, engine="onnxruntime").describe()["engine"]
    assert report["golden_check"]["result"] == "no golden answers in the file"
    assert load_model(model_path).describe()["golden"] is None


def test_a_named_engine_that_fails_the_check_stops_the_start(with_golden, monkeypatch):
    monkeypatch.setattr(engine_choice, "openvino_runner", wrong_engine)
    with pytest.raises(ModelLoadError, match=r"openvino fails the file's golden check: logits off by 0\.5 "):
        load_model(with_golden(), engine="openvino")


def test_auto_skips_an_engine_that_fails_the_check(with_golden, monkeypatch):
    monkeypatch.setattr(engine_choice, "openvino_runner", wrong_engine)
    monkeypatch.setattr(engine_choice, "cpu_flags", lambda: {"avx512_vnni"})
    model = load_model(with_golden(), engine="auto")
    report = model.describe()["engine"]
    assert (model.engine, report["setting"]) == ("onnxruntime", "auto")
    assert report["tried"]["openvino"] == {"golden_check": "failed"}
    assert report["tried"]["onnxruntime"]["golden_check"] == "passed"


def test_auto_times_the_engines_that_pass_and_takes_the_faster(with_golden, monkeypatch):
    slow = ort.InferenceSession  # the stand-in engine: onnxruntime's answers, 20 ms later

    def slow_engine(path, threads=0):
        session = slow(str(path), providers=["CPUExecutionProvider"])

        def run(names, images):
            time.sleep(0.02)
            return session.run(names, {model_file.INPUT_NAME: images})

        return run

    monkeypatch.setattr(engine_choice, "openvino_runner", slow_engine)
    monkeypatch.setattr(engine_choice, "cpu_flags", lambda: {"amx_int8"})
    report = load_model(with_golden(), engine="auto").describe()["engine"]
    assert report["name"] == "onnxruntime"
    tried = report["tried"]
    assert tried["openvino"]["images_per_s"] < tried["onnxruntime"]["images_per_s"]
    assert tried["openvino"]["images_per_s"] < engine_choice.BATCH / 0.02


def test_auto_without_openvino_runs_onnxruntime_and_says_why(with_golden, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # importing it fails, as in the serve image
    monkeypatch.setattr(engine_choice, "cpu_flags", lambda: {"amx_int8"})
    report = load_model(with_golden(), engine="auto").describe()["engine"]
    assert report["name"] == "onnxruntime"
    assert "OpenVINO is not installed" in report["tried"]["openvino"]["skipped"]


@pytest.mark.parametrize(
    ("setting", "flags", "expected"),
    [
        ("auto", {"avx2", "fma"}, ["onnxruntime"]),  # no int8 dot-product unit: OpenVINO measured slower there
        ("auto", {"avx2", "avx512_vnni"}, ["onnxruntime", "openvino"]),
        ("auto", {"amx_int8"}, ["onnxruntime", "openvino"]),
        ("openvino", {"avx2"}, ["openvino"]),
        ("onnxruntime", {"amx_int8"}, ["onnxruntime"]),
    ],
)
def test_the_cpu_flags_only_pick_what_auto_tries(setting, flags, expected):
    assert engine_choice.candidates(setting, flags) == expected


def test_auto_is_the_default_and_get_model_reports_the_engine(with_golden):
    assert Settings().engine == "auto"
    with TestClient(create_app(Settings(model_path=with_golden(), log_level="warning"))) as client:
        body = client.get("/model").json()
    assert body["engine"]["setting"] == "auto"
    assert body["engine"]["golden_check"]["result"] == "passed"
    assert body["engine"]["name"] in body["engine"]["tried"]


def test_tools_get_onnxruntime_and_the_service_its_setting(model_path, monkeypatch):
    """A tool measuring the file (benchmarks, export's gates) gets the engine its numbers were measured with; the
    service gets ENGINE (auto by default)."""
    monkeypatch.setattr(engine_choice, "cpu_flags", lambda: {"amx_int8"})
    assert load_model(model_path).engine_report["setting"] == "onnxruntime"
    with TestClient(create_app(Settings(model_path=model_path, log_level="warning"))) as client:
        assert client.get("/model").json()["engine"]["setting"] == "auto"


def test_auto_runs_a_file_without_golden_answers_on_onnxruntime(model_path, monkeypatch):
    """Another engine cannot be checked against nothing: an old release (the shadow's challenger, say) stays on the
    engine its numbers came from, however fast the other is."""
    monkeypatch.setattr(engine_choice, "openvino_runner", wrong_engine)
    monkeypatch.setattr(engine_choice, "cpu_flags", lambda: {"amx_int8"})
    model = load_model(model_path, engine="auto")
    assert model.engine == "onnxruntime"
    assert model.engine_report["tried"]["openvino"] == {"golden_check": "no golden answers in the file"}

"""The export chain on a real (tiny) checkpoint: metadata, parity (which can fail), the int8 gate (which can reject)."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from contract import model_file
from contract.model_file import (
    CARD,
    EMBEDDING_NAME,
    INPUT_NAME,
    INPUT_SIZE,
    LABELS,
    OUTLIER_SCORE_NAME,
    OUTPUT_NAME,
    PARITY,
    QUANTIZATION,
    RESIZE,
    VERSION,
)
from export import checkpoint, metadata, onnx_export, quantize, verify
from export.__main__ import main as export_main
from export.evaluation import infer_logits, session
from train.models import build


def test_metadata_round_trip_follows_the_contract(exported, processed_dir):
    out, card = exported
    for name in ("model.onnx", "model.int8.onnx"):
        meta = metadata.read(out / name)
        written = set(metadata.raw_props(metadata.load_model(out / name)))
        assert set(meta) == set(model_file.KEYS) <= written  # every key of the contract
        # and nothing else, but the marks onnxruntime's quantizer leaves (onnx.infer, onnx.quant.pre_process)
        assert all(key.startswith("onnx.") for key in written - set(model_file.KEYS))
        assert meta[LABELS] == json.loads((processed_dir / "meta.json").read_text())["classes"]
        assert meta[INPUT_SIZE] == [32, 32]
        assert meta[RESIZE] == "center-crop-resize"
        assert meta[CARD] == card == json.loads((out / "model-card.json").read_text())
        assert meta[PARITY]["passed"] is True
        top1 = {model_file.TOP1_PYTORCH, model_file.TOP1_FP32, model_file.TOP1_INT8}
        assert set(meta[model_file.METRICS]) == top1  # the names the page's headline metric is chosen from
    assert metadata.read(out / "model.onnx")[QUANTIZATION] == "none"
    assert metadata.read(out / "model.int8.onnx")[QUANTIZATION].startswith("int8")


def test_graph_takes_uint8_nhwc_with_dynamic_batch(exported):
    sess = session(exported[0] / "model.onnx")
    (inp,), outputs = sess.get_inputs(), {o.name: o.type for o in sess.get_outputs()}
    assert (inp.name, inp.type, inp.shape[1:]) == (INPUT_NAME, "tensor(uint8)", [32, 32, 3])
    assert outputs == {
        OUTPUT_NAME: "tensor(float)", EMBEDDING_NAME: "tensor(float)", OUTLIER_SCORE_NAME: "tensor(float)",
    }  # fmt: skip
    for n in (1, 7, 64):
        logits, features = sess.run([OUTPUT_NAME, EMBEDDING_NAME], {INPUT_NAME: np.zeros((n, 32, 32, 3), np.uint8)})
        assert logits.shape == (n, 10)
        assert features.shape[0] == n
        assert features.ndim == 2
    onnx.checker.check_model(onnx.load(str(exported[0] / "model.onnx")), full_check=True)


def test_version_is_the_weights_hash(exported, mlp_checkpoint):
    loaded = checkpoint.load(mlp_checkpoint)
    assert metadata.read(exported[0] / "model.onnx")[VERSION] == checkpoint.weights_hash(loaded.net)
    with torch.no_grad():
        loaded.net.backbone[1].weight[0, 0] += 1
    assert checkpoint.weights_hash(loaded.net) != metadata.read(exported[0] / "model.onnx")[VERSION]


def test_parity_passes_for_the_exported_graph(exported, mlp_checkpoint, processed_dir):
    report = verify.check(checkpoint.load(mlp_checkpoint), exported[0] / "model.onnx", processed_dir)
    assert report.passed
    assert report.max_abs_diff <= verify.TOLERANCE
    assert {(c["input"], c["batch"]) for c in report.cases} == {
        ("test", 1),
        ("test", 64),
        ("random", 1),
        ("random", 64),
    }


def test_parity_fails_for_perturbed_weights(exported, mlp_checkpoint, processed_dir):
    loaded = checkpoint.load(mlp_checkpoint)
    with torch.no_grad():
        loaded.net.backbone[3].bias += 1e-3  # shifts every logit of one network: the ONNX file no longer matches
    report = verify.check(loaded, exported[0] / "model.onnx", processed_dir)
    assert not report.passed
    assert "FAILED" in report.text()


def test_parity_fails_for_a_broken_graph(exported, mlp_checkpoint, processed_dir, tmp_path):
    model = onnx.load(str(exported[0] / "model.onnx"))
    init = next(i for i in model.graph.initializer if i.dims and len(i.dims) == 1 and i.dims[0] == 10)
    values = onnx.numpy_helper.to_array(init).copy() + 0.5
    init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
    onnx.save(model, str(tmp_path / "broken.onnx"))
    assert not verify.check(checkpoint.load(mlp_checkpoint), tmp_path / "broken.onnx", processed_dir).passed


def test_quantization_gate_rejects_a_large_accuracy_drop(exported, processed_dir, tmp_path):
    fp32 = exported[0] / "model.onnx"
    # Calibrating on black images clips every real activation: the int8 model loses its accuracy.
    quantize.quantize(fp32, np.zeros((64, 32, 32, 3), np.uint8), tmp_path / "bad.onnx")
    report = quantize.gate(fp32, tmp_path / "bad.onnx", processed_dir)
    assert report["fp32_top1"] > 0.5
    assert not report["passed"]
    assert report["drop_pp"] > 0.5


def test_rejected_quantization_writes_nothing(exported, processed_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "calibration_images", lambda count, data_dir: np.zeros((64, 32, 32, 3), np.uint8))
    with pytest.raises(quantize.QuantizationRejected, match="int8 rejected"):
        quantize.quantize_behind_gate(exported[0] / "model.onnx", tmp_path / "model.int8.onnx", processed_dir)
    assert not (tmp_path / "model.int8.onnx").exists()


def test_failed_export_keeps_the_good_model(exported, mlp_checkpoint, processed_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(exported[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(verify, "TOLERANCE", -1.0)  # every comparison fails
    code = export_main([str(mlp_checkpoint), "--out-dir", str(out), "--data-dir", str(processed_dir)])
    assert code == 1
    assert "parity check failed" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def garbage_file(path):
    path.write_bytes(b"\x00garbage" * 100)
    return path


def saved(obj):
    def write(path):
        torch.save(obj, path)
        return path

    return write


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path, "not found"),
        (garbage_file, "not a readable PyTorch"),
        (saved({"state_dict": {}, "hyper_parameters": {"arch": "vgg"}}), "another model class"),
        (saved({"weights": 1}), "not a Lightning checkpoint"),
    ],
)
def test_bad_checkpoints_give_one_line_errors_naming_the_file(make, message, tmp_path, capsys):
    path = make(tmp_path / "model.ckpt")
    assert export_main([str(path), "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err
    assert message in err


def test_unwritable_output_folder_is_named(mlp_checkpoint, processed_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    args = [str(mlp_checkpoint), "--out-dir", str(blocker / "out"), "--data-dir", str(processed_dir)]
    assert export_main(args) == 1
    assert f"{blocker / 'out'}: output folder is not writable" in capsys.readouterr().err


def test_hflip_tta_graph_averages_the_mirror_image(mlp_checkpoint, processed_dir, tmp_path):
    loaded = checkpoint.load(mlp_checkpoint)
    onnx_export.export(loaded, tmp_path / "tta.onnx", hflip_tta=True)
    assert metadata.read(tmp_path / "tta.onnx")[model_file.TTA] == "hflip"
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    got = infer_logits(session(tmp_path / "tta.onnx"), x)
    with torch.no_grad():
        t = torch.from_numpy(x)
        want = ((loaded.net(t) + loaded.net(t.flip(2))) / 2).numpy()
    assert np.abs(got - want).max() < 1e-4
    assert verify.check(loaded, tmp_path / "tta.onnx", processed_dir).passed


@pytest.mark.slow
def test_hflip_tta_int8_graph_holds_each_weight_once(processed_dir, tmp_path):
    # ResNet-18 (untrained): its BatchNorms are folded into the convolutions before quantization, and a graph that
    # ran the network twice got a folded copy of every weight per run.
    labels = json.loads((processed_dir / "meta.json").read_text())["classes"]
    net = build("resnet18", len(labels), max_pool=True).eval()
    loaded = checkpoint.LoadedCheckpoint(tmp_path / "none.ckpt", net, labels, {"arch": "resnet18"})
    calibration = quantize.calibration_images(16, processed_dir)
    sizes = {}
    for tta in (False, True):
        fp32, int8 = tmp_path / f"{tta}.onnx", tmp_path / f"{tta}.int8.onnx"
        onnx_export.export(loaded, fp32, hflip_tta=tta)
        quantize.quantize(fp32, calibration, int8)
        sizes[tta] = int8.stat().st_size
    assert sizes[True] <= sizes[False] * 1.01, sizes  # the mirror image goes through the same weights


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_no_path_of_the_exporting_machine_reaches_the_card_or_the_file(exported):
    """GET /model showed /work/... paths of the machine that exported the shipped model; the config is portable now."""
    out, card = exported
    meta = ort.InferenceSession(str(out / "model.int8.onnx")).get_modelmeta().custom_metadata_map
    for document in (card, json.loads(meta[model_file.CONFIG]), json.loads(meta[model_file.CARD])):
        absolute = [text for text in _strings(document) if text.startswith("/")]
        assert not absolute


def test_portable_paths():
    from contract.paths import PROJECT_ROOT
    from export.card import portable

    config = {"root": str(PROJECT_ROOT), "data": [str(PROJECT_ROOT / "data" / "processed"), "/home/someone/run", 3]}
    assert portable(config) == {"root": ".", "data": ["data/processed", ".../run", 3]}
    trained_elsewhere = {"paths": {"root": "/runs/gpu", "data_dir": "/runs/gpu/data/processed"}, "out": "/tmp/x"}
    assert portable(trained_elsewhere) == {"paths": {"root": ".", "data_dir": "data/processed"}, "out": ".../x"}

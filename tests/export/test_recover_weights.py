"""Weights recovered from an int8 release are the ones it computes with, and quantize back to the same int8 values."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export import checkpoint, quantize, recover_weights
from export.__main__ import export_checkpoint
from export.reproduce import int8_weight_differences


def test_identity_batchnorm_variance_makes_var_plus_eps_exactly_one():
    for eps in (1e-5, 1e-3, 1e-6):
        var = recover_weights.identity_variance(eps)
        assert np.float32(var + np.float32(eps)) == np.float32(1)
        assert (torch.tensor(var) + eps).item() == 1.0  # what BatchNorm2d computes in eval


def test_recovered_weights_are_the_int8_values_dequantized(exported, tmp_path):
    int8 = exported[0] / "model.int8.onnx"
    loaded = recover_weights.recover(int8, tmp_path / "w.safetensors", data_dir=None)
    graph = onnx.load(str(int8)).graph
    dequantized = {source: value for source, value in recover_weights.dequantize_initializers(graph).values()}
    state = checkpoint.load(tmp_path / "w.safetensors").net.state_dict()
    for name, value in dequantized.items():
        if name.endswith(".weight_quantized"):
            assert np.array_equal(state[name.removesuffix("_quantized")].numpy(), value), name
    origin = loaded.origin["recovered_from"]
    assert origin["version"] == exported[1]["version"]
    assert loaded.training["test_top1"] == exported[1]["training"]["test_top1_pytorch"]


def test_recovered_weights_quantize_back_to_the_same_int8_weights(exported, processed_dir, tmp_path):
    int8 = exported[0] / "model.int8.onnx"
    weights = tmp_path / "w.safetensors"
    recover_weights.recover(int8, weights, data_dir=None)
    card = export_checkpoint(weights, tmp_path / "out", data_dir=processed_dir, calibration=200)
    differ, total = int8_weight_differences(int8, tmp_path / "out" / "model.int8.onnx")
    assert total > 0
    assert differ == 0
    assert card["weights"]["origin"]["recovered_from"]["version"] == exported[1]["version"]
    scales = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}
    assert any(name.endswith("weight_scale") for name in scales)
    assert card["quantization"]["scheme"] == quantize.SCHEME

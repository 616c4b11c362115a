"""The committed weights format (safetensors + JSON sidecar): the same network as the checkpoint it came from,
exported to the same version, refused when the sidecar describes other tensors."""

from __future__ import annotations

import json

import pytest
import torch

from contract.model_file import VERSION
from export import checkpoint, weights_file
from export.__main__ import export_checkpoint
from export.errors import ExportError


@pytest.fixture(scope="module")
def weights(mlp_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "mlp.safetensors"
    assert checkpoint.main([str(mlp_checkpoint), str(out)]) == 0
    return out


def test_the_weights_file_rebuilds_the_checkpoints_network(mlp_checkpoint, weights):
    from_ckpt, from_file = checkpoint.load(mlp_checkpoint), checkpoint.load(weights)
    assert from_file.arch == from_ckpt.arch == "mlp"
    assert from_file.labels == from_ckpt.labels
    assert from_file.hparams == from_ckpt.hparams
    want, got = from_ckpt.net.state_dict(), from_file.net.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[name], got[name]) for name in want)
    assert checkpoint.weights_hash(from_file.net) == checkpoint.weights_hash(from_ckpt.net)
    assert from_file.training["test_top1"] == from_ckpt.training["test_top1"]  # metrics.json travels in the sidecar
    sidecar = json.loads(weights_file.sidecar_path(weights).read_text())
    assert sidecar["version"] == checkpoint.weights_hash(from_file.net)
    assert sidecar["sha256"] == weights_file.file_sha256(weights)
    assert sidecar["origin"] == {"checkpoint": str(mlp_checkpoint)}


def test_export_from_the_weights_file_is_the_checkpoints_version(
    exported, mlp_checkpoint, weights, processed_dir, tmp_path
):
    card = export_checkpoint(weights, tmp_path, data_dir=processed_dir, calibration=200, quantize_int8=False)
    assert card[VERSION] == exported[1][VERSION]
    assert card["weights"]["sha256"] == weights_file.file_sha256(weights)
    assert card["weights"]["origin"] == {"checkpoint": str(mlp_checkpoint)}
    assert "weights" not in exported[1]  # a training checkpoint's card has no committed-weights provenance


def test_a_sidecar_of_other_weights_is_refused(weights, tmp_path):
    copy = tmp_path / "mlp.safetensors"
    copy.write_bytes(weights.read_bytes())
    sidecar = json.loads(weights_file.sidecar_path(weights).read_text())
    weights_file.sidecar_path(copy).write_text(json.dumps({**sidecar, "sha256": "0" * 64}))
    with pytest.raises(ExportError, match="describes other weights"):
        checkpoint.load(copy)
    weights_file.sidecar_path(copy).unlink()
    with pytest.raises(ExportError, match="is missing beside it"):
        checkpoint.load(copy)


def test_weights_of_another_network_are_refused(weights, tmp_path):
    state, description = weights_file.read(weights)
    state.popitem()
    kept = {key: value for key, value in description.items() if key not in ("format", "weights", "sha256")}
    broken = weights_file.write(state, tmp_path / "broken.safetensors", kept)
    with pytest.raises(ExportError, match="do not fit a mlp network"):
        checkpoint.load(broken)

"""`make ship` ships a checkpoint only with the export made from it: same weights hash as the card's version."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from contract.model_file import VERSION
from export import checkpoint, metadata
from export.errors import ExportError
from export.ship_check import check_ship, main


def test_the_checkpoint_and_its_own_export_ship(exported, mlp_checkpoint, capsys):
    out, card = exported
    assert (
        check_ship(mlp_checkpoint, out) == card[VERSION] == checkpoint.weights_hash(checkpoint.load(mlp_checkpoint).net)
    )
    assert main([str(mlp_checkpoint), str(out)]) == 0
    assert card[VERSION] in capsys.readouterr().out


def test_a_retrained_checkpoint_is_refused(exported, mlp_checkpoint, tmp_path, capsys):
    ckpt = torch.load(mlp_checkpoint, map_location="cpu", weights_only=True)
    name, tensor = next((k, v) for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name] = tensor + 1e-3  # other weights, same network: what another training run leaves
    retrained = tmp_path / "last.ckpt"
    torch.save(ckpt, retrained)
    with pytest.raises(ExportError, match="is not the card's version"):
        check_ship(retrained, exported[0])
    assert main([str(retrained), str(exported[0])]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(retrained) in err


def test_an_onnx_file_of_another_version_is_refused(exported, mlp_checkpoint, tmp_path):
    out = tmp_path / "export"
    shutil.copytree(exported[0], out)
    metadata.update(out / "model.int8.onnx", {VERSION: "0123abcd0123"})
    with pytest.raises(ExportError, match=r"model\.int8\.onnx: version 0123abcd0123 is not the card's version"):
        check_ship(mlp_checkpoint, out)


def test_a_missing_or_broken_card_is_named(exported, mlp_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="model card not found"):
        check_ship(mlp_checkpoint, tmp_path)
    (tmp_path / "model-card.json").write_text(json.dumps(["not", "a", "card"]))
    with pytest.raises(ExportError, match="not a model card"):
        check_ship(mlp_checkpoint, tmp_path)

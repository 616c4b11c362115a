"""One real export of the tiny MLP checkpoint, shared by the tests that read its files (and never change them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.__main__ import export_checkpoint


@pytest.fixture(scope="session")
def exported(mlp_checkpoint, processed_dir, tmp_path_factory) -> tuple[Path, dict]:
    """(the export folder: model.onnx, model.int8.onnx, model-card.json; the model card)."""
    out = tmp_path_factory.mktemp("export")
    card = export_checkpoint(mlp_checkpoint, out, data_dir=processed_dir, calibration=200)
    return out, card

"""The explanation benchmark (evaluation/explanation_faithfulness.py) on the tiny contract model with a class
activation map: its table, its deletion measure (occlusion blanks what it measured, so it beats random at k = 1 by
construction), the cost column, and a model without a map refused."""

from __future__ import annotations

import pytest

from evaluation import explanation_faithfulness
from evaluation.robustness import DataError, load_test_set
from serve.model import load_model
from tests.serve.tiny_model import LABELS, build_model


def test_the_table_compares_the_map_with_occlusion_and_random(tmp_path, processed_dir):
    model = load_model(build_model(tmp_path / "cam.onnx", class_activation=True), threads=1)
    images, _ = load_test_set(processed_dir, tuple(LABELS))
    table = explanation_faithfulness.measure(model, images[:12])
    assert table["grid"] == 2
    falls = table["fall_of_the_answer_probability"]
    assert set(falls) == {"cam", "occlusion", "random"}
    assert all(set(by_k) == {str(k) for k in explanation_faithfulness.DELETE} for by_k in falls.values())
    assert falls["occlusion"]["1"] >= falls["random"]["1"]
    assert set(table["cpu_ms_per_explanation"]) == {"cam", "occlusion"}
    text = explanation_faithfulness.markdown(table)
    assert "| class activation map (served) |" in text
    assert "| occlusion |" in text


def test_a_model_without_a_map_is_refused(tmp_path, processed_dir):
    model = load_model(build_model(tmp_path / "plain.onnx"), threads=1)
    images, _ = load_test_set(processed_dir, tuple(LABELS))
    with pytest.raises(DataError, match="no class activation map"):
        explanation_faithfulness.measure(model, images[:2])

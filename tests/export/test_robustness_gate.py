"""The export chain's robustness gate (export/benchmark_gates.py): it refuses a model whose mean corrupted top-1 is more
than 1 pp below the baseline card's, writing nothing; it records the table in the card file and the ONNX's card."""

from __future__ import annotations

import json
import shutil

import pytest

from contract import model_file
from export import benchmark_gates, metadata
from export.__main__ import CARD, INT8, export_checkpoint
from export.__main__ import main as export_main
from export.errors import ExportError
from tests.serve.tiny_model import build_model

# All 80 images of the synthetic test split, as the chain's defaults take them (so the tables are comparable), but
# only 10 of them as 12-MP photos (the upload path is not part of the gate).
FAST = {"images": 80, "photos": 10}


@pytest.fixture(scope="module")
def mlp_table(exported, processed_dir) -> dict:
    """The exported MLP's own robustness table on the synthetic test split (it learnt that data: a good model)."""
    return benchmark_gates.measure_robustness(exported[0] / INT8, data=processed_dir, **FAST)


def card_claiming(tmp_path, table: dict, mean: float):
    path = tmp_path / "shipped-card.json"
    path.write_text(json.dumps({"version": "shipped", "robustness": {**table, "mean_corrupted_top1": mean}}))
    return path


def test_a_model_far_below_the_shipped_one_is_refused(mlp_table, processed_dir, tmp_path):
    # The tiny model only looks at the mean colour of the top half: on the same images it does far worse.
    tiny = build_model(tmp_path / "tiny.onnx")
    baseline = card_claiming(tmp_path, mlp_table, mlp_table["mean_corrupted_top1"])
    with pytest.raises(benchmark_gates.RobustnessRefused, match="robustness gate REFUSED"):
        benchmark_gates.measure_robustness(tiny, data=processed_dir, baseline=baseline, **FAST)


def test_the_same_model_passes_and_a_baseline_on_other_images_is_not_compared(exported, mlp_table, processed_dir,
                                                                               tmp_path):  # fmt: skip
    model = exported[0] / INT8
    same = benchmark_gates.measure_robustness(
        model, data=processed_dir, baseline=card_claiming(tmp_path, mlp_table, mlp_table["mean_corrupted_top1"]),
        **FAST,
    )  # fmt: skip
    assert same["gate"]["compared"]
    assert same["gate"]["passed"]
    assert same["gate"]["drop_pp"] == 0
    assert "gate passed" in benchmark_gates.robustness_line(same)
    elsewhere = card_claiming(tmp_path, {**mlp_table, "data": "the-real-test-set"}, 0.99)
    other = benchmark_gates.measure_robustness(model, data=processed_dir, baseline=elsewhere, **FAST)
    assert not other["gate"]["compared"]
    assert "not compared" in benchmark_gates.robustness_line(other)


def test_a_benchmark_that_cannot_run_is_an_export_error(exported, tmp_path):
    with pytest.raises(ExportError, match=r"benchmark evaluation\.robustness failed"):
        benchmark_gates.measure_robustness(exported[0] / INT8, data=tmp_path / "nothing-here.tar.gz")


def test_record_puts_the_table_into_the_card_file_and_the_onnx_card(exported, mlp_table, tmp_path):
    model, card = tmp_path / INT8, tmp_path / CARD
    shutil.copy(exported[0] / INT8, model)
    shutil.copy(exported[0] / CARD, card)
    before = json.loads(card.read_text())
    benchmark_gates.record(mlp_table, model, card)
    written = json.loads(card.read_text())
    assert written == before | {"robustness": mlp_table}
    inside = metadata.read(model)
    assert inside[model_file.CARD]["robustness"] == mlp_table
    assert inside[model_file.VERSION] == before["version"]


def test_the_command_refuses_a_card_of_another_model(exported, tmp_path, capsys):
    card = tmp_path / CARD
    card.write_text(json.dumps({"version": "not-this-one"}))
    assert benchmark_gates.main([str(exported[0] / INT8), "--card", str(card)]) == 1
    assert "describes another model" in capsys.readouterr().err


@pytest.mark.slow
def test_the_export_chain_refuses_a_less_robust_model_and_keeps_the_good_one(
    exported, mlp_checkpoint, mlp_table, processed_dir, tmp_path
):
    out = tmp_path / "out"
    shutil.copytree(exported[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # A shipped model 5 pp more robust than this one, measured on the same images.
    better = card_claiming(tmp_path, mlp_table, mlp_table["mean_corrupted_top1"] + 0.05)
    code = export_main([
        str(mlp_checkpoint), "--out-dir", str(out), "--data-dir", str(processed_dir), "--calibration-images", "200",
        "--robustness-baseline", str(better),
    ])  # fmt: skip
    assert code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(benchmark_gates.RobustnessRefused):
        export_checkpoint(
            mlp_checkpoint, tmp_path / "again", data_dir=processed_dir, calibration=200,
            robustness=True, robustness_baseline=better,
        )  # fmt: skip
    assert not (tmp_path / "again" / INT8).exists()

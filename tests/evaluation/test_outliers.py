"""The "none of the ten" benchmark (evaluation/outliers.py): its AUROC, its table through the service's decoding, the
export gate's verdicts, the docs' table and the exit codes. The tiny contract model (tests/serve/tiny_model.py)
scores a picture by its bottom half's brightness, so what each group should get is known in advance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract import model_file
from evaluation import outliers
from evaluation.outlier_pictures import GENERATED_GROUPS
from evaluation.outliers import auroc, gate, measure
from evaluation.robustness import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, DataError, load_test_set, stratified_subset
from serve.model import load_model
from tests.serve.tiny_model import LABELS, OUTLIER_THRESHOLD, build_model, contract_metadata, outlier_metadata

PACKAGE_GROUPS = ("photos", "photo_crops", "faces", "digits")


@pytest.fixture(scope="module")
def scored_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("outliers") / "scored.onnx"
    return build_model(path, metadata=contract_metadata(outlier=outlier_metadata()), outlier_score=True)


@pytest.fixture(scope="module")
def test_set(processed_dir):
    return load_test_set(processed_dir, tuple(LABELS))


@pytest.fixture(scope="module")
def table(scored_path, test_set):
    return measure(load_model(scored_path), *test_set, count=100)


def test_auroc_is_the_chance_an_outlier_scores_above_an_inlier():
    inliers = np.array([1.0, 2.0, 3.0])
    assert auroc(inliers, np.array([4.0, 5.0])) == 1.0
    assert auroc(inliers, np.array([0.0, 0.5])) == 0.0
    assert auroc(inliers, np.array([2.0])) == pytest.approx(0.5)  # above one, tied with one (half), below one
    assert auroc(inliers, inliers) == pytest.approx(0.5)


def test_every_group_is_measured_through_the_services_decoding(table, test_set):
    assert set(table["groups"]) == {*GENERATED_GROUPS, *PACKAGE_GROUPS}
    for name, row in table["groups"].items():
        assert row["kind"] == ("generated" if name in GENERATED_GROUPS else "package")
        assert row["pictures"] > 0
        assert 0.0 <= row["auroc"] <= 1.0
        assert 0.0 <= row["caught"] <= 1.0
    assert table["threshold"] == OUTLIER_THRESHOLD
    assert table["test_images"] == len(stratified_subset(test_set[1], 100, seed=0))  # all 8 a class of the split
    assert table["mean_auroc"] == pytest.approx(np.mean([row["auroc"] for row in table["groups"].values()]), abs=1e-4)
    # The tiny score is the bottom half's brightness: white-paper digits (half of them) are caught, and a flat colour
    # is caught exactly when it is bright.
    assert 0.3 <= table["groups"]["digits"]["caught"] <= 0.7


def test_the_test_share_is_the_flag_on_the_same_pictures(table, scored_path, test_set):
    model = load_model(scored_path)
    images, truth = test_set
    chosen = stratified_subset(truth, 100, seed=0)
    (scores,) = model.outputs([model_file.OUTLIER_SCORE_NAME], images[chosen])
    assert table["test_flagged"] == pytest.approx(float((scores > OUTLIER_THRESHOLD).mean()), abs=1e-4)


def test_a_file_without_an_outlier_score_cannot_be_measured(tmp_path, test_set):
    plain = load_model(build_model(tmp_path / "plain.onnx"))
    with pytest.raises(DataError, match="no outlier score"):
        measure(plain, *test_set, count=20)


def test_the_gate_refuses_a_worse_separation_and_compares_only_like_with_like(table):
    card = {"version": "old", model_file.CARD_OUTLIER_BENCHMARK: table}
    assert gate(table, card)["passed"] is True
    worse = {**table, "mean_auroc": table["mean_auroc"] - 0.02}
    assert gate(worse, card) == gate(worse, card) | {"compared": True, "passed": False, "drop": 0.02}
    slightly = {**table, "mean_auroc": table["mean_auroc"] - 0.005}
    assert gate(slightly, card)["passed"] is True
    assert gate(worse, {"version": "old"})["compared"] is False  # a card from before the benchmark
    other = {**worse, "data": "another"}
    assert gate(other, card)["compared"] is False
    assert gate(other, card)["passed"] is True


def test_the_command_writes_its_table_the_docs_and_its_exit_codes(scored_path, processed_dir, tmp_path, table):
    docs = tmp_path / "trust.md"
    docs.write_text(f"before\n{outliers.DOCS_START}\nthe previous table\n{outliers.DOCS_END}\nafter\n")
    out = tmp_path / "table.json"
    args = [str(scored_path), "--data", str(processed_dir), "--out", str(out), "--docs", str(docs)]
    assert outliers.main(args) == EXIT_OK
    written = json.loads(out.read_text())
    assert written["groups"].keys() == table["groups"].keys()
    text = docs.read_text()
    assert text.startswith("before\n")
    assert text.endswith("after\n")
    assert "| faces | package |" in text
    assert "the previous table" not in text
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"version": "old", model_file.CARD_OUTLIER_BENCHMARK: {
        **written, "mean_auroc": written["mean_auroc"] + 0.05}}))  # fmt: skip
    assert outliers.main([*args[:5], "--baseline", str(card)]) == EXIT_REFUSED
    assert json.loads(out.read_text())["gate"]["passed"] is False
    plain = build_model(tmp_path / "plain.onnx")
    assert outliers.main([str(plain), "--data", str(processed_dir)]) == EXIT_USAGE

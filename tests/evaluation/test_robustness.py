"""The robustness benchmark (evaluation/robustness.py): its subset, its table, the upload path through the service's
decoding, the gate's verdicts, the docs' table, and a run with torch unimportable. A tiny contract model
(tests/serve/tiny_model.py) on the synthetic test split keeps it to seconds."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from contract.model_file import OUTLIER_SCORE_NAME
from contract.paths import PROJECT_ROOT
from evaluation import robustness, robustness_report
from evaluation.corruptions import CORRUPTIONS
from evaluation.robustness import EXIT_OK, EXIT_REFUSED, gate, load_test_set, measure, stratified_subset
from evaluation.upload_path import PHOTO_SIZES, photo_jpeg, photo_name, through_service
from serve.model import load_model
from tests.serve.tiny_model import LABELS, OUTLIER_THRESHOLD, build_model, contract_metadata, outlier_metadata


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(build_model(tmp_path_factory.mktemp("robustness") / "tiny.onnx"))


@pytest.fixture(scope="module")
def test_set(processed_dir):
    return load_test_set(processed_dir, tuple(LABELS))


@pytest.fixture(scope="module")
def table(tiny, test_set):
    return measure(tiny, *test_set, count=20, photos=10)


def table_with_mean(table: dict, mean: float) -> dict:
    return {**table, "mean_corrupted_top1": mean}


def test_the_prepared_split_and_the_raw_tarball_give_the_same_images(processed_dir, raw_dir, test_set):
    images, truth = test_set
    from_tarball = load_test_set(raw_dir / "cifar10-test.tar.gz", tuple(LABELS))
    assert np.array_equal(from_tarball[0], images)
    assert np.array_equal(from_tarball[1], truth)


def test_the_subset_is_stratified_sorted_and_seeded():
    truth = np.repeat(np.arange(10), 50)
    chosen = stratified_subset(truth, 100, seed=0)
    assert np.array_equal(np.bincount(truth[chosen]), [10] * 10)
    assert np.array_equal(chosen, np.sort(chosen))
    assert np.array_equal(chosen, stratified_subset(truth, 100, seed=0))
    assert not np.array_equal(chosen, stratified_subset(truth, 100, seed=1))
    assert len(stratified_subset(truth, 10_000, seed=0)) == 500  # more than there are: all of them


def test_the_table_has_every_corruption_at_every_level_and_the_upload_path(table):
    assert set(table["corruptions"]) == {corruption.name for corruption in CORRUPTIONS}
    for corruption in CORRUPTIONS:
        row = table["corruptions"][corruption.name]
        assert row["levels"] == list(corruption.levels)
        assert len(row["top1"]) == len(corruption.levels)
        assert all(0 <= score <= 1 for score in row["top1"])
        assert row["mean_top1"] == pytest.approx(np.mean(row["top1"]), abs=1e-4)
    cells = [score for row in table["corruptions"].values() for score in row["top1"]]
    assert table["mean_corrupted_top1"] == pytest.approx(np.mean(cells), abs=1e-4)
    assert 0 <= table["clean_top1"] <= 1
    assert table["test_images"] == 20
    assert set(table["upload"]) == {photo_name(size) for size in PHOTO_SIZES} == {"photo_640x480", "photo_4000x3000"}
    assert table["upload"]["photo_640x480"]["images"] == 20
    assert table["upload"]["photo_4000x3000"]["images"] == 10
    assert table["version"] == "0123abcd"
    json.dumps(table)  # it goes into the card


def test_a_file_without_an_outlier_score_has_no_flagged_shares(table):
    assert table["clean_flagged"] is None
    assert all(row["flagged"] == [None] * len(row["levels"]) for row in table["corruptions"].values())
    assert "Flagged as none of the ten" not in robustness_report.markdown(table, robustness.worst(table))


def test_the_flagged_share_of_every_cell_is_the_outlier_flag_on_the_corrupted_pictures(tmp_path, test_set):
    """The tiny score is the bottom half's brightness: brightening pictures must raise the share flagged."""
    path = build_model(tmp_path / "scored.onnx", metadata=contract_metadata(outlier=outlier_metadata()),
                       outlier_score=True)  # fmt: skip
    model = load_model(path)
    scored = measure(model, *test_set, count=20, photos=10)
    images, truth = test_set
    chosen = stratified_subset(truth, 20, seed=0)
    (scores,) = model.outputs([OUTLIER_SCORE_NAME], images[chosen])
    assert scored["clean_flagged"] == pytest.approx(float((scores > OUTLIER_THRESHOLD).mean()), abs=1e-4)
    for row in scored["corruptions"].values():
        assert len(row["flagged"]) == len(row["levels"])
        assert all(0 <= share <= 1 for share in row["flagged"])
    brighter = scored["corruptions"]["brighter"]["flagged"]
    assert brighter[-1] >= brighter[0]
    assert "Flagged as none of the ten (clean: " in robustness_report.markdown(scored, robustness.worst(scored))


def test_the_same_model_and_images_give_the_same_table(tiny, test_set, table):
    assert measure(tiny, *test_set, count=20, photos=10) == table


def test_a_photo_is_a_jpeg_of_its_size_that_the_service_brings_back_to_the_picture(test_set, tiny):
    picture = test_set[0][0]
    for size in PHOTO_SIZES:
        data = photo_jpeg(picture, size)
        with Image.open(io.BytesIO(data)) as photo:
            assert (photo.format, photo.size) == ("JPEG", size)
        seen = through_service(data, input_size=tiny.input_size, policy=tiny.resize)
        assert seen.shape == (32, 32, 3)
        assert np.abs(seen.astype(int) - picture).mean() < 12  # enlarged, coded and shrunk back: nearly itself


def test_images_of_another_size_than_the_models_are_refused(tiny, test_set):
    images, truth = test_set
    with pytest.raises(robustness.DataError, match="the model takes"):
        measure(tiny, images[:, :16, :16], truth)


def test_the_gate_refuses_more_than_one_point_below_the_baseline_and_accepts_within(table):
    baseline = {"version": "shipped", "robustness": table_with_mean(table, 0.70)}
    refused = gate(table_with_mean(table, 0.6899), baseline)
    assert refused["compared"]
    assert not refused["passed"]
    assert refused["drop_pp"] == pytest.approx(1.01)
    assert "REFUSED" in robustness.gate_line(refused, table_with_mean(table, 0.6899))
    assert gate(table_with_mean(table, 0.69), baseline)["passed"]  # exactly 1 pp: still accepted
    assert gate(table_with_mean(table, 0.75), baseline)["passed"]  # better
    assert gate(table_with_mean(table, 0.60), baseline, max_drop_pp=20)["passed"]


def test_the_gate_does_not_compare_tables_of_other_images_or_corruptions(table):
    worse = table_with_mean(table, 0.0)
    other_images = {"robustness": {**table, "data": "another-set"}}
    other_levels = {"robustness": {**table, "corruptions": {**table["corruptions"], "jpeg": {"levels": [90]}}}}
    for baseline, reason in [
        (None, "no robustness table"),
        ({"version": "v"}, "no robustness table"),
        (other_images, "other test images"),
        (other_levels, "other corruptions"),
    ]:
        result = gate(worse, baseline)
        assert (result["compared"], result["passed"]) == (False, True)
        assert reason in result["reason"]


def test_the_markdown_table_names_every_cell_and_the_docs_keep_their_prose(table, tmp_path):
    text = robustness_report.markdown(table, robustness.worst(table))
    for name, row in table["corruptions"].items():
        assert f"| {name} |" in text
        assert text.count(f"{name} ") + text.count(f"| {name}") >= 1
        assert all(f"{score * 100:.1f} %" in text for score in row["top1"])
    assert "photo_4000x3000" in text
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nprose\n\n{robustness_report.START}\nold table\n{robustness_report.END}\n\nmore\n")
    robustness_report.update_docs(doc, text)
    robustness_report.update_docs(doc, text)  # again: the same file
    written = doc.read_text()
    assert written.startswith("# Title\n\nprose\n\n")
    assert written.endswith("\n\nmore\n")
    assert "old table" not in written
    assert written.count(text) == 1
    doc.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        robustness_report.update_docs(doc, text)


def test_the_worst_cells_come_first(table):
    worst = robustness.worst(table, count=3)
    scores = sorted(score for row in table["corruptions"].values() for score in row["top1"])
    assert [cell[2] for cell in worst] == scores[:3]


# A fresh interpreter where importing torch fails: the whole command on onnxruntime, numpy, Pillow and serve.
NO_TORCH = """
import sys
sys.modules["torch"] = None
from evaluation.robustness import main
code = main(sys.argv[1:])
assert "torch" not in [name.split(".")[0] for name in sys.modules if sys.modules[name] is not None]
sys.exit(code)
"""


def run_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_command_runs_without_torch_and_its_gate_refuses_a_worse_model(tiny, processed_dir, table, tmp_path):
    better = tmp_path / "card.json"
    better.write_text(json.dumps({"version": "shipped", "robustness": table_with_mean(table, 0.99)}))
    out, docs = tmp_path / "table.json", tmp_path / "robustness.md"
    docs.write_text(f"{robustness_report.START}\n{robustness_report.END}\n")
    args = [str(tiny.path), "--data", str(processed_dir), "--images", "20", "--photos", "10", "--out", str(out)]
    done = run_without_torch(*args, "--baseline", str(better), "--docs", str(docs))
    assert done.returncode == EXIT_REFUSED, done.stderr[-2000:]
    assert "robustness gate REFUSED" in done.stdout
    written = json.loads(out.read_text())
    assert written["gate"]["passed"] is False
    assert {key: value for key, value in written.items() if key != "gate"} == table
    assert robustness_report.markdown(table, robustness.worst(table)) in docs.read_text()

    same = tmp_path / "same.json"
    same.write_text(json.dumps({"version": "shipped", "robustness": table}))
    done = run_without_torch(*args, "--baseline", str(same))
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    assert "robustness gate passed" in done.stdout
    assert json.loads(out.read_text())["gate"]["drop_pp"] == 0


def test_unusable_inputs_give_one_line_and_exit_2(tiny, tmp_path, capsys):
    assert robustness.main([str(tmp_path / "missing.onnx")]) == robustness.EXIT_USAGE
    assert robustness.main([str(tiny.path), "--data", str(tmp_path / "none.tar.gz")]) == robustness.EXIT_USAGE
    (tmp_path / "plain.md").write_text("no markers")
    assert robustness.main([str(tiny.path), "--docs", str(tmp_path / "plain.md")]) == robustness.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "missing.onnx" in err[0]
    assert "none.tar.gz" in err[1]
    assert "plain.md: lacks the markers" in err[2]


def test_the_shipped_card_and_the_docs_show_one_robustness_table():
    card = json.loads((PROJECT_ROOT / "shipped" / "model-card.json").read_text())
    assert "robustness" in card, (
        "record it: python -m export.benchmark_gates shipped/model.int8.onnx (docs/robustness.md)"
    )
    table = card["robustness"]
    assert table["version"] == card["version"]
    inside = load_model(PROJECT_ROOT / "shipped" / "model.int8.onnx").metadata["card"]
    assert inside["robustness"] == table
    docs = (PROJECT_ROOT / "docs" / "robustness.md").read_text()
    assert robustness_report.markdown(table, robustness.worst(table)) in docs

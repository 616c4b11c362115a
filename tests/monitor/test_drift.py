"""The drift check on synthetic logs: clean traffic passes, darkened traffic is flagged, bad input is counted, and the
exit codes a scheduled job relies on."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from contract import input_summary
from contract import prediction_log as plog
from monitor import logs, stats
from monitor.__main__ import EXIT_DRIFT, EXIT_EMPTY, EXIT_OK, EXIT_USAGE, main
from tests.monitor.conftest import prediction_lines, time_at, write_log


def drift(*args) -> tuple[int, dict, str]:
    *logs_and_options, out = args
    code = main(["drift", *map(str, logs_and_options), "--out", str(out)])
    result = json.loads((out / "drift.json").read_text()) if (out / "drift.json").exists() else {}
    page = (out / "report.html").read_text() if (out / "report.html").exists() else ""
    return code, result, page


def test_clean_traffic_is_not_flagged(clean_log, reference_file, tmp_path):
    code, result, page = drift(clean_log, "--reference", reference_file, "--fail-on-drift", tmp_path / "out")
    assert code == EXIT_OK
    assert result["drift"] is False
    assert result["status"] == "no_drift"
    assert {test["name"] for test in result["tests"]} == {
        *input_summary.FEATURES,
        "confidence",
        "predicted_label",
        "embedding",
    }
    for test in result["tests"]:
        assert 0 <= test["p_value"] <= 1
        assert test["p_adjusted"] >= test["p_value"]
        assert isinstance(test["statistic"], float)
    assert result["window"]["predictions"] == 400
    assert result["window"]["first"] == time_at(0)
    assert "No drift" in page


def test_darkened_traffic_is_flagged(dark_log, reference_file, tmp_path):
    code, result, page = drift(dark_log, "--reference", reference_file, tmp_path / "out")
    assert code == EXIT_OK  # drift found, but no --fail-on-drift
    assert result["drift"] is True
    assert {"brightness", "mean_r", "embedding"} <= set(result["drifted"])
    assert "saturation" not in result["drifted"]  # halving every channel keeps (max - min) / max
    assert "Drift: " in page
    code, _, _ = drift(dark_log, "--reference", reference_file, "--fail-on-drift", tmp_path / "again")
    assert code == EXIT_DRIFT


def test_report_is_self_contained(dark_log, reference_file, tmp_path):
    _, _, page = drift(dark_log, "--reference", reference_file, tmp_path / "out")
    assert page.count("data:image/png;base64,") == 3  # features, labels, embedding
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page


def test_corrupt_and_foreign_lines_are_skipped_and_counted(tmp_path, clean_pictures, reference_file):
    junk = ["not json\n", '{"message": "GET /healthz", "severity": "INFO"}\n', "\n", '{"log_version": 1, "kind": "pr']
    log = write_log(tmp_path / "mixed.jsonl", prediction_lines(*clean_pictures)[:100], junk)
    code, result, _ = drift(log, "--reference", reference_file, tmp_path / "out")
    assert code == EXIT_OK
    assert result["lines"]["skipped"] == {"corrupt": 2, "foreign": 1, "malformed": 0}
    assert result["lines"]["blank"] == 1
    assert result["window"]["predictions"] == 100


def test_gzip_and_bigquery_rows(tmp_path, clean_pictures, reference_file):
    rows = []
    for line in prediction_lines(*clean_pictures)[:50]:
        payload = dict(line)
        timestamp = payload.pop("time").replace("T", " ").replace("Z", " UTC")
        rows.append(json.dumps({"timestamp": timestamp, "severity": "INFO", "jsonPayload": payload}) + "\n")
    path = tmp_path / "export.json.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(rows)
    code, result, _ = drift(path, "--reference", reference_file, tmp_path / "out")
    assert code == EXIT_OK
    assert result["window"]["predictions"] == 50
    assert result["window"]["first"] == time_at(0)


def test_empty_window_says_so(tmp_path, reference_file):
    log = write_log(tmp_path / "junk.jsonl", [], ["garbage\n", "[]\n"])
    code, result, page = drift(log, "--reference", reference_file, "--fail-on-drift", tmp_path / "out")
    assert code == EXIT_EMPTY
    assert result["status"] == "empty"
    assert result["drift"] is False
    assert result["tests"] == []
    assert "no prediction lines" in result["message"]
    assert "Empty window" in page


def test_window_and_time_range(tmp_path, clean_pictures, reference_file):
    log = write_log(tmp_path / "clean.jsonl", prediction_lines(*clean_pictures))
    _, last, _ = drift(log, "--reference", reference_file, "--window", "30", tmp_path / "last")
    assert last["window"]["predictions"] == 30
    assert last["window"]["first"] == time_at(370)
    _, ranged, _ = drift(
        log, "--reference", reference_file, "--since", time_at(100), "--until", time_at(150), tmp_path / "ranged"
    )
    assert ranged["window"]["predictions"] == 50
    code, _, _ = drift(log, "--reference", reference_file, "--since", time_at(10_000), tmp_path / "future")
    assert code == EXIT_EMPTY


def test_other_model_versions_are_kept_out_of_the_model_tests(tmp_path, clean_pictures, reference_file):
    lines = prediction_lines(*clean_pictures, version="v2")
    code, result, _ = drift(write_log(tmp_path / "v2.jsonl", lines), "--reference", reference_file, tmp_path / "o")
    assert code == EXIT_OK
    assert result["lines"]["other_model_version"] == 400
    assert {test["name"] for test in result["tests"]} == set(input_summary.FEATURES)


def test_feedback_accuracy(tmp_path, clean_pictures, reference_file):
    predictions = prediction_lines(*clean_pictures)[:40]
    feedback = [
        plog.build_feedback(
            request_id=line["request_id"], label=line["label"], predicted=line["label"], time=time_at(50)
        )
        for line in predictions[:6]
    ]
    feedback.append(plog.build_feedback(request_id="req-00006", label="cat", predicted="dog", time=time_at(51)))
    feedback.append(
        plog.build_feedback(request_id="req-00007", label="none_of_these", predicted="cat", time=time_at(52))
    )
    # A change of mind: the last feedback for a request wins; a repeat of feedback is harmless
    feedback.append(plog.build_feedback(request_id="req-00000", label="dog", predicted="cat", time=time_at(53)))
    feedback.append(plog.build_feedback(request_id="unknown-id", label="dog", predicted="dog", time=time_at(54)))
    log = write_log(tmp_path / "with-feedback.jsonl", [*predictions, *feedback])
    _, result, page = drift(log, "--reference", reference_file, tmp_path / "out")
    summary = result["feedback"]
    assert summary["requests"] == 9
    assert summary["replaced"] == 1
    assert (summary["right"], summary["wrong"], summary["none_of_these"]) == (6, 2, 1)
    assert summary["reported_accuracy"] == pytest.approx(6 / 9)
    assert "67%" in page


def test_usage_errors(tmp_path, clean_log, reference_file):
    assert (
        main(["drift", str(tmp_path / "missing.jsonl"), "--reference", str(reference_file), "--out", str(tmp_path)])
        == EXIT_USAGE
    )
    assert (
        main(["drift", str(clean_log), "--reference", str(tmp_path / "none.json"), "--out", str(tmp_path)])
        == EXIT_USAGE
    )
    (tmp_path / "bad.json").write_text("{}")
    assert (
        main(["drift", str(clean_log), "--reference", str(tmp_path / "bad.json"), "--out", str(tmp_path)]) == EXIT_USAGE
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["drift", str(clean_log), "--window", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == EXIT_USAGE


def test_logs_keep_order_for_ties(tmp_path, clean_pictures):
    lines = prediction_lines(*clean_pictures)[:3]
    for line in lines:
        line["time"] = time_at(0)
    read = logs.read([str(write_log(tmp_path / "ties.jsonl", lines))])
    assert [line["request_id"] for line in logs.chronological(read.predictions)] == [
        item["request_id"] for item in lines
    ]


# ---- the tests themselves, against values from the literature


def test_chi2_counts():
    # a 2 x 2 table just past the 5 % point of chi-square with one degree of freedom (3.841)
    statistic, p, dof = stats.chi2_counts(np.array([50, 50]), np.array([36, 64]))
    assert (dof, round(statistic, 3)) == (1, 3.998)
    assert p == pytest.approx(0.0455, abs=1e-4)
    assert stats.chi2_counts(np.array([5, 0]), np.array([0, 0]))[1] == 1.0  # an empty window: nothing to test


def test_ks():
    rng = np.random.default_rng(0)
    a = rng.normal(size=2000)
    assert stats.ks_2samp(a, a)[1] == 1.0
    assert stats.ks_2samp(a, rng.normal(size=400))[1] > 0.01
    assert stats.ks_2samp(a, rng.normal(0.5, size=400))[1] < 1e-10


def test_mmd_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 8))
    bandwidth = stats.median_bandwidth(reference)
    same = stats.mmd_test(reference, rng.normal(size=(200, 8)), bandwidth)
    shifted = stats.mmd_test(reference, rng.normal(0.4, size=(200, 8)), bandwidth)
    assert same["p_value"] > 0.01
    assert shifted["p_value"] < 1e-6


def test_holm():
    rejected, adjusted = stats.holm([0.001, 0.04, 0.02, 0.5], 0.05)
    assert rejected == [True, False, False, False]
    assert adjusted == pytest.approx([0.004, 0.08, 0.06, 0.5])


def test_the_outlier_share_over_the_window_and_over_time(tmp_path, clean_pictures, reference_file):
    """The first half hour of answers flags one in ten, the second half every other: the report draws it over time
    beside the reference's share; lines of a model without an outlier score (null) do not count."""
    images, classes = clean_pictures
    lines = prediction_lines(images, classes)
    for i, line in enumerate(lines):
        line["outlier"] = i % 10 == 0 if i < 200 else i % 2 == 0
        line["outlier_score"] = 9.0 if line["outlier"] else 1.0
    lines[0]["outlier"] = lines[0]["outlier_score"] = None
    reference = json.loads(reference_file.read_text())
    reference["shares"]["outlier"] = 0.04
    (tmp_path / "reference.json").write_text(json.dumps(reference))
    code, result, page = drift(write_log(tmp_path / "log.jsonl", lines), "--reference", tmp_path / "reference.json",
                               tmp_path / "out")  # fmt: skip
    assert code == EXIT_OK
    flagged = [line["outlier"] for line in lines if line["outlier"] is not None]
    assert result["outliers"]["answers"] == 399
    assert result["outliers"]["share"] == pytest.approx(np.mean(flagged))
    over_time = result["outliers"]["over_time"]
    assert sum(part["answers"] for part in over_time) == 399
    assert over_time[0]["share"] == pytest.approx(0.0 if over_time[0]["answers"] < 10 else 0.1, abs=0.06)
    assert over_time[-1]["share"] == pytest.approx(0.5, abs=0.06)
    assert [part["start"] for part in over_time] == sorted(part["start"] for part in over_time)
    assert result["reference_shares"] == {"not_sure": reference["shares"]["not_sure"], "outlier": 0.04}
    assert "None of the ten (the outlier flag): " in page
    assert "(reference 4.0%)" in page
    assert page.count("data:image/png;base64,") == 4  # features, labels, outliers over time, embedding


def test_a_log_without_outlier_flags_has_no_share(clean_log, reference_file, tmp_path):
    _, result, _ = drift(clean_log, "--reference", reference_file, tmp_path / "out")
    assert result["outliers"] == {"answers": 0, "share": None, "over_time": []}

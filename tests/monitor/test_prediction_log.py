"""The log line's schema (contract/prediction_log.py): written, read back, and everything else refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract import input_summary
from contract import prediction_log as plog
from tests.monitor.conftest import pictures, prediction_lines, thumbnail


@pytest.fixture(scope="module")
def line() -> dict:
    return prediction_lines(*pictures(1, seed=3))[0]


def test_prediction_round_trip(line):
    text = plog.dumps(line)
    assert "\n" not in text
    parsed = plog.parse_line(text)
    assert parsed["kind"] == plog.KIND_PREDICTION
    for key in ("request_id", "label", "score", "top_k", "latency_ms", "upload", "input", "embedding"):
        assert parsed[key] == line[key], key
    assert parsed["model"] == line["model"]
    assert parsed["time"] == line["time"]
    assert len(parsed["embedding"]) == input_summary.EMBEDDING_DIMS
    # A Cloud Logging structured entry: severity and a short message
    assert line["severity"] == "INFO"
    assert line["request_id"] in line["message"]


def test_a_line_without_embedding_still_parses(line):
    del line["embedding"]
    assert plog.parse_line(plog.dumps(line))["embedding"] is None


def test_feedback_round_trip_and_consent():
    shared = plog.build_feedback(
        request_id="abc", label="cat", predicted="dog", thumbnail=thumbnail(pictures(1, 0)[0][0]), share_thumbnail=True
    )
    private = plog.build_feedback(request_id="abc", label="cat", predicted="dog", thumbnail="AAAA")
    assert shared["verdict"] == plog.VERDICT_WRONG
    assert shared["thumbnail"]
    assert "thumbnail" not in private
    assert private["share_thumbnail"] is False
    parsed = plog.parse_line(plog.dumps(shared))
    assert (parsed["label"], parsed["predicted"], parsed["verdict"]) == ("cat", "dog", "wrong")
    assert parsed["thumbnail"] == shared["thumbnail"]


@pytest.mark.parametrize(
    ("label", "predicted", "correct", "verdict"),
    [
        ("cat", "cat", None, "right"),
        ("cat", "dog", None, "wrong"),
        ("cat", "dog", True, "wrong"),  # the labels decide when both are given
        ("cat", None, True, "right"),
        ("cat", None, False, "wrong"),
        ("none_of_these", "cat", None, "none_of_these"),
    ],
)
def test_verdict(label, predicted, correct, verdict):
    assert plog.verdict(label, predicted, correct) == verdict


def test_feedback_needs_something_to_compare_with():
    with pytest.raises(ValueError, match="predicted"):
        plog.build_feedback(request_id="abc", label="cat")


def test_bigquery_row_with_strings_for_numbers(line):
    """A row of `bq query --format=json` / an NDJSON export of the sink's table: the line under jsonPayload, its
    `time` moved to the entry's timestamp, numbers and booleans as strings."""
    payload = json.loads(json.dumps(line), parse_float=str, parse_int=str)
    del payload["time"]
    row = {"timestamp": "2025-03-01 12:00:00.250000 UTC", "severity": "INFO", "jsonPayload": payload}
    parsed = plog.parse_line(json.dumps(row))
    assert parsed["score"] == pytest.approx(line["score"])
    assert parsed["input"]["brightness"] == pytest.approx(line["input"]["brightness"])
    assert parsed["time"] == "2025-03-01T12:00:00.250000Z"
    # Log Analytics datasets: json_payload, a JSON string
    assert plog.parse_line(json.dumps({"timestamp": "1740830400.5", "json_payload": json.dumps(line)})) is not None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", plog.BLANK),
        ("not json at all", plog.CORRUPT),
        ('{"truncated": ', plog.CORRUPT),
        ("[1, 2, 3]", plog.CORRUPT),
        (b"\xff\xfe\x00", plog.CORRUPT),
        ('{"message": "GET /healthz 200", "severity": "INFO"}', plog.FOREIGN),
        ('{"log_version": 99, "kind": "prediction"}', plog.FOREIGN),
        ('{"log_version": 1, "kind": "something_else"}', plog.FOREIGN),
        ('{"jsonPayload": "not an object {"}', plog.FOREIGN),
    ],
)
def test_corrupt_and_foreign_lines(text, reason):
    assert plog.classify_line(text) == (None, reason)
    assert plog.parse_line(text) is None


@pytest.mark.parametrize(
    "change",
    [
        {"request_id": "../../etc/passwd"},
        {"request_id": None},
        {"score": "high"},
        {"score": None},
        {"label": 3},
        {"input": {"brightness": 0.5}},
        {"embedding": [0.1, "x"]},
    ],
)
def test_malformed_lines(line, change):
    text = plog.dumps(line | change)
    assert plog.classify_line(text) == (None, plog.MALFORMED)


def test_nan_is_never_written_nor_read(line):
    with pytest.raises(ValueError, match="JSON compliant"):
        plog.dumps(line | {"score": float("nan")})
    assert plog.parse_line(json.dumps(line | {"score": float("nan")})) is None


def test_request_ids():
    assert plog.valid_request_id(plog.new_request_id())
    assert plog.valid_request_id("0af7651916cd43dd8448eb211c80319c")  # a Cloud Run trace id
    for bad in ("", ".hidden", "a/b", "a" * 129, "a b", 5):
        assert not plog.valid_request_id(bad)


def test_summarize_input_known_values():
    black = np.zeros((1, 32, 32, 3), np.uint8)
    grey = np.full((1, 32, 32, 3), 128, np.uint8)
    red = np.zeros((1, 32, 32, 3), np.uint8)
    red[..., 0] = 255
    checker = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)[None, ..., None].repeat(3, -1)
    black_s, grey_s, red_s, checker_s = input_summary.summarize_input(np.concatenate([black, grey, red, checker]))
    assert set(black_s) == set(input_summary.FEATURES)
    assert black_s["brightness"] == 0
    assert black_s["saturation"] == 0
    assert black_s["sharpness"] == 0
    assert grey_s["mean_g"] == pytest.approx(128 / 255, abs=1e-5)
    assert grey_s["saturation"] == 0
    assert red_s["saturation"] == 1
    assert red_s["brightness"] == pytest.approx(0.299, abs=1e-5)
    assert checker_s["sharpness"] > 10
    assert checker_s["std_r"] == pytest.approx(0.5, abs=1e-5)


def test_summarize_input_refuses_other_shapes():
    with pytest.raises(ValueError, match="uint8"):
        input_summary.summarize_input(np.zeros((32, 32, 3), np.uint8))


def test_embedding_compaction_is_fixed():
    """The projection is built from integer hashing, so serve and the reference (any numpy) agree exactly."""
    raw = np.ones((2, 512), np.float32)
    compact = input_summary.compact_embedding(raw)
    assert compact.shape == (2, input_summary.EMBEDDING_DIMS)
    assert compact.dtype == np.float32
    signs = np.sign(input_summary._projection(512))
    assert set(np.unique(signs)) == {-1.0, 1.0}
    assert abs(signs.mean()) < 0.05  # balanced
    # The first row's signs, as bits: changing the projection invalidates every shipped reference.
    assert np.packbits(signs[0] > 0).tolist() == [176, 1, 67, 7]
    assert int((signs > 0).sum()) == 8194
    # distances survive the projection (Johnson-Lindenstrauss) within a few tens of per cent for one pair
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 512)).astype(np.float32)
    ratio = np.linalg.norm(input_summary.compact_embedding((a - b)[None])) / np.linalg.norm(a - b)
    assert 0.6 < ratio < 1.4
    assert all(len(row) == input_summary.EMBEDDING_DIMS for row in input_summary.embedding_for_log(raw))


def test_array_packing_round_trip():
    values = np.random.default_rng(0).random((5, 3))
    packed = input_summary.pack_array(values, "float32")
    assert json.loads(json.dumps(packed)) == packed
    np.testing.assert_allclose(input_summary.unpack_array(packed), values, rtol=1e-6)

"""Export's trust step: the calibration folded into the graph computes what export/calibration.py computes, never
changes top-1 and improves calibration; the outlier score in the graph is the numpy score; its threshold keeps its
share of validation pictures; the gate refuses a worse-calibrated candidate or one that flags more clean pictures."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.special import expit, logit, softmax

from contract import model_file
from export import calibration, outlier_score, trust
from export.evaluation import load_split, session


def test_the_card_and_file_carry_calibration_and_the_outlier_score(exported):
    out, card = exported
    for name in ("model.onnx", "model.int8.onnx"):
        meta = json.loads(json.dumps(session(out / name).get_modelmeta().custom_metadata_map))
        assert json.loads(meta[model_file.CALIBRATION])["method"] == calibration.METHOD
        assert model_file.outlier_threshold({model_file.OUTLIER: json.loads(meta[model_file.OUTLIER])}) is not None
    cal, outliers = card["calibration"], card["outliers"]
    assert cal["top1_unchanged"] is True
    assert cal["ece_validation"]["after"] <= cal["ece_validation"]["before"] + 1e-9  # fitted there: never worse
    assert outliers["keep_validation"] == outlier_score.KEEP
    assert abs(outliers["validation_flagged"] - (1 - outlier_score.KEEP)) <= 1 / outliers["validation_images"] + 1e-9


def test_the_folded_calibration_is_the_fitted_one(exported, processed_dir):
    path = exported[0] / "model.onnx"
    images, _labels = load_split("test", processed_dir)
    fitted = json.loads(session(path).get_modelmeta().custom_metadata_map[model_file.CALIBRATION])
    chosen = calibration.Calibration(fitted["temperature"], fitted["slope"], fitted["intercept"])
    probe = calibration.with_raw_logits(onnx.load(str(path))).SerializeToString()
    raw, logits = session(probe).run(
        [calibration.RAW_LOGITS, model_file.OUTPUT_NAME], {model_file.INPUT_NAME: images[:200]}
    )
    graph = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(graph, chosen.probabilities(raw), atol=2e-5)
    assert np.array_equal(graph.argmax(1), raw.argmax(1))


def test_calibration_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 4000)
    logits = rng.normal(0, 1, (4000, 10))
    right = rng.random(4000) < 0.7
    logits[np.arange(4000), np.where(right, labels, (labels + 1) % 10)] += 3.0
    logits *= 4  # far too sure
    before = calibration.expected_calibration_error(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), labels)
    fitted = calibration.fit(logits[:2000], labels[:2000])
    after = calibration.expected_calibration_error(fitted.probabilities(logits[2000:]), labels[2000:])
    assert fitted.temperature > 2
    assert before > 0.2
    assert after < 0.05


def test_the_expected_calibration_error_of_known_scores():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])  # the 0.9 bin is right half the time, the 0.6 bin always
    assert calibration.expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def features_model(width: int) -> onnx.ModelProto:
    """float [N, width] in as `embedding_source`, logits out: a graph whose head reads the features directly."""
    weights = numpy_helper.from_array(np.eye(width, 3, dtype=np.float32), "head")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "head"], [model_file.OUTPUT_NAME])],
        "features",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(model_file.OUTPUT_NAME, TensorProto.FLOAT, ["N", 3])],
        [weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_a_lowered_top_score_never_falls_below_the_second():
    """Platt scaling that lowers the top score (slope < 1, intercept < 0) would reorder close answers; the fold keeps
    the top score just above the tie, in numpy and in the graph alike."""
    rng = np.random.default_rng(2)
    raw = rng.normal(0, 1, (500, 10)).astype(np.float32)
    raw[:, 1] = raw[:, 0] - rng.uniform(0, 0.3, 500).astype(np.float32)  # a close second
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["raw"], [model_file.OUTPUT_NAME])], "logits_only",
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info(model_file.OUTPUT_NAME, TensorProto.FLOAT, ["N", 10])],
    ), opset_imports=[helper.make_opsetid("", 18)])  # fmt: skip
    lowering = calibration.Calibration(temperature=1.0, slope=0.3, intercept=-2.0)
    calibration.fold(model, lowering)
    onnx.checker.check_model(model, full_check=True)
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = sess.run([model_file.OUTPUT_NAME], {"raw": raw})
    graph = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(graph, lowering.probabilities(raw), atol=2e-5)
    assert np.array_equal(graph.argmax(1), raw.argmax(1))
    platt_alone = expit(0.3 * logit(softmax(raw.astype(np.float64), axis=1).max(1)) - 2.0)
    assert (platt_alone < np.sort(softmax(raw.astype(np.float64), axis=1), axis=1)[:, -2]).any()  # it would reorder


def test_the_graph_score_is_the_numpy_score():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 600)
    features = rng.normal(0, 1, (600, 6)) + labels[:, None] * 2.0
    gaussian = outlier_score.standardise(outlier_score.fit_gaussian(features[:400], labels[:400], 3), features[400:])
    model = features_model(6)
    tap = outlier_score.Tap(outlier_score.TAP_EMBEDDING, "features", pooled=False)
    outlier_score.add_score(model, (tap,), (gaussian,))
    onnx.checker.check_model(model, full_check=True)
    import onnxruntime as ort

    probe = np.concatenate([features[400:], rng.normal(30, 1, (5, 6))]).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (graph,) = sess.run([model_file.OUTLIER_SCORE_NAME], {"features": probe})
    np.testing.assert_allclose(graph, gaussian.standardised(probe.astype(np.float64)), rtol=1e-3, atol=1e-3)
    threshold = outlier_score.threshold(graph[:200])
    assert (graph[:200] > threshold).mean() == pytest.approx(1 - outlier_score.KEEP, abs=0.01)
    assert (graph[200:] > threshold).all()  # far from every class


def test_the_gate_refuses_worse_calibration_and_more_flags(tmp_path):
    shipped = {
        "calibration": {"ece_test": {"after": 0.013}, "validation_images": 2000},
        "outliers": {"test_flagged": 0.04, "fit_images": 10_000},
    }
    card = tmp_path / "card.json"
    card.write_text(json.dumps(shipped))

    def report(ece: float, flagged: float, validation: int = 2000) -> dict:
        return {
            "calibration": {"ece_test": {"after": ece}, "validation_images": validation},
            "outliers": {"test_flagged": flagged, "fit_images": 10_000},
        }

    trust.gate(report(0.015, 0.045), card)  # within the room for noise
    with pytest.raises(trust.TrustRefused, match="calibration refused"):
        trust.gate(report(0.03, 0.04), card)
    with pytest.raises(trust.TrustRefused, match="outlier score refused"):
        trust.gate(report(0.013, 0.08), card)
    trust.gate(report(0.5, 0.5), None)  # nothing to compare with
    trust.gate(report(0.03, 0.175, validation=40), card)  # fitted on another split (development data): not compared
    card.write_text(json.dumps({"version": "older"}))
    trust.gate(report(0.5, 0.5), card)  # a card from before calibration refuses nothing

"""The class activation map (export/explain.py): on the shipped ResNet-18 its mean over the cells plus nothing else
is the raw logit (up to the int8 head's own rounding), the branch changes no logit, and the MLP gets none."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from contract.cpu import add_int8_entries
from contract.model_file import CAM_NAME, INPUT_NAME, OUTPUT_NAME
from contract.paths import SHIPPED_DIR
from export import explain
from export.calibration import RAW_LOGITS, with_raw_logits


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    add_int8_entries(options)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_the_map_of_the_shipped_network_adds_up_to_its_logits(processed_dir):
    model = onnx.load(str(SHIPPED_DIR / "model.int8.onnx"))
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    assert explain.add_class_activation(model)
    images = np.load(processed_dir / "test_images.npy")[:64]
    probe = with_raw_logits(model) if any(RAW_LOGITS in node.output for node in model.graph.node) else model
    raw = RAW_LOGITS if probe is not model else OUTPUT_NAME
    logits, cam = session(probe).run([raw, CAM_NAME], {INPUT_NAME: images})
    assert cam.shape == (64, 4, 4, logits.shape[1])
    np.testing.assert_allclose(cam.mean(axis=(1, 2)), logits, atol=0.5)  # the int8 head rounds its pooled input
    assert (cam.mean(axis=(1, 2)).argmax(1) == logits.argmax(1)).mean() >= 0.95
    (before,) = session(plain).run([OUTPUT_NAME], {INPUT_NAME: images})
    (after,) = session(model).run([OUTPUT_NAME], {INPUT_NAME: images})
    np.testing.assert_array_equal(before, after)  # nothing on the way to the logits changed


def test_the_mlp_has_no_map(exported):
    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    assert not explain.add_class_activation(model)
    assert CAM_NAME not in [output.name for output in model.graph.output]

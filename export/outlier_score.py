""" "None of the ten": an outlier score computed in the graph from the network's own features, its threshold set on
validation pictures.

The score is the sum of two standardised log Mahalanobis distances (Lee et al., "A simple unified framework for
detecting out-of-distribution samples", 2018): one on the globally pooled feature map the network's second stage
ends with, one on the penultimate features (the `embedding`). Each distance is to the nearest class mean under one
covariance shared by the classes, all fitted on training pictures outside the validation split; each log distance
is standardised by its mean and spread on the validation pictures. The early map sees what a picture is made of
(noise, flat colour, text), the late one what it shows. Chosen on validation pictures and generated outliers only
(docs/trust.md, the outlier score): either layer alone catches less of every generated group.

Everything is float and added after quantization, so int8 never rounds it: a few matrix products of 128 and 512
wide per picture beside the network's 0.56 GFLOP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.model_file import OUTLIER_SCORE_NAME, OUTLIER_THRESHOLD
from export.embedding import float_shapes, head_input

METHOD = "standardised log Mahalanobis distances to the nearest class mean: stage-2 pooled map + embedding"
KEEP = 0.96  # the share of validation pictures under the threshold
SHRINKAGE = 1e-3  # the covariance's ridge, relative to its mean variance: keeps the precision matrix well conditioned
TAP_STAGE = "stage2"
TAP_EMBEDDING = "embedding"


@dataclass(frozen=True)
class Tap:
    """One feature the score reads: its name in the score, and the graph tensor it pools (or reads as is)."""

    name: str
    tensor: str
    pooled: bool  # a [N, C, H, W] map, averaged over H and W; else already [N, D]


def taps(model: onnx.ModelProto) -> tuple[Tap, ...]:
    """The second stage's output map (the last [N, C, H/2, W/2] float tensor the graph makes), when the network has
    one (a convolutional network; not the MLP), and the embedding."""
    shapes = float_shapes(model)
    height = _input_height(model)
    stage = None
    for node in model.graph.node:
        for name in node.output:
            shape = shapes.get(name)
            if shape and len(shape) == 4 and shape[2] == height // 2 and shape[3] is not None:
                stage = name
    embedding = Tap(TAP_EMBEDDING, head_input(model.graph), pooled=False)
    return (embedding,) if stage is None else (Tap(TAP_STAGE, stage, pooled=True), embedding)


def _input_height(model: onnx.ModelProto) -> int:
    return model.graph.input[0].type.tensor_type.shape.dim[1].dim_value  # uint8 [N, H, W, 3]


def add_tap_outputs(model: onnx.ModelProto, chosen: tuple[Tap, ...]) -> list[str]:
    """Expose each tap as a float [N, D] output (pooled when it is a map), in place; returns the output names."""
    graph = model.graph
    names = []
    if any(tap.pooled for tap in chosen) and not any(init.name == "outlier.hw_axes" for init in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "outlier.hw_axes"))
    for tap in chosen:
        name = f"outlier/{tap.name}_features"
        source = tap.tensor
        if tap.pooled:
            graph.node.append(helper.make_node("ReduceMean", [source, "outlier.hw_axes"], [name], keepdims=0))
        else:
            graph.node.append(helper.make_node("Identity", [source], [name]))
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        names.append(name)
    return names


@dataclass(frozen=True)
class Gaussian:
    """Class means and a shared precision of one tap, and the spread of its log distances on validation."""

    means: np.ndarray  # [C, D]
    whitening: np.ndarray  # [D, D]: W with W @ W.T = precision, so distance^2 = |(x - m) @ W|^2
    log_mean: float = 0.0
    log_std: float = 1.0

    def log_distance(self, features: np.ndarray) -> np.ndarray:
        z, centres = features @ self.whitening, self.means @ self.whitening
        squared = (z**2).sum(1, keepdims=True) - 2 * z @ centres.T + (centres**2).sum(1)
        return np.log(np.maximum(squared.min(axis=1), 1e-12))

    def standardised(self, features: np.ndarray) -> np.ndarray:
        return (self.log_distance(features) - self.log_mean) / self.log_std


def fit_gaussian(features: np.ndarray, labels: np.ndarray, classes: int) -> Gaussian:
    features = np.asarray(features, np.float64)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(classes)])
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    covariance += SHRINKAGE * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    whitening = np.linalg.cholesky(np.linalg.inv(covariance))
    return Gaussian(means, whitening)


def standardise(gaussian: Gaussian, validation: np.ndarray) -> Gaussian:
    distances = gaussian.log_distance(np.asarray(validation, np.float64))
    return Gaussian(gaussian.means, gaussian.whitening, float(distances.mean()), float(distances.std()))


def add_score(model: onnx.ModelProto, chosen: tuple[Tap, ...], gaussians: tuple[Gaussian, ...]) -> None:
    """Append OUTLIER_SCORE_NAME (float32 [N]) to the graph, in place."""
    graph = model.graph
    features = add_tap_outputs(model, chosen)
    del graph.output[len(graph.output) - len(features) :]  # the taps are intermediate here, not outputs
    if not any(init.name == "outlier.class_axis" for init in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "outlier.class_axis"))

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        graph.node.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    parts = []
    for tap, feature, gaussian in zip(chosen, features, gaussians, strict=True):
        prefix = f"outlier/{tap.name}"
        centres = gaussian.means @ gaussian.whitening
        z = node("MatMul", [feature, const(f"{prefix}.whitening", gaussian.whitening)], f"{prefix}/z")
        zz = node("ReduceSumSquare", [z, "outlier.class_axis"], f"{prefix}/zz", keepdims=1)
        cross = node("MatMul", [z, const(f"{prefix}.centres_t", -2 * centres.T)], f"{prefix}/cross")
        squared = node("Add", [node("Add", [zz, cross], f"{prefix}/partial"),
                               const(f"{prefix}.centre_norms", (centres**2).sum(1))], f"{prefix}/squared")  # fmt: skip
        nearest = node("ReduceMin", [squared, "outlier.class_axis"], f"{prefix}/nearest", keepdims=0)
        floored = node("Max", [nearest, const(f"{prefix}.floor", np.float32(1e-12))], f"{prefix}/floored")
        logged = node("Log", [floored], f"{prefix}/log")
        centred = node("Sub", [logged, const(f"{prefix}.log_mean", np.float32(gaussian.log_mean))], f"{prefix}/c")
        parts.append(node("Div", [centred, const(f"{prefix}.log_std", np.float32(gaussian.log_std))], f"{prefix}/s"))
    score = parts[0]
    for index, part in enumerate(parts[1:]):
        score = node("Add", [score, part], f"outlier/sum{index}")
    node("Identity", [score], OUTLIER_SCORE_NAME)
    batch = next(o for o in graph.output if o.name != OUTLIER_SCORE_NAME).type.tensor_type.shape.dim[0]
    output = helper.make_tensor_value_info(OUTLIER_SCORE_NAME, TensorProto.FLOAT, [None])
    output.type.tensor_type.shape.dim[0].CopyFrom(batch)
    graph.output.append(output)


def threshold(validation_scores: np.ndarray, keep: float = KEEP) -> float:
    return float(np.quantile(validation_scores, keep))


def describe(chosen: tuple[Tap, ...], value: float, validation_images: int, fit_images: int) -> dict:
    """The `outlier` metadata value."""
    return {
        OUTLIER_THRESHOLD: round(value, 6),
        "method": METHOD,
        "taps": {tap.name: tap.tensor for tap in chosen},
        "keep_validation": KEEP,
        "validation_images": validation_images,
        "fit_images": fit_images,
    }

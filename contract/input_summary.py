"""What the model saw, summarised the same way everywhere: the features of its uint8 input and the compaction of the
network's embedding, as the service writes them into the prediction log (contract/prediction_log.py), export into
the reference statistics (shipped/reference.json) and the drift check reads them. Stdlib + numpy only."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

# ---- what the model saw: its uint8 input summarised. Values on a 0-1 scale (pixel / 255).
FEATURES = (
    "mean_r", "mean_g", "mean_b",  # per-channel mean
    "std_r", "std_g", "std_b",  # per-channel standard deviation (contrast)
    "brightness",  # mean luma, ITU-R BT.601 weights
    "saturation",  # mean HSV saturation, (max - min) / max per pixel (0 for grey)
    "sharpness",  # variance of the 4-neighbour Laplacian of the luma (low for blurred or flat pictures)
)  # fmt: skip
LUMA = (0.299, 0.587, 0.114)
FEATURE_DIGITS = 5  # decimals kept in the log: far below the spread between pictures (std of brightness ~0.1)
# ---- the embedding: the network's penultimate features (ONNX output contract.model_file.EMBEDDING_NAME, [N, D])
# projected to EMBEDDING_DIMS with a fixed +-1 matrix (a Johnson-Lindenstrauss projection: distances, and so an MMD
# between two samples, are kept up to a few per cent). The matrix comes from integer hashing, not a random
# generator, so every numpy on every platform builds the same one.
EMBEDDING_DIMS = 32
EMBEDDING_DIGITS = 4
_PROJECTION_SEED = 18


# ---- the reference statistics (shipped/reference.json, written by export.drift_reference, read by monitor): the same
# features on test images the model never trained on, as samples the drift tests compare a window of the log with.
REFERENCE_FILE = "reference.json"
REFERENCE_VERSION = 1


def pack_array(values: np.ndarray, dtype: str) -> dict[str, Any]:
    """An array as JSON: little-endian `dtype` ("float32", "float16"), base64 (a third of the size of decimals)."""
    array = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "shape": list(array.shape), "base64": base64.b64encode(array.tobytes()).decode("ascii")}


def round_like_log(values: np.ndarray, digits: int) -> np.ndarray:
    """Values as the log would carry them (rounded to `digits` decimals), so ties in a sample are ties in both."""
    return np.round(np.asarray(values, dtype=np.float64), digits)


def unpack_array(packed: Mapping[str, Any]) -> np.ndarray:
    raw = base64.b64decode(packed["base64"])
    dtype = np.dtype(packed["dtype"]).newbyteorder("<")
    return np.frombuffer(raw, dtype=dtype).reshape(packed["shape"]).astype(np.float64)


def summarize_input(images: np.ndarray) -> list[dict[str, float]]:
    """uint8 [N, H, W, 3] (the model's input) -> one dict of FEATURES per image, values rounded for the log."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    return [
        dict(zip(FEATURES, (round(float(v), FEATURE_DIGITS) for v in row), strict=True)) for row in features(images)
    ]


def features(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, len(FEATURES)], unrounded (the reference and the benchmark use this)."""
    pixels = np.asarray(images, dtype=np.float32) / 255.0
    # Channel planes [N, 3, H*W], contiguous: numpy reduces a contiguous last axis about 4x faster than the
    # interleaved channels (the service summarises every answer: 230 -> 60 us an image, same values to 1e-6).
    planes = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).reshape(len(pixels), 3, -1)
    mean = planes.mean(axis=2)
    std = planes.std(axis=2)
    red, green, blue = planes[:, 0], planes[:, 1], planes[:, 2]
    flat_luma = LUMA[0] * red + LUMA[1] * green + LUMA[2] * blue
    brightness = flat_luma.mean(axis=1)
    high, low = np.maximum(np.maximum(red, green), blue), np.minimum(np.minimum(red, green), blue)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-12), 0.0).mean(axis=1)
    luma = flat_luma.reshape(pixels.shape[:3])
    laplacian = (
        luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:] - 4 * luma[:, 1:-1, 1:-1]
    )
    sharpness = laplacian.reshape(len(luma), -1).var(axis=1)
    return np.column_stack([mean, std, brightness, saturation, sharpness]).astype(np.float64)


@lru_cache(maxsize=4)
def _projection(dim: int) -> np.ndarray:
    """[dim, EMBEDDING_DIMS] of +-1/sqrt(EMBEDDING_DIMS), signs from splitmix64 of the entry's index."""
    with np.errstate(over="ignore"):
        index = np.arange(dim * EMBEDDING_DIMS, dtype=np.uint64) + np.uint64(_PROJECTION_SEED)
        z = index + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    signs = np.where((z >> np.uint64(63)) == 1, -1.0, 1.0).reshape(dim, EMBEDDING_DIMS)
    return (signs / math.sqrt(EMBEDDING_DIMS)).astype(np.float32)


def compact_embedding(embeddings: np.ndarray) -> np.ndarray:
    """float [N, D] (the model's `embedding` output) -> float32 [N, EMBEDDING_DIMS]."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"expected an embedding [N, D], got shape {list(embeddings.shape)}")
    return embeddings @ _projection(embeddings.shape[1])


def embedding_for_log(embeddings: np.ndarray) -> list[list[float]]:
    """float [N, D] -> one short list of floats per image, as the log carries it."""
    return [[round(float(v), EMBEDDING_DIGITS) for v in row] for row in compact_embedding(embeddings)]

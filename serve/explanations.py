"""Where the model looked, on request (`POST /classify?explain=1`): the class activation map of the answer's label
(contract.model_file.CAM_NAME, computed in the graph: export/explain.py), as a grid of 0-1 weights and as a heatmap
over the picture the model saw.

The plain answer never pays for it: the map is an output only an explained request asks for, in one more run of the
model on that picture alone, off the event loop (its cost, and how faithful it is against occlusion, are measured by
evaluation/explanation_faithfulness.py: docs/trust.md).
"""

from __future__ import annotations

import base64
import io

import anyio.to_thread
import numpy as np
from PIL import Image

from contract.model_file import CAM_NAME
from serve.model import LoadedModel
from serve.schemas import Explanation

METHOD = "class activation map"
DIGITS = 3


def class_map(model: LoadedModel, pixels: np.ndarray, label_index: int) -> np.ndarray:
    """The label's map over the picture's cells, [h, w], scaled to 0-1 (what counted most for it is 1; what counted
    against it, 0)."""
    (maps,) = model.outputs([CAM_NAME], pixels[None])
    cells = np.maximum(maps[0, :, :, label_index].astype(np.float64), 0.0)
    top = cells.max()
    return cells / top if top > 0 else cells


def heatmap_png(pixels: np.ndarray, grid: np.ndarray) -> str:
    """base64 PNG: the model's input, greyed, under the map in warm colours (brighter: counted more)."""
    height, width = pixels.shape[:2]
    weight = (
        np.asarray(
            Image.fromarray((grid * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR),
            dtype=np.float64,
        )[..., None]
        / 255.0
    )
    grey = pixels.astype(np.float64).mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.55
    warm = np.stack([np.full_like(weight[..., 0], 255.0), 160.0 * weight[..., 0], np.zeros_like(weight[..., 0])], 2)
    blended = grey * (1 - 0.7 * weight) + warm * 0.7 * weight
    out = io.BytesIO()
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).save(out, "PNG", compress_level=1)
    return base64.b64encode(out.getvalue()).decode("ascii")


async def explain(model: LoadedModel, pixels: np.ndarray, label: str) -> Explanation | None:
    """The answer's `explanation`, or None for a model file without a class activation map."""
    if not model.has_class_activation:
        return None
    grid = await anyio.to_thread.run_sync(class_map, model, pixels, model.labels.index(label))
    return Explanation(METHOD, label, np.round(grid, DIGITS).tolist(), heatmap_png(pixels, grid))

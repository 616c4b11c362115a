"""Consented, labelled thumbnails from the feedback log -> an image-folder dataset for training.

    data/feedback/<label>/<request_id>.png      the 32x32 picture the model saw, as the person shared it
    data/feedback/manifest.json                 one entry per request: label, the model's answer, time, file

Each request appears once: when a person answered twice, the last feedback (by time, then by position in the log)
wins, and a later harvest moves the picture to the new label. Harvests accumulate: requests already in the manifest
are kept when the logs that held them have rotated away. Only feedback with `share_thumbnail` and one of the model's
labels is harvested; "none of these" and feedback without consent are counted, never stored.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from contract import prediction_log as plog
from monitor import logs

MANIFEST = "manifest.json"
THUMBNAIL_SIZE = (32, 32)  # what the model saw (the shipped model's input_size); anything else is refused


def decode_thumbnail(text: str) -> Image.Image | None:
    """base64 PNG -> an RGB image of THUMBNAIL_SIZE, or None for anything else (never trusted further)."""
    try:
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if image.size != THUMBNAIL_SIZE:
                return None
            image.load()
            return image.convert("RGB")
    except (binascii.Error, ValueError, OSError, Image.DecompressionBombError):
        return None


def _later(first: str | None, second: str | None) -> bool:
    a, b = plog.parse_time(first), plog.parse_time(second)
    return a is not None and b is not None and a > b


def harvest(paths: list[str], out: Path, labels: list[str]) -> dict[str, Any]:
    """Write the dataset into `out`; returns the harvest's counts (also printed by the CLI)."""
    read = logs.read(paths)
    latest, replaced = logs.latest_feedback(read.feedback)
    manifest_path = out / MANIFEST
    previous = json.loads(manifest_path.read_text())["items"] if manifest_path.is_file() else {}
    items: dict[str, dict[str, Any]] = dict(previous)
    skipped: Counter = Counter()
    written = 0
    for request_id, line in latest.items():
        if line["label"] not in labels:
            skipped["none_of_these" if line["label"] == plog.NONE_OF_THESE else "unknown_label"] += 1
            continue
        if not line["share_thumbnail"] or not line["thumbnail"]:
            skipped["no_consent"] += 1
            continue
        old = items.get(request_id)
        if old and _later(old["time"], line["time"]):
            skipped["older_than_harvested"] += 1
            continue
        image = decode_thumbnail(line["thumbnail"])
        if image is None:
            skipped["bad_thumbnail"] += 1
            continue
        file = f"{line['label']}/{request_id}.png"
        (out / line["label"]).mkdir(parents=True, exist_ok=True)
        image.save(out / file, format="PNG")  # re-encoded: no chunk of the upload survives but the pixels
        if old and old["file"] != file:
            (out / old["file"]).unlink(missing_ok=True)
        items[request_id] = {
            "label": line["label"],
            "predicted": line["predicted"],
            "verdict": line["verdict"],
            "time": line["time"],
            "model_version": line["model_version"],
            "file": file,
        }
        written += 1
    out.mkdir(parents=True, exist_ok=True)
    per_label = Counter(item["label"] for item in items.values())
    manifest = {
        "description": "harvested feedback thumbnails: <label>/<request_id>.png; the last feedback per request wins",
        "images": len(items),
        "per_label": dict(sorted(per_label.items())),
        "items": dict(sorted(items.items())),
    }
    tmp = manifest_path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(manifest_path)
    return {
        "out": str(out),
        "feedback_lines": len(read.feedback),
        "requests": len(latest),
        "replaced_by_later_feedback": replaced,
        "written": written,
        "dataset_images": len(items),
        "skipped": dict(skipped),
        "skipped_lines": {reason: count for reason, count in read.skipped.items() if reason != plog.BLANK},
    }

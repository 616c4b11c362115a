"""Consented, labelled thumbnails from the prediction log -> a review folder a person approves -> an image-folder
dataset for training.

    python -m monitor harvest LOGS... [--review data/feedback-review] [--out data/feedback]
        data/feedback-review/<label>/<request_id>.png   each new picture, as the person shared it
        data/feedback-review/summary.json, summary.md   what was kept, what was rejected and why
    python -m monitor approve [--review data/feedback-review] [--out data/feedback]
        data/feedback/<label>/<request_id>.png, data/feedback/manifest.json   the dataset (then `dvc add`)

Only feedback that checks out is kept, so that a flood of forged corrections harvests nothing:
- its request was answered: a prediction line with that id is in the logs read (`never_answered` otherwise);
- it speaks of that answer: same label, model version and input digest as the prediction line (`not_the_answer`);
- with FEEDBACK_KEY (the service's keys, `--key-env`), its token is re-checked: made by the service for that answer
  (`bad_token`); the service already refused any other, so without the key this check is the service's alone;
- the shared thumbnail is the picture the model saw: its digest is the prediction line's (`thumbnail_mismatch`);
- one correction per answer, the FIRST given (by time, then by position in the log): later ones are `repeated`, so
  nobody who learns a request id can replace a genuine correction. Requests already in the dataset stay as they are;
- one of the model's labels (not "none of these") and consent to share the picture.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contract import feedback_token
from contract import prediction_log as plog
from monitor import logs

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
THUMBNAIL_SIZE = (32, 32)  # what the model saw (the shipped model's input_size); anything else is refused
REJECTIONS = (
    "never_answered", "not_the_answer", "bad_token", "thumbnail_mismatch", "bad_thumbnail", "repeated",
    "already_in_dataset", "none_of_these", "unknown_label", "no_consent",
)  # fmt: skip


class HarvestError(Exception):
    """The review folder or the dataset cannot be used; the message is one line."""


def decode_thumbnail(text: str) -> np.ndarray | None:
    """base64 PNG -> uint8 [32, 32, 3] pixels, or None for anything else (never trusted further)."""
    try:
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if image.size != THUMBNAIL_SIZE:
                return None
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (binascii.Error, ValueError, OSError, Image.DecompressionBombError):
        return None


def first_feedback(feedback: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], int]:
    """The first feedback of each request (by time, then position in the log) and how many later ones there were."""
    first: dict[str, dict[str, Any]] = {}
    for line in logs.chronological(feedback):
        first.setdefault(line["request_id"], line)
    return first, len(feedback) - len(first)


def rejection(line: dict[str, Any], answer: dict[str, Any] | None, keys: tuple[bytes, ...], labels: list[str]) -> str:
    """Why a feedback line is not harvested ("" when it is)."""
    if answer is None:
        return "never_answered"
    said = (line["predicted"], line["model_version"], line["input_digest"])
    if said != (answer["label"], answer["model"]["version"], answer["input_digest"]) or not answer["input_digest"]:
        return "not_the_answer"
    if keys:
        given = logs.when(line)
        checked = feedback_token.check(line["token"], line["request_id"], keys, now=given.timestamp() if given else 0,
                                       window_s=float("inf"))  # fmt: skip
        if isinstance(checked, str) or (checked.label, checked.input_digest) != (answer["label"], said[2]):
            return "bad_token"
    if line["label"] not in labels:
        return "none_of_these" if line["label"] == plog.NONE_OF_THESE else "unknown_label"
    if not line["share_thumbnail"] or not line["thumbnail"]:
        return "no_consent"
    pixels = decode_thumbnail(line["thumbnail"])
    if pixels is None:
        return "bad_thumbnail"
    if feedback_token.input_digest(pixels) != answer["input_digest"]:
        return "thumbnail_mismatch"
    return ""


def harvest(paths: list[str], review: Path, out: Path, labels: list[str], keys: tuple[bytes, ...] = ()) -> dict:
    """Write the new pictures that check out into `review`, with their summary; returns the summary."""
    read = logs.read(paths)
    answers = {line["request_id"]: line for line in logs.chronological(read.predictions)}
    first, repeated = first_feedback(read.feedback)
    dataset = _manifest(out)["items"]
    if (review / SUMMARY).is_file():
        raise HarvestError(f"{review} holds a harvest not yet approved: `python -m monitor approve` or remove it")
    rejected: Counter = Counter({"repeated": repeated})
    items: dict[str, dict[str, Any]] = {}
    for request_id, line in first.items():
        reason = (
            "already_in_dataset" if request_id in dataset else rejection(line, answers.get(request_id), keys, labels)
        )
        if reason:
            rejected[reason] += 1
            continue
        file = f"{line['label']}/{request_id}.png"
        (review / line["label"]).mkdir(parents=True, exist_ok=True)
        pixels = decode_thumbnail(line["thumbnail"])
        Image.fromarray(pixels).save(review / file, format="PNG")  # re-encoded: only the pixels survive
        items[request_id] = {key: line[key] for key in ("label", "predicted", "verdict", "time", "model_version")}
        items[request_id]["file"] = file
    summary = {
        "description": "feedback pictures awaiting review: approve with `python -m monitor approve`",
        "logs": [str(path) for path in paths],
        "feedback_lines": len(read.feedback),
        "answered_requests": len(answers),
        "tokens_rechecked": bool(keys),
        "kept": len(items),
        "per_label": dict(sorted(Counter(item["label"] for item in items.values()).items())),
        "rejected": {reason: rejected[reason] for reason in REJECTIONS if rejected[reason]},
        "skipped_lines": {reason: count for reason, count in read.skipped.items() if reason != plog.BLANK},
        "items": dict(sorted(items.items())),
    }
    review.mkdir(parents=True, exist_ok=True)
    _write_json(review / SUMMARY, summary)
    (review / "summary.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    tokens = "re-checked with FEEDBACK_KEY" if summary["tokens_rechecked"] else "checked by the service only"
    lines = [
        f"# Feedback to review: {summary['kept']} pictures",
        "",
        f"From {summary['feedback_lines']} feedback lines and {summary['answered_requests']} answers in the logs "
        f"read; tokens {tokens}.",
        "Look at each picture under its label folder; delete any that is wrong, then `python -m monitor approve`.",
        "",
        "| label | pictures |",
        "|---|---:|",
        *(f"| {label} | {count} |" for label, count in summary["per_label"].items()),
        "",
        "| rejected because | feedback |",
        "|---|---:|",
        *(f"| {reason} | {count} |" for reason, count in summary["rejected"].items()),
    ]
    return "\n".join(lines) + "\n"


def approve(review: Path, out: Path) -> dict:
    """Move the reviewed pictures (those still in the folder) into the dataset and its manifest; remove `review`."""
    try:
        summary = json.loads((review / SUMMARY).read_text())
    except (OSError, ValueError) as exc:
        raise HarvestError(f"{review}: no harvest to approve ({exc})") from None
    manifest = _manifest(out)
    moved = 0
    for request_id, item in summary["items"].items():
        source = review / item["file"]
        if not source.is_file() or request_id in manifest["items"]:
            continue  # deleted by the reviewer, or harvested meanwhile
        (out / item["label"]).mkdir(parents=True, exist_ok=True)
        os.replace(source, out / item["file"])
        manifest["items"][request_id] = item
        moved += 1
    per_label = Counter(item["label"] for item in manifest["items"].values())
    manifest |= {"images": len(manifest["items"]), "per_label": dict(sorted(per_label.items()))}
    manifest["items"] = dict(sorted(manifest["items"].items()))
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / MANIFEST, manifest)
    shutil.rmtree(review)
    return {
        "out": str(out),
        "approved": moved,
        "left_out": len(summary["items"]) - moved,
        "images": len(manifest["items"]),
    }


def _manifest(out: Path) -> dict:
    path = out / MANIFEST
    empty = {"description": "feedback thumbnails: <label>/<request_id>.png, the first correction per answer, "
             "approved by a person", "images": 0, "per_label": {}, "items": {}}  # fmt: skip
    return json.loads(path.read_text()) if path.is_file() else empty


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    tmp.replace(path)

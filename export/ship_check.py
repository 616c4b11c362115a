"""python -m export.ship_check CHECKPOINT EXPORT_DIR: the checkpoint and the export about to ship are one model.

`make ship` copies the training run's checkpoint and the files in the export folder side by side; if the checkpoint
was retrained, or the export came from another checkpoint, the pair would disagree without anyone noticing. The
model's version is the content hash of its weights (export.checkpoint.weights_hash), so the checkpoint's hash, the
card's `version` and the version inside each ONNX file must be one and the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contract import model_file
from export import checkpoint, metadata
from export.__main__ import CARD, FP32, INT8
from export.errors import ExportError


def card_version(export_dir: Path) -> str:
    path = export_dir / CARD
    try:
        return json.loads(path.read_text())[model_file.VERSION]
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: model card not found (run `make export` first)") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: not a model card with a {model_file.VERSION!r}") from exc


def check_ship(ckpt_path: Path, export_dir: Path) -> str:
    """The version the checkpoint, the card and both ONNX files share; ExportError naming the first that differs."""
    version = card_version(export_dir)
    weights = checkpoint.weights_hash(checkpoint.load(ckpt_path).net)
    if weights != version:
        raise ExportError(
            f"{ckpt_path}: its weights hash {weights} is not the card's version {version}: "
            f"the export in {export_dir} was made from another checkpoint (run `make export` again)"
        )
    for name in (FP32, INT8):
        written = metadata.read(export_dir / name).get(model_file.VERSION)
        if written != version:
            raise ExportError(f"{export_dir / name}: version {written} is not the card's version {version}")
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.ship_check", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the Lightning checkpoint that is about to be shipped")
    parser.add_argument("export_dir", type=Path, help=f"the folder with {FP32}, {INT8} and {CARD}")
    args = parser.parse_args(argv)
    try:
        version = check_ship(args.checkpoint, args.export_dir)
    except ExportError as exc:
        print(f"export.ship_check: {exc}", file=sys.stderr)
        return 1
    print(f"{args.checkpoint} and {args.export_dir} are version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m export.reproduce: rebuild the shipped model from the repository and say whether it is the same model.

On a fresh clone with the team's DVC remote beside it: `dvc pull data.dvc`, `python -m train.prepare` (when
data/processed is missing or was prepared from other raw files), then the whole export of the committed weights
(shipped/weights/resnet18-cifar10.safetensors: fp32 ONNX, parity, int8 behind the accuracy gate, card) into
build/reproduce. The rebuilt int8 model matches when its version (the weights hash) is the shipped card's and its
test top-1 is within 0.1 pp of the card's; exits 1 otherwise. The int8 weight values are compared too (reported,
not judged: activation scales come from calibration and may differ in the last bits between CPUs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from contract import model_file
from contract.paths import PROCESSED_DIR, PROJECT_ROOT, RAW_DIR, SHIPPED_DIR
from export.errors import ExportError

WEIGHTS = SHIPPED_DIR / "weights" / "resnet18-cifar10.safetensors"
CARD = SHIPPED_DIR / "model-card.json"
OUT_DIR = PROJECT_ROOT / "build" / "reproduce"
TOP1_TOLERANCE = 0.001  # 0.1 pp: the same rounding as tests/shipped's torch-free recompute


@dataclass
class Check:
    name: str
    shipped: object
    rebuilt: object
    passed: bool

    def line(self) -> str:
        return f"  {'ok  ' if self.passed else 'DIFF'} {self.name:<12} shipped {self.shipped}  rebuilt {self.rebuilt}"


def compare(shipped: dict, rebuilt: dict, tolerance: float = TOP1_TOLERANCE) -> list[Check]:
    """The shipped card against the rebuilt one: same version, int8 test top-1 within `tolerance`."""
    version = Check("version", shipped.get(model_file.VERSION), rebuilt.get(model_file.VERSION), False)
    version.passed = version.shipped is not None and version.shipped == version.rebuilt
    shipped_top1 = (shipped.get(model_file.QUANTIZATION) or {}).get("int8_top1")
    rebuilt_top1 = (rebuilt.get(model_file.QUANTIZATION) or {}).get("int8_top1")
    top1 = Check("int8 top-1", shipped_top1, rebuilt_top1, False)
    if isinstance(shipped_top1, float) and isinstance(rebuilt_top1, float):
        top1.passed = abs(shipped_top1 - rebuilt_top1) <= tolerance + 1e-12
        top1.shipped, top1.rebuilt = f"{shipped_top1:.2%}", f"{rebuilt_top1:.2%} (tolerance {tolerance * 100:.1f} pp)"
    return [version, top1]


def quantized_weights(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("weight_quantized")}


def int8_weight_differences(a: Path, b: Path) -> tuple[int, int]:
    """(values that differ, values) over the int8 weight tensors of two files (a tensor one lacks: all differ)."""
    first, second = quantized_weights(a), quantized_weights(b)
    differ = total = 0
    for name in sorted(first.keys() | second.keys()):
        if name not in first or name not in second or first[name].shape != second[name].shape:
            size = (first.get(name) if name in first else second[name]).size
            differ, total = differ + size, total + size
            continue
        differ += int((first[name] != second[name]).sum())
        total += first[name].size
    return differ, total


def pull_data() -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run([sys.executable, "-m", "dvc", "pull", "-q", "data.dvc"], cwd=PROJECT_ROOT, env=env)
    if done.returncode != 0:
        raise ExportError(
            "`dvc pull data.dvc` failed: is the team's DVC remote (../shared/dvc-store) beside the clone?"
        )


def prepared_from_raw(raw_dir: Path, data_dir: Path) -> bool:
    """data/processed exists and was prepared from the raw tarballs there now (its meta.json's md5s)."""
    meta = data_dir / "meta.json"
    if not meta.is_file() or not (data_dir / "test_images.npy").is_file():
        return False
    recorded = json.loads(meta.read_text()).get("raw_md5") or {}
    for name, md5 in recorded.items():
        path = raw_dir / name
        if not path.is_file() or hashlib.md5(path.read_bytes()).hexdigest() != md5:
            return False
    return bool(recorded)


def reproduce(weights: Path, card_path: Path, out_dir: Path, *, pull: bool = True) -> list[Check]:
    from export.__main__ import INT8, export_checkpoint
    from train.prepare import prepare

    if pull:
        pull_data()
    if not prepared_from_raw(RAW_DIR, PROCESSED_DIR):
        print("preparing data/processed from data/raw")
        prepare(RAW_DIR, PROCESSED_DIR)
    rebuilt = export_checkpoint(weights, out_dir, data_dir=PROCESSED_DIR)
    checks = compare(json.loads(card_path.read_text()), rebuilt)
    shipped_int8 = card_path.with_name(INT8)
    if shipped_int8.is_file():
        differ, total = int8_weight_differences(shipped_int8, out_dir / INT8)
        print(f"int8 weight values that differ from {shipped_int8.name}: {differ:,} of {total:,}")
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="the committed weights file")
    parser.add_argument("--card", type=Path, default=CARD, help="the shipped model card to match")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where the rebuilt model is written")
    parser.add_argument("--no-pull", action="store_true", help="use data/raw as it is (no `dvc pull data.dvc`)")
    args = parser.parse_args(argv)
    try:
        checks = reproduce(args.weights, args.card, args.out_dir, pull=not args.no_pull)
    except ExportError as exc:
        print(f"export.reproduce: {exc}", file=sys.stderr)
        return 1
    matched = all(check.passed for check in checks)
    print(f"rebuilt {args.out_dir} {'MATCHES' if matched else 'DOES NOT MATCH'} {args.card}:")
    print("\n".join(check.line() for check in checks))
    return 0 if matched else 1


if __name__ == "__main__":
    sys.exit(main())

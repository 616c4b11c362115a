#!/usr/bin/env bash
# One candidate checkpoint measured on validation data only: exported (fp32, gates against nothing), then the
# robustness and outlier benchmarks on the training run's validation pictures.
#   bash benchmarks/finetune/measure.sh CHECKPOINT OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
ckpt=$1
out=$2
python=.venv/bin/python
[[ -f build/val-data/test_images.npy ]] || $python benchmarks/finetune/validation_folder.py build/val-data
mkdir -p "$out"
# fp32 only: candidates are compared with each other here; int8 costs a fifth of the export's time and moves top-1
# by a few hundredths of a point (the card's quantization gate).
$python -m export "$ckpt" --out-dir "$out" --no-robustness --no-quantize --robustness-baseline /dev/null/none 2>&1 |
    tail -n 2
$python -m evaluation.robustness "$out/model.onnx" --data build/val-data --out "$out/robustness-val.json" | tail -n 1
$python -m evaluation.outliers "$out/model.onnx" --data build/val-data --out "$out/outliers-val.json" | tail -n 1

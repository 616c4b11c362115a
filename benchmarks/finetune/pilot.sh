#!/usr/bin/env bash
# One fine-tune candidate, measured on validation data only: train it (extra Hydra overrides after the name), export
# it (fp32, gates against nothing), then the robustness and outlier benchmarks on the run's validation pictures.
#   bash benchmarks/finetune/pilot.sh NAME [hydra overrides...]      e.g. pilot.sh distill model.distill_weight=0.5
# Environment: EXPERIMENT (default robust), EPOCHS (default 1), BATCHES (training batches of 256 an epoch, default 30;
# null: all), OUT (default build/pilot).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1
shift
out=${OUT:-build/pilot}/$name
python=.venv/bin/python
[[ -f build/val-data/test_images.npy ]] || $python benchmarks/finetune/validation_folder.py build/val-data
mkdir -p "$out"
start=$(date +%s)
$python -m train "experiment=${EXPERIMENT:-robust}" "run_name=pilot-$name" "trainer.max_epochs=${EPOCHS:-1}" \
    "trainer.limit_train_batches=${BATCHES:-30}" test=false logger=none resume=false "$@" 2>&1 | tail -n 5
trained=$(date +%s)
# fp32 only: candidates are compared with each other here; int8 costs a fifth of the export's time and moves top-1
# by a few hundredths of a point (the card's quantization gate).
$python -m export "build/train/pilot-$name/last.ckpt" --out-dir "$out" --no-robustness --no-quantize \
    --robustness-baseline /dev/null/none 2>&1 | tail -n 2
$python -m evaluation.robustness "$out/model.onnx" --data build/val-data --out "$out/robustness-val.json" | tail -n 1
$python -m evaluation.outliers "$out/model.onnx" --data build/val-data --out "$out/outliers-val.json" | tail -n 1
echo "{\"name\": \"$name\", \"train_s\": $((trained - start)), \"overrides\": \"$*\"}" > "$out/run.json"

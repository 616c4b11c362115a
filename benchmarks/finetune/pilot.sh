#!/usr/bin/env bash
# One fine-tune candidate, measured on validation data only: train it (extra Hydra overrides after the name), then
# measure.sh (export in fp32, the robustness and outlier benchmarks on the run's validation pictures).
#   bash benchmarks/finetune/pilot.sh NAME [hydra overrides...]      e.g. pilot.sh distill model.distill_weight=0.5
# Environment: EXPERIMENT (default robust), EPOCHS (default 1), BATCHES (training batches of 256 an epoch, default 30;
# null: all), OUT (default build/pilot).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1
shift
out=${OUT:-build/pilot}/$name
python=.venv/bin/python
start=$(date +%s)
$python -m train "experiment=${EXPERIMENT:-robust}" "run_name=pilot-$name" "trainer.max_epochs=${EPOCHS:-1}" \
    "trainer.limit_train_batches=${BATCHES:-30}" test=false logger=none resume=false "$@" 2>&1 | tail -n 5
trained=$(date +%s)
bash benchmarks/finetune/measure.sh "build/train/pilot-$name/last.ckpt" "$out"
echo "{\"name\": \"$name\", \"train_s\": $((trained - start)), \"overrides\": \"$*\"}" > "$out/run.json"

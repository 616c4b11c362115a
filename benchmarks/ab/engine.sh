#!/usr/bin/env bash
# Is OpenVINO's speed worth its place in the serve image (1.5x in the service on an AMX CPU: docs/performance.md)?
# The service with ENGINE=onnxruntime and ENGINE=openvino, the shipped model, CIFAR-size JPEGs at 1 and 16 clients,
# 8 s a level, the two arms in alternation, ROUNDS times (benchmarks/ab/README.md, "The engine in the service").
#
#   benchmarks/ab/engine.sh OUT_DIR      (from the repository root, with .venv and data/ in place)
set -euo pipefail
out="$(realpath -m "$1")"
python="$(pwd)/.venv/bin/python"
rounds="${ROUNDS:-3}"
common=(--targets service --levels "1,16" --seconds 8 --requests 100000 --payloads cifar --soak-seconds 0
        --model-seconds 0)
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
    for arm in onnxruntime openvino; do
        "$python" -m loadtest "${common[@]}" --serve-env "ENGINE=$arm" --out-dir "$out/run-$arm$round" \
            >/dev/null 2>&1
        cp "$out/run-$arm$round/loadtest.json" "$out/engine-$arm$round.json"
        echo "round $round: $arm done"
    done
done

#!/usr/bin/env bash
# One service setting, A/B: the service with VARIABLE at each VALUE, the shipped model, CIFAR-size JPEGs at 1 and 16
# clients, 8 s a level, the values in alternation, ROUNDS times; reports OUT_DIR/PREFIX-<value><round>.json.
#
#   benchmarks/ab/setting.sh OUT_DIR PREFIX VARIABLE VALUE...   (from the repository root, .venv and data/ in place)
set -euo pipefail
out="$(realpath -m "$1")"
prefix=$2 variable=$3
shift 3
python="$(pwd)/.venv/bin/python"
rounds="${ROUNDS:-3}"
common=(--targets service --levels "1,16" --seconds 8 --requests 100000 --payloads cifar --soak-seconds 0
        --model-seconds 0)
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
    for value in "$@"; do
        "$python" -m loadtest "${common[@]}" --serve-env "$variable=$value" --out-dir "$out/run-$value$round" \
            >/dev/null 2>&1
        cp "$out/run-$value$round/loadtest.json" "$out/$prefix-$value$round.json"
        echo "round $round: $value done"
    done
done

#!/usr/bin/env bash
# The A/B of the answers-and-integrity work (benchmarks/ab/README.md, "Calibration, outliers, tokens, logs and
# explanations"): the service at five commits, each from its own git worktree, CIFAR-size JPEGs at 1 and 16 clients,
# 8 s a level, the arms in alternation, ROUNDS times. The first arm serves the model shipped at its commit; the
# others all serve NEW_MODEL (the file shipped now: calibrated, with its outlier score and class activation map).
#
#   benchmarks/ab/this-turn.sh NEW_MODEL OUT_DIR      (from the repository root, with .venv and data/ in place)
set -euo pipefail
new_model="$(realpath "$1")"
out="$(realpath -m "$2")"
root="$(pwd)"
python="$root/.venv/bin/python"
rounds="${ROUNDS:-3}"
# arm=commit: before the work; calibration + outlier score; + feedback tokens; + logs that never block; + the
# explanations and the page (HEAD: run it at the commit that ships NEW_MODEL)
arms=(before=dd8800b trust=f4b2d24 tokens=4a76de9 logs=4c9038a explain=HEAD)
common=(--targets service --levels "1,16" --seconds 8 --requests 100000 --payloads cifar --soak-seconds 0
        --model-seconds 0)
mkdir -p "$out"
# shellcheck source=benchmarks/ab/worktrees.sh
source "$(dirname "$0")/worktrees.sh"
worktrees "$out" "$root" "${arms[@]}"
for round in $(seq 1 "$rounds"); do
    for arm in "${arms[@]}"; do
        name="${arm%%=*}" tree="$out/trees/${arm%%=*}"
        model="$new_model"
        [[ "$name" == before ]] && model="$tree/shipped/model.int8.onnx"
        (cd "$tree" && "$python" -m loadtest "${common[@]}" --model "$model" --out-dir "$out/run-$name$round" >/dev/null)
        cp "$out/run-$name$round/loadtest.json" "$out/$name$round.json"
        echo "round $round: $name done"
    done
done

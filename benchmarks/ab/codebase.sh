#!/usr/bin/env bash
# The A/B of the serving core's rewrite (benchmarks/ab/README.md, "One serving core"): the service before it and now,
# each from its own git worktree, the same shipped model file, CIFAR-size JPEGs at 1 and 16 clients, 8 s a level, the
# arms in alternation, ROUNDS times.
#
#   benchmarks/ab/codebase.sh OUT_DIR [BEFORE_COMMIT]      (from the repository root, with .venv and data/ in place)
# PREFIX names the reports (default codebase: codebase-<arm><round>.json).
set -euo pipefail
out="$(realpath -m "$1")"
before="${2:-8f85ca0}"
root="$(pwd)"
python="$root/.venv/bin/python"
rounds="${ROUNDS:-3}"
prefix="${PREFIX:-codebase}"
model="$root/shipped/model.int8.onnx"
arms=(before="$before" after=HEAD)
common=(--targets service --levels "1,16" --seconds 8 --requests 100000 --payloads cifar --soak-seconds 0
        --model-seconds 0 --model "$model")
mkdir -p "$out"
# shellcheck source=benchmarks/ab/worktrees.sh
source "$(dirname "$0")/worktrees.sh"
worktrees "$out" "$root" "${arms[@]}"
for round in $(seq 1 "$rounds"); do
    for arm in "${arms[@]}"; do
        name="${arm%%=*}" tree="$out/trees/${arm%%=*}"
        (cd "$tree" && "$python" -m loadtest "${common[@]}" --out-dir "$out/run-$name$round" >/dev/null 2>&1)
        cp "$out/run-$name$round/loadtest.json" "$out/$prefix-$name$round.json"
        echo "round $round: $name done"
    done
done

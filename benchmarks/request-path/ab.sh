#!/usr/bin/env bash
# The request path's CPU before and after a change (benchmarks/request-path/README.md): measure.py run against each
# commit's service from its own git worktree, the arms in alternation, ROUNDS times.
#
#   benchmarks/request-path/ab.sh OUT_DIR BEFORE_COMMIT [AFTER_COMMIT]   (repository root; .venv and data/ in place)
# ENGINES: the engines measured (default onnxruntime, the serve image's).
set -euo pipefail
out="$(realpath -m "$1")"
root="$(pwd)"
python="$root/.venv/bin/python"
measure="$root/benchmarks/request-path/measure.py"
rounds="${ROUNDS:-3}"
arms=(before="$2" after="${3:-HEAD}")
mkdir -p "$out"
# shellcheck source=benchmarks/ab/worktrees.sh
source "$(dirname "$0")/../ab/worktrees.sh"
worktrees "$out" "$root" "${arms[@]}"
for round in $(seq 1 "$rounds"); do
    for arm in "${arms[@]}"; do
        name="${arm%%=*}" tree="$out/trees/${arm%%=*}"
        # This measure.py (and engine_cpu.py beside it) against the arm's own serve/, loadtest/ and model.
        (cd "$tree" && PYTHONPATH="$tree" "$python" "$measure" "$out/$name$round.json" \
            --engines "${ENGINES:-onnxruntime}" >/dev/null 2>&1)
        echo "round $round: $name done"
    done
done

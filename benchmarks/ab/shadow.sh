#!/usr/bin/env bash
# The A/B of the shadow challenger (benchmarks/ab/README.md, "A shadow challenger"): the service without a shadow,
# with SHADOW_SHARE=0.1 and with SHADOW_SHARE=1.0, CIFAR-size JPEGs at 1 and 16 clients, 8 s a level, the arms in
# alternation, ROUNDS times. The challenger is the previous release (662bcc9c2096, from git: the same network, so
# the same cost as a real candidate); the prediction log is on in every arm, since that is where shadow answers go.
#
#   benchmarks/ab/shadow.sh OUT_DIR      (from the repository root, with .venv and data/ in place)
set -euo pipefail
out="$(realpath -m "$1")"
python=.venv/bin/python
rounds="${ROUNDS:-3}"
mkdir -p "$out"
challenger="$out/challenger.int8.onnx"
git show d12f60b:shipped/model.int8.onnx > "$challenger"
common=(--targets service --levels "1,16" --seconds 8 --requests 100000 --payloads cifar --soak-seconds 0
        --model-seconds 0)
arms=(none=0 share01=0.1 share1=1.0)
for round in $(seq 1 "$rounds"); do
    for arm in "${arms[@]}"; do
        name="${arm%%=*}" share="${arm#*=}"
        env=(--serve-env "PREDICTION_LOG=$out/log-$name$round.jsonl")
        [[ "$share" == 0 ]] || env+=(--serve-env "SHADOW_MODEL_PATH=$challenger" --serve-env "SHADOW_SHARE=$share")
        "$python" -m loadtest "${common[@]}" "${env[@]}" --out-dir "$out/run-$name$round" >/dev/null
        cp "$out/run-$name$round/loadtest.json" "$out/shadow-$name$round.json"
        echo "round $round: $name done"
    done
done

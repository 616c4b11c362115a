#!/usr/bin/env bash
# The gated canary, run by cloudbuilds/cloudbuild.yaml after the candidate revision was deployed with no traffic and
# the tag TAG: smoke-test the tagged URL with known pictures, then move traffic in STEPS, each step judged on the
# candidate's error rate, latency and outlier share against the baseline revision (python -m monitor.canary gate);
# on a failed smoke test or gate, all traffic goes back to the baseline revision and the build fails.
#
# Environment: PROJECT_ID, REGION, SERVICE, TAG (m-<model version>), CANDIDATE and BASELINE (revision names; no
# BASELINE on a first deploy: the candidate then takes all traffic after its smoke test), STEPS (default "10 50 100"),
# WINDOW_S (seconds judged per step, default 300), DEADLINE_S (how long a step may wait for enough traffic, default
# 1800), PYTHON (default python3). Every gcloud command is printed before it runs.
set -euo pipefail

: "${PROJECT_ID:?}" "${REGION:?}" "${SERVICE:?}" "${TAG:?}" "${CANDIDATE:?}"
BASELINE=${BASELINE:-}
STEPS=${STEPS:-10 50 100}
WINDOW_S=${WINDOW_S:-300}
DEADLINE_S=${DEADLINE_S:-1800}
PYTHON=${PYTHON:-python3}
where=(--project="$PROJECT_ID" --region="$REGION")

run() {
  echo "+ $*"
  "$@"
}

back_to_baseline() {
  echo "canary: $1; all traffic back to ${BASELINE:-nothing}" >&2
  if [[ -n $BASELINE ]]; then
    run gcloud run services update-traffic "$SERVICE" "${where[@]}" --to-revisions="$BASELINE=100" --quiet
  fi
  exit 1
}

# The tagged URL reaches the candidate alone, whatever the traffic split.
url=$(gcloud run services describe "$SERVICE" "${where[@]}" --format=json |
  "$PYTHON" -c 'import json, sys; tag = sys.argv[1]
print(next(t["url"] for t in json.load(sys.stdin)["status"]["traffic"] if t.get("tag") == tag))' "$TAG")
echo "canary: $CANDIDATE at $url"
"$PYTHON" -m monitor.canary smoke "$url" || back_to_baseline "smoke test failed"
if [[ -z $BASELINE ]]; then
  run gcloud run services update-traffic "$SERVICE" "${where[@]}" --to-latest --quiet
  exit 0
fi

for percent in $STEPS; do
  run gcloud run services update-traffic "$SERVICE" "${where[@]}" --to-tags="$TAG=$percent" --quiet
  waited=0
  while true; do
    sleep "$WINDOW_S"
    waited=$((waited + WINDOW_S))
    status=0
    "$PYTHON" -m monitor.canary gate --project="$PROJECT_ID" --service="$SERVICE" --candidate="$CANDIDATE" \
      --baseline="$BASELINE" --window="$WINDOW_S" || status=$?
    case $status in
      0) break ;;
      3) ((waited < DEADLINE_S)) || back_to_baseline "too little traffic to judge at $percent % after $waited s" ;;
      *) back_to_baseline "gate failed at $percent %" ;;
    esac
  done
done
# All traffic is the candidate's: follow the latest revision again, as a plain deploy does.
run gcloud run services update-traffic "$SERVICE" "${where[@]}" --to-latest --quiet
echo "canary: $CANDIDATE serves all traffic"

#!/usr/bin/env bash
# Train the shipped model's GPU recipe on Vertex AI (docs/training-at-scale.md): renders
# cloudbuilds/vertex/train-job.yaml for this project and commit, then `gcloud ai custom-jobs create`. The image
# must exist; build it first (cloudbuilds/train-image.yaml):
#
#   PROJECT_ID=your-project cloudbuilds/submit-vertex-train.sh            # submits; prints the job's name
#   PROJECT_ID=your-project DRY_RUN=1 cloudbuilds/submit-vertex-train.sh  # prints the spec and the command only
#
# REGION and REPOSITORY default to cloudbuilds/cloudbuild.yaml's _REGION and _REPOSITORY; IMAGE_TAG to this
# commit (the tag train-image.yaml gives the image); RUN_ID (the W&B run's id) to one per submission.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PROJECT_ID:?set PROJECT_ID to the Google Cloud project}"
REGION="${REGION:-europe-west1}"
REPOSITORY="${REPOSITORY:-cifar-classifier}"
IMAGE_TAG="${IMAGE_TAG:-$(git rev-parse --short=7 HEAD)}"
RUN_ID="${RUN_ID:-ship-gpu-${IMAGE_TAG}-$(date -u +%Y%m%d-%H%M%S)}"
TEMPLATE=cloudbuilds/vertex/train-job.yaml

# Each value lands in YAML and in a label: plain names only, so nothing can break out of the spec.
check() {
  [[ "$2" =~ $3 ]] || { echo "submit-vertex-train: $1='$2' is not valid (expected $3)" >&2; exit 2; }
}
check PROJECT_ID "$PROJECT_ID" '^[a-z][a-z0-9-]{4,28}[a-z0-9]$'
check REGION "$REGION" '^[a-z]+-[a-z]+[0-9]+$'
check REPOSITORY "$REPOSITORY" '^[a-z][a-z0-9-]*$'
check IMAGE_TAG "$IMAGE_TAG" '^[0-9a-f]{7,40}$'
check RUN_ID "$RUN_ID" '^[a-z0-9][a-z0-9-]{0,62}$'
if ! git diff --quiet HEAD -- train configs export contract 2>/dev/null; then
  echo "submit-vertex-train: note: uncommitted changes under train/ configs/ export/ contract/ are not in the image" >&2
fi

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
sed -e "s|\${PROJECT_ID}|$PROJECT_ID|g" -e "s|\${REGION}|$REGION|g" -e "s|\${REPOSITORY}|$REPOSITORY|g" \
    -e "s|\${IMAGE_TAG}|$IMAGE_TAG|g" -e "s|\${RUN_ID}|$RUN_ID|g" "$TEMPLATE" > "$rendered"

command=(gcloud ai custom-jobs create --project="$PROJECT_ID" --region="$REGION" --display-name="cifar-$RUN_ID"
         --labels="commit-sha=$IMAGE_TAG" --config="$rendered")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  cat "$rendered"
  printf '# %s\n' "${command[*]}"
  exit 0
fi
"${command[@]}"
echo "W&B run: $RUN_ID (project cifar-classifier); logs: gcloud ai custom-jobs stream-logs JOB --region=$REGION"

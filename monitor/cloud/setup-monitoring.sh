#!/usr/bin/env bash
# One-time Google Cloud setup for watching the deployed model (docs/monitoring-alerts.md), after
# cloudbuilds/setup-gcp.sh and the first deploy. As a project owner with gcloud (and its bq) logged in:
#
#   PROJECT_ID=your-project DRIFT_IMAGE=REGION-docker.pkg.dev/PROJECT/cifar-classifier/train:SHA \
#     monitor/cloud/setup-monitoring.sh
#
# It creates, keeping what already exists (running it again is harmless; alert policies are updated to the files):
#   1. the metric writer role for serve's runtime account (the Managed Prometheus sidecar writes as it);
#   2. the prediction log's way to BigQuery: a dataset, and a Cloud Logging sink of serve's prediction and
#      feedback lines into it;
#   3. the daily drift check: a bucket, a service account, a BigQuery scheduled query that exports yesterday's
#      lines to the bucket as JSONL, a Cloud Run job that runs `python -m monitor drift ... --fail-on-drift` on
#      them, and a Cloud Scheduler trigger for that job;
#   4. the alert policies of monitor/cloud/policies/ and the dashboard monitor/cloud/dashboard.json.
# NOTIFICATION_CHANNELS (comma-separated `projects/P/notificationChannels/ID`) are attached to every policy.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID to the Google Cloud project}"
: "${DRIFT_IMAGE:?set DRIFT_IMAGE to an image with the project and monitor/ installed (e.g. the train image)}"
REGION="${REGION:-europe-west1}"                           # cloudbuilds/cloudbuild.yaml's _REGION
SERVE_SERVICE="${SERVE_SERVICE:-cifar-serve}"              # _SERVE_SERVICE, and its runtime service account
DATASET="${DATASET:-cifar_serve_logs}"                     # BigQuery dataset the sink writes into
RETENTION_DAYS="${RETENTION_DAYS:-90}"                     # days a day's partition of the log is kept
BUCKET="${BUCKET:-${PROJECT_ID}-cifar-monitoring}"         # exports/DAY/*.json in, reports/DAY/ out
SINK=cifar-serve-predictions
DRIFT=cifar-drift                                          # job, its service account, its schedule's prefix
EXPORT_AT="${EXPORT_AT:-01:00}"                            # UTC: yesterday's lines are all in BigQuery by then
DRIFT_AT="${DRIFT_AT:-0 2 * * *}"                          # UTC cron: an hour after the export
NOTIFICATION_CHANNELS="${NOTIFICATION_CHANNELS:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in gcloud bq python3; do
  command -v "$tool" >/dev/null || { echo "setup-monitoring: $tool not found (https://cloud.google.com/sdk)" >&2; exit 2; }
done
export CLOUDSDK_CORE_PROJECT="$PROJECT_ID"   # every gcloud call acts on this project, the caller's config unchanged

step() { printf '\n== %s\n' "$*"; }
json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

PROJECT_NUMBER="$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')"
SERVE_SA="$SERVE_SERVICE@$PROJECT_ID.iam.gserviceaccount.com"
DRIFT_SA="$DRIFT@$PROJECT_ID.iam.gserviceaccount.com"

step "APIs"
gcloud services enable monitoring.googleapis.com logging.googleapis.com bigquery.googleapis.com \
  bigquerydatatransfer.googleapis.com run.googleapis.com cloudscheduler.googleapis.com storage.googleapis.com

step "1. Managed Prometheus: $SERVE_SA may write metrics (the sidecar next to serve scrapes :8080/metrics)"
gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$SERVE_SA" \
  --role=roles/monitoring.metricWriter --condition=None >/dev/null

step "2. BigQuery dataset $DATASET ($RETENTION_DAYS days) and the log sink $SINK"
bq --project_id="$PROJECT_ID" show --dataset "$PROJECT_ID:$DATASET" >/dev/null 2>&1 ||
  bq --project_id="$PROJECT_ID" --location="$REGION" mk --dataset \
    --default_partition_expiration=$((RETENTION_DAYS * 86400)) \
    --description="Prediction and feedback lines of $SERVE_SERVICE (Cloud Logging sink $SINK)" "$PROJECT_ID:$DATASET"
# Only the service's own JSON lines: its request logs and everything else stay out of the dataset.
LOG_FILTER="resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"$SERVE_SERVICE\""
LOG_FILTER+=" AND jsonPayload.kind=(\"prediction\" OR \"feedback\")"
gcloud logging sinks describe "$SINK" >/dev/null 2>&1 ||
  gcloud logging sinks create "$SINK" "bigquery.googleapis.com/projects/$PROJECT_ID/datasets/$DATASET" \
    --log-filter="$LOG_FILTER" --use-partitioned-tables
WRITER="$(gcloud logging sinks describe "$SINK" --format='value(writerIdentity)')"
gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="$WRITER" \
  --role=roles/bigquery.dataEditor --condition=None >/dev/null

step "3. The daily drift check: bucket gs://$BUCKET, account $DRIFT_SA, export, job $DRIFT, schedule"
gcloud storage buckets describe "gs://$BUCKET" >/dev/null 2>&1 ||
  gcloud storage buckets create "gs://$BUCKET" --location="$REGION" --uniform-bucket-level-access
gcloud iam service-accounts describe "$DRIFT_SA" >/dev/null 2>&1 ||
  gcloud iam service-accounts create "$DRIFT" --display-name="Daily drift check of $SERVE_SERVICE"
for role in roles/bigquery.jobUser roles/bigquery.dataViewer; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$DRIFT_SA" \
    --role="$role" --condition=None >/dev/null
done
gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --member="serviceAccount:$DRIFT_SA" \
  --role=roles/storage.objectUser >/dev/null
# Scheduled queries run as DRIFT_SA through BigQuery Data Transfer's service agent.
gcloud iam service-accounts add-iam-policy-binding "$DRIFT_SA" \
  --member="serviceAccount:service-$PROJECT_NUMBER@gcp-sa-bigquerydatatransfer.iam.gserviceaccount.com" \
  --role=roles/iam.serviceAccountTokenCreator >/dev/null

# Yesterday's lines (UTC) as JSONL rows {"timestamp": ..., "jsonPayload": {...}}, the form `python -m monitor
# drift` reads (Cloud Logging moves a line's `time` into the entry's timestamp). The sink names the table after
# the log (run.googleapis.com/stdout); it exists from the first line on.
EXPORT_SQL="DECLARE day DATE DEFAULT DATE_SUB(@run_date, INTERVAL 1 DAY);
EXECUTE IMMEDIATE FORMAT(\"\"\"
  EXPORT DATA OPTIONS (uri = 'gs://$BUCKET/exports/%t/rows-*.json', format = 'JSON', overwrite = true) AS
  SELECT FORMAT_TIMESTAMP('%%Y-%%m-%%dT%%H:%%M:%%E6SZ', timestamp) AS timestamp, jsonPayload
  FROM \`$PROJECT_ID.$DATASET.run_googleapis_com_stdout\` WHERE DATE(timestamp) = '%t'
\"\"\", day, day);"
if bq --project_id="$PROJECT_ID" ls --transfer_config --transfer_location="$REGION" --format=prettyjson |
  grep -q "\"displayName\": \"$DRIFT-export\""; then
  echo "scheduled query $DRIFT-export exists"
else
  bq --project_id="$PROJECT_ID" mk --transfer_config --location="$REGION" --data_source=scheduled_query \
    --display_name="$DRIFT-export" --schedule="every day $EXPORT_AT" --service_account_name="$DRIFT_SA" \
    --params="$(python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1]}))' "$EXPORT_SQL")"
fi

# The job reads yesterday's export from the bucket (mounted at /monitoring) and writes the report beside it;
# --fail-on-drift turns drift into a failed execution, which the policy drift-check-failed.json reports.
# shellcheck disable=SC2016  # expanded by the job's shell, not here
JOB_SCRIPT='day=$(date -u -d yesterday +%F) && mkdir -p /monitoring/reports/$day && exec python -m monitor drift /monitoring/exports/$day/*.json --out /monitoring/reports/$day --fail-on-drift'
gcloud run jobs deploy "$DRIFT" --region="$REGION" --image="$DRIFT_IMAGE" --service-account="$DRIFT_SA" \
  --command=sh --args="-c,$JOB_SCRIPT" --cpu=2 --memory=4Gi --max-retries=0 --task-timeout=30m \
  --add-volume="name=monitoring,type=cloud-storage,bucket=$BUCKET" \
  --add-volume-mount="volume=monitoring,mount-path=/monitoring"
gcloud run jobs add-iam-policy-binding "$DRIFT" --region="$REGION" --member="serviceAccount:$DRIFT_SA" \
  --role=roles/run.invoker >/dev/null
gcloud scheduler jobs describe "$DRIFT-daily" --location="$REGION" >/dev/null 2>&1 ||
  gcloud scheduler jobs create http "$DRIFT-daily" --location="$REGION" --schedule="$DRIFT_AT" \
    --time-zone=Etc/UTC --http-method=POST \
    --uri="https://run.googleapis.com/v2/projects/$PROJECT_ID/locations/$REGION/jobs/$DRIFT:run" \
    --oauth-service-account-email="$DRIFT_SA"

step "4. Alert policies (monitor/cloud/policies/) and the dashboard"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for file in "$HERE"/policies/*.json; do
  policy="$tmp/$(basename "$file")"
  python3 -c 'import json, sys; p = json.load(open(sys.argv[1])); channels = [c for c in sys.argv[3].split(",") if c]
p["notificationChannels"] = channels; json.dump(p, open(sys.argv[2], "w"))' "$file" "$policy" "$NOTIFICATION_CHANNELS"
  display="$(json_field "$file" displayName)"
  existing="$(gcloud alpha monitoring policies list --filter="displayName=\"$display\"" --format='value(name)')"
  if [[ -n "$existing" ]]; then
    gcloud alpha monitoring policies update "$existing" --policy-from-file="$policy" >/dev/null
    echo "updated: $display"
  else
    gcloud alpha monitoring policies create --policy-from-file="$policy" >/dev/null
    echo "created: $display"
  fi
done
display="$(json_field "$HERE/dashboard.json" displayName)"
if [[ -n "$(gcloud monitoring dashboards list --filter="displayName=\"$display\"" --format='value(name)')" ]]; then
  echo "dashboard exists: $display (delete it to recreate it from the file)"
else
  gcloud monitoring dashboards create --config-from-file="$HERE/dashboard.json" >/dev/null
  echo "created dashboard: $display"
fi

step "Done"
echo "Reports: gs://$BUCKET/reports/DAY/{drift.json,report.html}. Run the check now:"
echo "  gcloud run jobs execute $DRIFT --region=$REGION --wait"

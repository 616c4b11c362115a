#!/usr/bin/env bash
# One-time Google Cloud setup for the deploy (docs/deploy.md): the Artifact Registry repository, the service
# accounts and their roles, the feedback key in Secret Manager, Workload Identity Federation for GitHub Actions, the
# Cloud Build source bucket and the DVC bucket. Run it once per project, as a project owner, with gcloud logged in:
#
#   PROJECT_ID=your-project GITHUB_REPO=owner/cifar-classifier cloudbuilds/setup-gcp.sh
#
# It is safe to run again: what exists is kept, role bindings are added only once. It prints, at the end, the
# values the GitHub repository needs. The names below must match cloudbuilds/cloudbuild.yaml's substitutions
# (_REGION, _REPOSITORY, the runtime service accounts) and the `gcs` remote in .dvc/config.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID to the Google Cloud project}"
: "${GITHUB_REPO:?set GITHUB_REPO to owner/name of the GitHub repository}"
REGION="${REGION:-europe-west1}"                     # _REGION
REPOSITORY="${REPOSITORY:-cifar-classifier}"         # _REPOSITORY
SERVE_SERVICE="${SERVE_SERVICE:-cifar-serve}"        # _SERVE_SERVICE: also its runtime service account's name
SITE_SERVICE="${SITE_SERVICE:-cifar-site}"           # _SITE_SERVICE: likewise
DVC_BUCKET="${DVC_BUCKET:-cifar-classifier-dvc}"     # remote "gcs" in .dvc/config: gs://cifar-classifier-dvc/store
FEEDBACK_SECRET="${FEEDBACK_SECRET:-feedback-key}"   # _FEEDBACK_SECRET: Secret Manager secret, FEEDBACK_KEY of serve
POOL=github                                          # the Workload Identity pool and its provider
GITHUB_ENVIRONMENT=production                        # the environment of .github/workflows/deploy.yml

[[ "$GITHUB_REPO" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || {
  echo "setup-gcp: GITHUB_REPO='$GITHUB_REPO' is not owner/name" >&2
  exit 2
}
command -v gcloud >/dev/null || { echo "setup-gcp: gcloud not found (https://cloud.google.com/sdk)" >&2; exit 2; }

# Every gcloud call below acts on this project, without changing the caller's gcloud configuration.
export CLOUDSDK_CORE_PROJECT="$PROJECT_ID"

step() { printf '\n== %s\n' "$*"; }

# Creates a service account unless it exists; prints nothing else.
ensure_service_account() {
  local name="$1" display="$2"
  gcloud iam service-accounts describe "$name@$PROJECT_ID.iam.gserviceaccount.com" >/dev/null 2>&1 ||
    gcloud iam service-accounts create "$name" --display-name="$display"
}

ensure_bucket() {
  local bucket="$1"
  gcloud storage buckets describe "$bucket" >/dev/null 2>&1 ||
    gcloud storage buckets create "$bucket" --location="$REGION" --uniform-bucket-level-access
}

PROJECT_NUMBER="$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')"
BUILD_SA="cloud-build-deploy@$PROJECT_ID.iam.gserviceaccount.com"
GH_SA="github-deploy@$PROJECT_ID.iam.gserviceaccount.com"
SOURCE_BUCKET="gs://${PROJECT_ID}_cloudbuild"

step "APIs"
gcloud services enable run.googleapis.com cloudbuild.googleapis.com artifactregistry.googleapis.com \
  iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com storage.googleapis.com \
  secretmanager.googleapis.com

step "Artifact Registry repository $REPOSITORY in $REGION"
gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" >/dev/null 2>&1 ||
  gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker --location="$REGION"

step "Cloud Run runtime identities (no project role: the serve one reads one secret, the site nothing)"
ensure_service_account "$SERVE_SERVICE" "Cloud Run runtime: $SERVE_SERVICE"
ensure_service_account "$SITE_SERVICE" "Cloud Run runtime: $SITE_SERVICE"

step "Secret $FEEDBACK_SECRET: the key that signs feedback tokens, shared by every instance of $SERVE_SERVICE"
# 32 random bytes, base64 (44 characters): FEEDBACK_KEY at deploy (cloudbuild.yaml: --set-secrets). Rotation adds a
# version "NEW,OLD" and, one FEEDBACK_WINDOW_S later, a version "NEW" (docs/deploy.md, "The feedback key").
gcloud secrets describe "$FEEDBACK_SECRET" >/dev/null 2>&1 || {
  gcloud secrets create "$FEEDBACK_SECRET" --replication-policy=automatic
  head -c 32 /dev/urandom | base64 | tr -d '\n' | gcloud secrets versions add "$FEEDBACK_SECRET" --data-file=-
}
gcloud secrets add-iam-policy-binding "$FEEDBACK_SECRET" \
  --member="serviceAccount:$SERVE_SERVICE@$PROJECT_ID.iam.gserviceaccount.com" \
  --role=roles/secretmanager.secretAccessor >/dev/null

step "Cloud Build's identity: push images, deploy to Cloud Run, act as the runtime accounts, write logs"
ensure_service_account cloud-build-deploy "Cloud Build: build and deploy"
gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" --location="$REGION" \
  --member="serviceAccount:$BUILD_SA" --role=roles/artifactregistry.writer >/dev/null
# run.admin rather than run.developer: --allow-unauthenticated sets the services' IAM policy.
for role in roles/run.admin roles/logging.logWriter; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$BUILD_SA" --role="$role" \
    --condition=None >/dev/null
done
for name in "$SERVE_SERVICE" "$SITE_SERVICE"; do
  gcloud iam service-accounts add-iam-policy-binding "$name@$PROJECT_ID.iam.gserviceaccount.com" \
    --member="serviceAccount:$BUILD_SA" --role=roles/iam.serviceAccountUser >/dev/null
done

step "GitHub's identity: submit builds that run as $BUILD_SA, upload the source, stream the logs"
ensure_service_account github-deploy "GitHub Actions: submit Cloud Build"
for role in roles/cloudbuild.builds.editor roles/serviceusage.serviceUsageConsumer roles/logging.viewer; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$GH_SA" --role="$role" \
    --condition=None >/dev/null
done
gcloud iam service-accounts add-iam-policy-binding "$BUILD_SA" \
  --member="serviceAccount:$GH_SA" --role=roles/iam.serviceAccountUser >/dev/null
ensure_bucket "$SOURCE_BUCKET"
# storage.admin on this bucket only: `gcloud builds submit` uploads the source there.
gcloud storage buckets add-iam-policy-binding "$SOURCE_BUCKET" \
  --member="serviceAccount:$GH_SA" --role=roles/storage.admin >/dev/null

step "Workload Identity Federation: only $GITHUB_REPO's jobs in the '$GITHUB_ENVIRONMENT' environment may act as $GH_SA"
gcloud iam workload-identity-pools describe "$POOL" --location=global >/dev/null 2>&1 ||
  gcloud iam workload-identity-pools create "$POOL" --location=global --display-name="GitHub Actions"
gcloud iam workload-identity-pools providers describe "$POOL" --location=global \
  --workload-identity-pool="$POOL" >/dev/null 2>&1 ||
  gcloud iam workload-identity-pools providers create-oidc "$POOL" --location=global \
    --workload-identity-pool="$POOL" --issuer-uri=https://token.actions.githubusercontent.com \
    --attribute-mapping=google.subject=assertion.sub,attribute.repository=assertion.repository \
    --attribute-condition="assertion.sub == 'repo:$GITHUB_REPO:environment:$GITHUB_ENVIRONMENT'"
gcloud iam service-accounts add-iam-policy-binding "$GH_SA" --role=roles/iam.workloadIdentityUser \
  --member="principalSet://iam.googleapis.com/projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/$POOL/attribute.repository/$GITHUB_REPO" \
  >/dev/null

step "DVC bucket gs://$DVC_BUCKET (the deployed system's data and models)"
ensure_bucket "gs://$DVC_BUCKET"

cat <<EOF

Done. In GitHub, Settings of $GITHUB_REPO:
  Environments: '$GITHUB_ENVIRONMENT', deployment branches: main only (add required reviewers for a manual gate).
  Actions -> Variables (none of these is a secret):
    GCP_PROJECT_ID                  = $PROJECT_ID
    GCP_WORKLOAD_IDENTITY_PROVIDER  = projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/$POOL/providers/$POOL
    GCP_DEPLOY_SERVICE_ACCOUNT      = $GH_SA
    GCP_BUILD_SERVICE_ACCOUNT       = $BUILD_SA

Fill the DVC bucket once, from a machine that has the data:
  pip install dvc-gs==3.1.0 && gcloud auth application-default login && dvc push -r gcs
Whoever trains from it (a person, or the train image's service account) needs roles/storage.objectViewer on
gs://$DVC_BUCKET; roles/storage.objectAdmin to push results back (DVC_PUSH=1).
EOF

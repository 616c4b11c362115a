#!/bin/sh
# Entry point of docker/train.Dockerfile: fetch what the DVC remote has, then run the command (default `dvc repro`).
#   DVC_REMOTE  remote to pull from/push to (default: the repo's default remote, `shared`, which resolves to
#               /shared/dvc-store inside the image: mount the team store there; `gcs` in the cloud)
#   DVC_PUSH=1  push the pipeline's outputs back to that remote after a successful command, so a cloud run's
#               checkpoint and exports outlive the container
set -eu

remote_args=""
if [ -n "${DVC_REMOTE:-}" ]; then
    remote_args="--remote ${DVC_REMOTE}"
fi

# --allow-missing: a remote that has the data but not (yet) this commit's models is the normal case before the
# first training run; `dvc repro` rebuilds whatever is missing.
# shellcheck disable=SC2086  # remote_args is deliberately split into flag and value
dvc pull --allow-missing $remote_args

if [ "${DVC_PUSH:-0}" = "1" ]; then
    "$@"
    # shellcheck disable=SC2086
    exec dvc push $remote_args
fi
exec "$@"

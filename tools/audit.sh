#!/usr/bin/env bash
# The serving image's locked dependencies (requirements-serve.lock) against the Python Packaging Advisory Database,
# with pip-audit (requirements-dev.txt) through PyPI's JSON API; `make lint` runs it.
#   - a known vulnerability in any locked package fails, naming the package, the advisory and the fixed versions;
#   - where the service cannot be asked (no network), or knows none of the locked versions (a machine that reaches
#     only a package mirror), the audit is skipped with a message saying that nothing was audited, and exit 0.
# Packages the service does not know while it knows others are listed as not audited.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_TOOLS=${PY_TOOLS:-.venv/bin}
LOCK=requirements-serve.lock
[[ -x "$PY_TOOLS/pip-audit" ]] || { echo "audit: $PY_TOOLS/pip-audit missing: run 'make lint-tools'" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --disable-pip with --require-hashes: the lock is the whole set; nothing is resolved or installed to audit it.
# Its exit status is not read: the JSON report says what was found, and its absence that the service was not asked.
"$PY_TOOLS/pip-audit" --disable-pip --require-hashes -r "$LOCK" --progress-spinner off --timeout 20 \
    --format json --output "$work/report.json" 2>"$work/stderr" || true
"$PY_TOOLS/python" tools/audit_report.py "$work/report.json" "$work/stderr" "$LOCK"

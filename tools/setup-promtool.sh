#!/usr/bin/env bash
# Install promtool (for `promtool check rules` / `promtool test rules` on monitor/alerts/), idempotently.
# It comes from Debian's `prometheus` package; nothing is downloaded from anywhere but the Debian archive.
# The package also ships the Prometheus server: it is installed but never started here (no init runs in CI's
# container; where one does, the server is stopped and disabled again).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "promtool already installed: $(promtool --version 2>&1 | head -n 1)"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup-promtool: need root (or sudo) to apt-get install prometheus (for promtool)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Only promtool is wanted: keep the server (and its port 9090) off where an init system would have started it.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "promtool installed: $(promtool --version 2>&1 | head -n 1)"

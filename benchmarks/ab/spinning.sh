#!/usr/bin/env bash
# Does ORT_SPINNING=auto (serve/runtime/spinning.py) still earn its keep? The service with the switch (auto) and
# without it (off: idle onnxruntime threads always sleep), the shipped model, CIFAR-size JPEGs at 1 and 16 clients,
# 8 s a level, the two arms in alternation, ROUNDS times (benchmarks/ab/README.md, "The spinning switch, again").
#
#   benchmarks/ab/spinning.sh OUT_DIR      (from the repository root, with .venv and data/ in place)
set -euo pipefail
exec bash "$(dirname "$0")/setting.sh" "$1" spinning ORT_SPINNING auto off

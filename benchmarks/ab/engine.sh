#!/usr/bin/env bash
# Is OpenVINO's speed worth its place in the serve image (1.5x in the service on an AMX CPU: docs/performance.md)?
# The service with ENGINE=onnxruntime and ENGINE=openvino, the shipped model, CIFAR-size JPEGs at 1 and 16 clients,
# 8 s a level, the two arms in alternation, ROUNDS times (benchmarks/ab/README.md, "The engine in the service").
#
#   benchmarks/ab/engine.sh OUT_DIR      (from the repository root, with .venv and data/ in place)
set -euo pipefail
exec bash "$(dirname "$0")/setting.sh" "$1" engine ENGINE onnxruntime openvino

#!/usr/bin/env bash
# Device check for a GPU machine (issue 14): reports what the machine has (driver, GPUs, CUDA,
# libraries, any paddle), then runs what it can -- paddle.utils.run_check(), the TensorRT
# FP32/FP16/INT8 bench rows at the seed shapes, a short AMP distillation (and a 2-GPU one) --
# and says plainly what it could not. Writes one JSON.
#
#   scripts/gpu-check.sh [--out runs/gpu-check/gpu_check.json] [--steps 30] [--repeats 5]
#
# Needs only this repository and a Python 3 (.venv/bin/python if present, else $PYTHON or
# python3): no network, nothing installed by it. Without paddlepaddle-gpu (a 759 MB wheel for
# CUDA 11.8) it still reports the machine and skips the paddle sections with the reason.
# Exit status: 0 everything ran, 20 GPU sections skipped, 1 a section failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${PYTHON:-}" ]]; then
  py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py=$(command -v python3 || command -v python || true)
fi
if [[ -z "$py" ]]; then
  echo "gpu-check: no python found (set PYTHON=...)" >&2
  exit 2
fi
# The repository itself, importable without installing it (benchmarks/ and src/ppminilm).
export PYTHONPATH="$PWD:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m benchmarks.gpu_check "$@"

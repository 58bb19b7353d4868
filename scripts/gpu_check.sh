#!/usr/bin/env bash
# The prepared GPU check (issue 20): every method a few steps on CUDA with mixed precision and channels_last, kNN on
# CPU vs GPU, throughput at the gpu tier; writes results/gpu/gpu_check.json. Needs one CUDA GPU; under 10 minutes.
# Without CUDA it says so and exits with status 2. Usage: bash scripts/gpu_check.sh [--out PATH] [--steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec timeout 600 "$PY" -m experiments.gpu_check "$@"

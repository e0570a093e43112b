#!/usr/bin/env bash
# The GPU acceptance check of issue 9 (benchmarks/gpu_check.py), on a machine with one CUDA GPU.
# On the lent device machine (no registry), carry the wheels it lacks in .whl/ (see benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:src
fi
export PYTHONPATH="${PYTHONPATH:-src}"
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 benchmarks/gpu_check.py "$@"

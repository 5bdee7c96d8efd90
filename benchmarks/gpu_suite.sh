#!/usr/bin/env bash
# The GPU measurements of issue 15 in one run (benchmarks/gpu.py says what each part measures).
#
#   benchmarks/gpu_suite.sh              on a GPU machine; numbers in $OUT/gpu.json, log in $OUT
#   benchmarks/gpu_suite.sh --dry-run    every part at toy sizes on the CPU, to check the script
#
# On a machine without Ray or caviar's other dependencies (the device tool's GPU machines have
# torch and no Ray, and reach no package index), it installs them from .whl/: wheels for the
# machine's Python and Ray unpacked as ray-*.tar.xz (the wheel without ray/jars, ray/rllib and
# ray/serve, which caviar does not use; the whole wheel is over the device tool's size limit).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if ! "$PY" -c "import ray, hyperopt, pydantic, mnist1d" 2>/dev/null; then
    site=$(mktemp -d /tmp/caviar-site-XXXX)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
        || { echo "gpu_suite: installing .whl/*.whl failed" >&2; exit 1; }
    for t in .whl/ray-*.tar.xz; do tar -xJf "$t" -C "$site" || exit 1; done
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# Ray's workers inherit this environment: they import caviar and the benchmarks from here.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import ray, torch; print('ray', ray.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.txt"
if [ "${1:-}" != "--dry-run" ]; then
    # In this process, without pyproject's xdist workers (pytest-xdist is not installed here).
    "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT/test_gpu.txt"
fi
"$PY" -m benchmarks.gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"

#!/usr/bin/env bash
# The cuda backend's checks and figures on a machine with an NVIDIA GPU, in one go:
#
#     bash bench/gpu_session.sh [env] [tests] [train] [jsma] [cw] ...
#
# env: the GPU, Python, numba and numba-cuda versions; tests: every test marked
# cuda or gpu on the real device (no simulator); train / jsma / cw: the benches
# with the cuda backend beside PyTorch CUDA (and ART's CPU JSMA). Builds the
# Cython extensions in place first. Logs go to $OUT (or bench/gpu_logs) as
# <stage>.log; each stage is bounded by <STAGE>_TIMEOUT seconds (e.g. TESTS_TIMEOUT;
# default 540).
#
# Wheels in .whl/ are installed first when that folder exists: the peers (ART,
# torchattacks) and, on an image whose numpy is 2.5 or later, a numpy 2.4 wheel
# (numba-cuda 0.30.4 fails at its first compile on numpy 2.5: np.row_stack is gone).
# NPDISTILL_DATA and NPDISTILL_BENCH_CACHE default to .devshare/data and
# .devshare/bench when those exist (what a session carries: see bench/RESULTS.md, GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS="${OUT:-bench/gpu_logs}"
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
[ -d .devshare/data ] && export NPDISTILL_DATA="${NPDISTILL_DATA:-$PWD/.devshare/data}"
[ -d .devshare/bench ] && export NPDISTILL_BENCH_CACHE="${NPDISTILL_BENCH_CACHE:-$PWD/.devshare/bench}"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}"   # src layout: the package, built in place
python3 setup.py build_ext --inplace -j "$(nproc)" > "$LOGS/build.log" 2>&1 \
    || { tail -30 "$LOGS/build.log"; exit 1; }

stage() {
    local name=$1; shift
    echo "=== $name: $*"
    local began=$SECONDS
    local limit="${name^^}_TIMEOUT"
    timeout "${!limit:-540}" "$@" 2>&1 | tee "$LOGS/$name.log"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - began)) s"
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(env tests)
for what in "${stages[@]}"; do
    case $what in
        env) stage env bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
             python3 -c "import sys, numpy, numba, torch; from numba import cuda;
print(sys.version.split()[0], \"numpy\", numpy.__version__, \"numba\", numba.__version__, \"torch\", torch.__version__);
import importlib.metadata as m; print(\"numba-cuda\", m.version(\"numba-cuda\"));
print(\"cuda available:\", cuda.is_available()); cuda.detect()"' ;;
        tests) stage tests python3 -m pytest tests/cuda -m "cuda or gpu" -q -p no:cacheprovider \
                   --durations=8 --timeout "${TEST_TIMEOUT:-120}" ;;
        train) stage train python3 -m bench.train_speed --json --repeats "${REPEATS:-30}" ;;
        jsma) stage jsma python3 -m bench.jsma_speed --json --torch-threads "$(nproc)" \
                  --backends "${JSMA_BACKENDS:-numpy,cython,cuda}" ;;
        cw) stage cw python3 -m bench.cw_speed --json --art-images 0 --torch-device cuda \
                --repeats "${CW_REPEATS:-3}" ;;
        *) echo "unknown stage $what (env, tests, train, jsma, cw)"; exit 2 ;;
    esac
done

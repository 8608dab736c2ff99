#!/usr/bin/env bash
# The attention kernels (issue 5) on a GPU machine, in one call: use a carried
# prebuilt extension when it imports and sees the GPU (else build one), run the
# GPU tests, compute-sanitizer memcheck on one small call of every kernel, the
# benchmark (CSV), then racecheck and synccheck, and Nsight Compute on three
# kernels when NCU=1. Each step has its own time
# limit, and everything is packed into $OUT/run.tgz after each step, so a run
# cut short keeps what it measured. The last lines printed are a summary.
#
#   OUT=/tmp/run PREBUILT=.devbuild/_ext.cpython-312-x86_64-linux-gnu.so \
#     ATTN_BUDGET_S=150 bash kernels_cuda/bench/attention_device_run.sh   # from the checkout's root
set -u
# The scripts under kernels_cuda/bench import kernels_cuda from this checkout.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-out}
PY=${PYTHON:-python3}
W=$OUT/work
mkdir -p "$W"
summary() { echo "$*" | tee -a "$W/summary.txt"; tar czf "$OUT/run.tgz" -C "$W" . ; }

{ nvidia-smi; nvidia-smi -q -d CLOCK,POWER,PERFORMANCE,ECC; } > "$W/nvidia-smi.txt" 2>&1
summary "gpu: $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv,noheader 2>&1)"

sees_gpu() { "$PY" -c "import kernels_cuda as k; k.require_cuda(); print(k.__file__)" >> "$W/build.log" 2>&1; }
if [ -n "${PREBUILT:-}" ] && cp "$PREBUILT" kernels_cuda/ && sees_gpu; then
  summary "extension: prebuilt $(basename "$PREBUILT")"
else
  rm -f kernels_cuda/_ext*.so
  {
    cmake -S . -B build/device -G Ninja -DKERNELAB_CUDA=ON -DKERNELAB_CUDA_ARCHITECTURES="80;90" \
      -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v "$PY")" \
      -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" &&
    cmake --build build/device -j 16 && cp build/device/_ext*.so kernels_cuda/
  } >> "$W/build.log" 2>&1
  sees_gpu
  summary "extension: built here rc=$? ($(tail -1 "$W/build.log"))"
fi

timeout "${TEST_TIMEOUT_S:-120}" "$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra" tests/test_attention_gpu.py \
  > "$W/pytest-attention.log" 2>&1
summary "pytest attention rc=$?: $(tail -1 "$W/pytest-attention.log")"

sanitize() {
  timeout "$2" compute-sanitizer --tool "$1" --error-exitcode 9 "$PY" kernels_cuda/bench/attention_sanitize.py \
    > "$W/sanitizer-attention-$1.log" 2>&1
  summary "compute-sanitizer attention $1 rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$W/sanitizer-attention-$1.log" | tail -1)"
}
sanitize memcheck 90

timeout $(( ${ATTN_BUDGET_S:-150} + 60 )) "$PY" kernels_cuda/bench/attention_gpu_bench.py --out "$W/attention_gpu.csv" \
  --budget-s "${ATTN_BUDGET_S:-150}" > "$W/attention_bench.log" 2>&1
summary "attention bench rc=$?: $(head -1 "$W/attention_bench.log" | cut -c1-200)"

sanitize racecheck 90
sanitize synccheck 60

# Nsight Compute on the slowest kernels against their bound (NCU=1).
if [ -n "${NCU:-}" ]; then
  timeout 150 ncu --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    -k regex:"tree_kernel|block_kernel|lean_kernel" -c 3 --csv --page details \
    "$PY" kernels_cuda/bench/attention_profile_calls.py > "$W/ncu_attention.csv" 2> "$W/ncu_attention.err"
  summary "ncu rc=$?: $(grep -c . "$W/ncu_attention.csv") lines"
fi
tail -60 "$W/attention_bench.log"
cat "$W/summary.txt"

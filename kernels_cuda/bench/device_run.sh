#!/usr/bin/env bash
# One call on a GPU machine: build the extension for that machine's Python with
# the CUDA kernels, run the GPU tests, compute-sanitizer on the triad probe, the
# HBM stream probe, and the PyTorch reference measurements. The attention
# kernels have their own script (attention_device_run.sh). Everything it
# produces goes under $OUT (default ./out); the last lines printed are a summary.
#
#   OUT=/tmp/run bash kernels_cuda/bench/device_run.sh
#
# BUDGET_S bounds the reference measurements (default 240 s); SKIP_REFERENCE=1
# skips them and the stream probe.
set -u
OUT=${OUT:-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }

{ nvidia-smi; nvidia-smi -q -d CLOCK,POWER,PERFORMANCE,ECC; } > "$OUT/nvidia-smi.txt" 2>&1
summary "gpu: $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv,noheader 2>&1)"

# The build runs beside the measurements, at low priority and on few cores.
(
  nice -n 19 cmake -S . -B build/device -G Ninja -DKERNELAB_CUDA=ON \
    -DKERNELAB_CUDA_ARCHITECTURES="80;90" \
    -DPython_EXECUTABLE="$(command -v "$PY")" \
    -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" &&
  nice -n 19 cmake --build build/device -j 4 &&
  cp build/device/_ext*.so kernels_cuda/
) > "$OUT/build.log" 2>&1 &
build_pid=$!

if [ -z "${SKIP_REFERENCE:-}" ]; then
  "$PY" kernels_cuda/bench/torch_reference.py --out "$OUT/reference" --budget-s "${BUDGET_S:-240}" \
    > "$OUT/reference.log" 2>&1
  summary "reference rc=$?: $(grep -c . "$OUT"/reference/*.csv 2>/dev/null | tr '\n' ' ')"
fi

wait "$build_pid"
summary "build rc=$? ($(tail -1 "$OUT/build.log"))"

"$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra" tests/test_backends.py tests/test_triad.py \
  > "$OUT/pytest.log" 2>&1
summary "pytest rc=$?: $(tail -1 "$OUT/pytest.log")"

probe='import json, kernels_cuda as k; r = k.cuda_stream_bandwidth(1 << 22, repeats=2, warmup=1); print(json.dumps(r))'
for tool in memcheck racecheck initcheck synccheck; do
  timeout 90 compute-sanitizer --tool "$tool" --error-exitcode 9 "$PY" -c "$probe" > "$OUT/sanitizer-$tool.log" 2>&1
  summary "compute-sanitizer $tool rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)"
done

[ -n "${SKIP_REFERENCE:-}" ] && exit 0
"$PY" - > "$OUT/stream.json" 2> "$OUT/stream.err" <<'EOF'
import json, kernels_cuda as k
rows = [k.cuda_stream_bandwidth(n, repeats=30, warmup=5) for n in (1 << 26, 1 << 28, 1 << 30)]
print(json.dumps(rows, indent=1))
EOF
summary "stream: $("$PY" -c "import json,sys; print([round(r['bytes_per_s']/1e12, 3) for r in json.load(open('$OUT/stream.json'))], 'TB/s')" 2>&1)"
tail -5 "$OUT/reference.log"

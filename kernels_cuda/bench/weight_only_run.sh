#!/usr/bin/env bash
# One call on a GPU machine: weight_only.py's timings, then Nsight Compute's instruction and memory
# sections for the int8 and int4 (group 32) kernels at batch 1 (Llama-2-7B gate_up). Output under $OUT.
set -u
OUT=${OUT:-out}; PY=${PYTHON:-python3}; mkdir -p "$OUT"
"$PY" kernels_cuda/bench/weight_only.py --out "$OUT" > "$OUT/weight_only.log" 2>&1
echo "weight_only rc=$? rows=$(($(wc -l < "$OUT/weight_only.csv") - 1))"
for c in int8 int4-g32; do
  timeout 120 ncu --clock-control none --csv --page details --section SpeedOfLight --section InstructionStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --launch-skip 2 --launch-count 3 \
    -k 'regex:tinygemm|triton|gemv|gemm|nvjet|splitK' "$PY" kernels_cuda/bench/weight_only.py --ncu "$c" \
    > "$OUT/ncu_$c.csv" 2> "$OUT/ncu_$c.err"
  echo "ncu $c rc=$? lines=$(wc -l < "$OUT/ncu_$c.csv")"
done

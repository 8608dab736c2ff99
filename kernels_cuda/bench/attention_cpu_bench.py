"""CPU benchmark of the attention twins (issue 5), for the sim-versus-real
report on any machine:

    python kernels_cuda/bench/attention_cpu_bench.py --out attention_cpu.csv

Times the CPU twins (float32, one thread, the CUDA kernels' partition) on a
few shapes of each kernel: the median of ``--reps`` calls after a warm-up, on
fresh random inputs. Same columns as ``attention_gpu_bench.py`` (``device``
is ``cpu: <model>``), plus the host's figures the simulator needs to predict
the rows on another machine: the cores, a STREAM-copy bandwidth
(``np.copyto`` over arrays 4x the last-level cache, 2 x 8 bytes per element)
and numpy's float32 matmul rate. They are measured here with the method of
``hwmodels/host.py``, which kernels_cuda does not import (it depends on no
other layer of kernelab).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import kernels_cuda

FIELDS = [
    "kernel", "batch", "heads", "kv_heads", "head_dim", "context", "tree_tokens", "q_len", "causal",
    "dtype", "extra", "time_s", "time_s_min", "reps", "bytes", "gb_per_s", "flops", "tflop_per_s",
    "device", "host_cores", "host_stream_bytes_per_s", "host_fp32_flops_per_s", "date",
]


def _median_s(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def host_figures() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    llc = 32 << 20
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
            sizes.append(int(text[:-1]) * {"K": 1024, "M": 1024**2}.get(text[-1], 1))
        except (OSError, ValueError):
            continue
    llc = max(sizes, default=llc)
    n = max(4 * llc // 8, 1 << 20)
    a, b = np.empty(n), np.random.default_rng(0).random(n)
    copy_s, _ = _median_s(lambda: np.copyto(a, b), 5)
    x = np.random.default_rng(1).random((1024, 1024)).astype(np.float32)
    mm_s, _ = _median_s(lambda: x @ x, 5)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {"device": f"cpu: {model}", "host_cores": cores, "host_stream_bytes_per_s": 2 * n * 8 / copy_s,
            "host_fp32_flops_per_s": 2 * 1024**3 / mm_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("attention_cpu.csv"))
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng()
    rows: list[dict] = []

    def add(kernel: str, fn: Callable[[], Any], nbytes: int, flops: int, **shape: Any) -> None:
        t, tmin = _median_s(fn, args.reps)
        rows.append({"kernel": kernel, "dtype": "float32", "time_s": t, "time_s_min": tmin, "reps": args.reps,
                     "bytes": nbytes, "gb_per_s": nbytes / t / 1e9, "flops": flops,
                     "tflop_per_s": flops / t / 1e12, **shape})

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    for batch, hq, hkv, d, ctx in ((1, 8, 2, 128, 1024), (1, 8, 2, 128, 4096), (2, 16, 4, 64, 2048), (4, 8, 8, 64, 1000)):
        q, k, v = rand(batch, hq, d), rand(batch, ctx, hkv, d), rand(batch, ctx, hkv, d)
        shape = dict(batch=batch, heads=hq, kv_heads=hkv, head_dim=d, context=ctx, q_len=1)
        nbytes, flops = 2 * k.nbytes + 2 * q.nbytes, 4 * batch * hq * ctx * d
        add("split_kv", lambda: kernels_cuda.split_kv_attention(q, k, v), nbytes, flops, **shape)
        add("lean", lambda: kernels_cuda.lean_attention(q, k, v), nbytes, flops, **shape)
    for t, prefix in ((1, 1024), (8, 1024), (16, 1024), (64, 511)):
        hq, hkv, d = 8, 2, 64
        q, k, v = rand(1, t, hq, d), rand(1, prefix + t, hkv, d), rand(1, prefix + t, hkv, d)
        parents = [-1] + [(i - 1) // 2 for i in range(1, t)]
        add("tree", lambda: kernels_cuda.tree_attention(q, k, v, parents), 2 * k.nbytes + 2 * q.nbytes,
            4 * t * hq * (prefix + t) * d, batch=1, heads=hq, kv_heads=hkv, head_dim=d, context=prefix,
            tree_tokens=t, q_len=t, extra="binary tree")
    for s, causal in ((128, False), (256, False), (256, True)):
        hq, hkv, d = 4, 1, 64
        q, k, v = rand(1, s, hq, d), rand(1, s, hkv, d), rand(1, s, hkv, d)
        add("block", lambda: kernels_cuda.block_attention(q, k, v, causal=causal), 2 * q.nbytes + 2 * k.nbytes,
            4 * s * s * hq * d // (2 if causal else 1), batch=1, heads=hq, kv_heads=hkv, head_dim=d, context=s,
            q_len=s, causal=causal)

    info = {**host_figures(), "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({**r, **info})
    print(f"{len(rows)} rows -> {args.out} ({info['device']}, {info['host_cores']} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

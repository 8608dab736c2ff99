"""Sim-versus-real for kernelab's own attention kernels: every row of a
benchmark CSV predicted by the kernel simulator for the device it ran on.

The CSVs are written by ``kernels_cuda/bench/attention_gpu_bench.py`` (GPU:
one row per call, the ``time_s`` column the GPU time with the host's work
hidden) and ``kernels_cuda/bench/attention_cpu_bench.py`` (the CPU twins);
committed runs live under ``sim/data/measured/kernels_cuda/``. Each row maps to
a schedule of :mod:`sim.kernel.schedules`:

==================  ============  ==============================================
CSV ``kernel``      schedule      problem
==================  ============  ==============================================
``split_kv``        split-kv      (batch, heads, kv_heads, head_dim, context)
``lean``,           lean          the same (the one-kernel and two-kernel forms
``lean_two_kernel``               share the partition; the model has one)
``tree``            tree          context = prefix + 1, tree_tokens = T (the
                                  tree schedule's convention)
``ring_step_block``,flash         query_tokens = context = S, causal as given
``block``,
``torch_sdpa``
==================  ============  ==============================================

``error = predicted / measured - 1`` (positive: the simulator is slower).

**GPU rows** run the engine on the catalog device named by the row's
``device`` (``NVIDIA H200`` -> ``H200``), launches at the GPU-side
back-to-back cost (``launch="graph"``): the benchmark queues each call behind
a spin kernel, so the host's launch work is hidden.

**CPU rows** (``device`` starting ``cpu:``) are the twins, which run the same
partition single-threaded, CTA after CTA. The simulator's program for the
same schedule is executed sequentially on one core of the host that measured
the rows, from the host figures the CSV recorded (its probe: STREAM-copy
bandwidth and numpy's float32 matmul rate over all cores): each phase takes
its bytes over the stream rate or its FLOPs over one core's share of the
matmul rate, one after another (a single thread overlaps little). The twins
are scalar loops written to be read, so they run far below that rate: the
error says how far, and is reported, not tuned away.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hwmodels.catalog import CATALOG
from hwmodels.device import Device
from hwmodels.errors import InvalidValueError
from sim.kernel.program import FMA, LOAD, MMA, STORE
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.run import build_schedule, simulate_schedule

MEASURED_KERNELS = Path(__file__).resolve().parents[1] / "data" / "measured" / "kernels_cuda"

SCHEDULE_OF = {
    "split_kv": "split-kv",
    "lean": "lean",
    "lean_two_kernel": "lean",
    "tree": "tree",
    "ring_step_block": "flash",
    "block": "flash",
    "torch_sdpa": "flash",
}
DTYPE_OF = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
REQUIRED = ("kernel", "batch", "heads", "kv_heads", "head_dim", "context", "dtype", "time_s", "device")
CPU_FIELDS = ("host_cores", "host_stream_bytes_per_s", "host_fp32_flops_per_s")


@dataclass(frozen=True)
class HostFigures:
    """The measuring host as its CSV recorded it (CPU rows only)."""

    cores: int
    stream_bytes_per_s: float
    fp32_flops_per_s: float


def csv_files(root: Path = MEASURED_KERNELS) -> list[Path]:
    """Every committed kernel benchmark CSV (``attention_*.csv``) under ``root``."""
    return sorted(root.glob("*/attention_*.csv"))


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a benchmark CSV, checked: a missing file or column names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise InvalidValueError(f"{path}: no such file")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidValueError(f"{path}: missing column(s) {', '.join(missing)}; "
                                    "expected a kernels_cuda/bench attention CSV")
        rows = list(reader)
    if not rows:
        raise InvalidValueError(f"{path}: no rows")
    for i, r in enumerate(rows, start=2):
        if r["kernel"] not in SCHEDULE_OF:
            raise InvalidValueError(f"{path}, line {i}: kernel {r['kernel']!r} has no schedule; "
                                    f"known: {', '.join(SCHEDULE_OF)}")
        if r["dtype"] not in DTYPE_OF:
            raise InvalidValueError(f"{path}, line {i}: dtype {r['dtype']!r}; known: {', '.join(DTYPE_OF)}")
        if r["device"].startswith("cpu:") and any(not r.get(c) for c in CPU_FIELDS):
            raise InvalidValueError(f"{path}, line {i}: a CPU row needs {', '.join(CPU_FIELDS)}")
    return rows


def problem_of(row: dict) -> tuple[str, AttentionProblem]:
    """The schedule name and problem of one CSV row (see the module table)."""
    kernel = row["kernel"]
    b, h, hkv, d, ctx = (int(row[k]) for k in ("batch", "heads", "kv_heads", "head_dim", "context"))
    dtype = DTYPE_OF[row["dtype"]]
    if kernel == "tree":
        return "tree", AttentionProblem(b, h, hkv, d, ctx + 1, dtype=dtype, tree_tokens=int(row["tree_tokens"]))
    if SCHEDULE_OF[kernel] == "flash":
        causal = str(row.get("causal", "")).strip().lower() in ("true", "1")
        return "flash", AttentionProblem(b, h, hkv, d, ctx, query_tokens=int(row["q_len"]), causal=causal, dtype=dtype)
    return SCHEDULE_OF[kernel], AttentionProblem(b, h, hkv, d, ctx, dtype=dtype)


def host_figures(row: dict) -> HostFigures:
    return HostFigures(int(row["host_cores"]), float(row["host_stream_bytes_per_s"]),
                       float(row["host_fp32_flops_per_s"]))


def cpu_sequential_s(schedule: str, problem: AttentionProblem, host: HostFigures, device: Device) -> float:
    """The schedule's program run CTA after CTA on one core (see the module docstring)."""
    program = build_schedule(schedule, problem, device).program
    core_flops = host.fp32_flops_per_s / host.cores
    kind, amount = program.kind, program.amount
    moved = float(amount[(kind == LOAD) | (kind == STORE)].sum())
    math = float(amount[(kind == MMA) | (kind == FMA)].sum())
    return moved / host.stream_bytes_per_s + math / core_flops


@lru_cache(maxsize=4096)
def _gpu_seconds(schedule: str, problem: AttentionProblem, device_name: str) -> float:
    res, _ = simulate_schedule(schedule, problem, CATALOG.get(device_name), launch="graph")
    return float(res.seconds)


def predict_row(row: dict) -> float:
    """Simulated seconds of one CSV row on the device that measured it."""
    schedule, problem = problem_of(row)
    if row["device"].startswith("cpu:"):
        # The twins partition the work as for an H100 SXM (attention_schedule.h's
        # kDefaultSmCount = 132: splits, Lean's grid), so its program is theirs.
        return cpu_sequential_s(schedule, problem, host_figures(row), CATALOG.get("H100-SXM"))
    return _gpu_seconds(schedule, problem, CATALOG.get(row["device"]).name)


def validate(path: str | Path) -> list[dict]:
    """One dict per row: kernel, shape, device, measured_s, predicted_s, error."""
    out = []
    for r in read_rows(path):
        measured = float(r["time_s"])
        predicted = predict_row(r)
        shape = (f"B{r['batch']} H{r['heads']}/{r['kv_heads']} d{r['head_dim']} ctx{r['context']}"
                 + (f" T{r['tree_tokens']}" if r.get("tree_tokens") else "")
                 + (f" S{r['q_len']}{' causal' if r.get('causal', '').lower() == 'true' else ''}"
                    if SCHEDULE_OF[r["kernel"]] == "flash" else ""))
        out.append({"kernel": r["kernel"], "shape": shape, "dtype": r["dtype"], "device": r["device"],
                    "measured_s": measured, "predicted_s": predicted, "error": predicted / measured - 1.0})
    return out


def summary(rows: list[dict]) -> list[dict]:
    """Per (device, kernel): rows, median and max |error|, median signed error."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["device"], r["kernel"]), []).append(r["error"])
    out = []
    for (device, kernel), errs in groups.items():
        a = np.abs(errs)
        out.append({"device": device, "kernel": kernel, "rows": len(errs),
                    "median_abs_error": float(np.median(a)), "max_abs_error": float(a.max()),
                    "median_error": float(statistics.median(errs))})
    return out


# --- the performance targets, from a GPU CSV ----------------------------------------


def measured_stream_bytes_per_s(device: str) -> float:
    """The STREAM-triad rate kernelab measured on ``device`` (largest array of the
    ``stream.json`` of a ``sim/data/measured/kernelab_*`` run on that card)."""
    import json

    name = CATALOG.get(device).name
    best = None
    for run in sorted(MEASURED_KERNELS.parent.glob("kernelab_*")):
        env, stream = run / "environment.json", run / "stream.json"
        if env.is_file() and stream.is_file() and CATALOG.get(json.loads(env.read_text())["device_name"]).name == name:
            rows = json.loads(stream.read_text())
            best = max(rows, key=lambda r: r["bytes_moved"])["bytes_per_s"]
    if best is None:
        raise InvalidValueError(f"no kernelab stream measurement of {name} under {MEASURED_KERNELS.parent}")
    return float(best)


def targets(path: str | Path) -> dict:
    """The issue's performance targets, computed from one GPU benchmark CSV:

    - ``lean_vs_split``: decode shapes timed with both; how many Lean wins,
      how many within 10%, the worst ratio;
    - ``lean_bandwidth``: Lean's K/V GB/s where batch x KV heads <= 32 and
      context >= 32k, against the measured STREAM rate (target: >= 85%);
    - ``tree_vs_decode``: T = 64 tree over a prefix against the faster
      one-token decode over the same prefix (target: <= 1.3x);
    - ``ring_vs_sdpa``: the ring step kernel's TFLOP/s next to torch's
      scaled_dot_product_attention on the same shapes.
    """
    rows = read_rows(path)
    device = rows[0]["device"]
    stream = measured_stream_bytes_per_s(device)
    decode: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r["kernel"] in ("lean", "split_kv"):
            key = tuple(int(r[k]) for k in ("batch", "heads", "kv_heads", "head_dim", "context"))
            decode.setdefault(key, {})[r["kernel"]] = r
    pairs = {k: v for k, v in decode.items() if len(v) == 2}
    ratio = {k: float(v["lean"]["time_s"]) / float(v["split_kv"]["time_s"]) for k, v in pairs.items()}
    worst = max(ratio, key=ratio.get)
    long_small = {k: float(v["lean"]["gb_per_s"]) * 1e9 for k, v in pairs.items() if k[0] * k[2] <= 32 and k[4] >= 32768}
    tree: list[dict] = []
    for r in rows:
        if r["kernel"] == "tree" and int(r["tree_tokens"]) == 64:
            key = (int(r["batch"]), int(r["heads"]), int(r["kv_heads"]), int(r["head_dim"]), int(r["context"]))
            base = [float(v["time_s"]) for v in decode.get(key, {}).values()]
            if base:
                tree.append({"shape": f"B{key[0]} H{key[1]}/{key[2]} d{key[3]} prefix {key[4]}",
                             "tree_s": float(r["time_s"]), "decode_s": min(base),
                             "ratio": float(r["time_s"]) / min(base)})
    ring: dict[tuple, dict] = {}
    for r in rows:
        if r["kernel"] in ("ring_step_block", "torch_sdpa"):
            ring.setdefault((int(r["context"]), r["causal"]), {})[r["kernel"]] = float(r["tflop_per_s"])
    return {
        "device": device, "date": rows[0].get("date", ""), "stream_bytes_per_s": stream,
        "lean_vs_split": {"shapes": len(ratio), "lean_faster": sum(x < 1 for x in ratio.values()),
                          "within_10pct": sum(x <= 1.1 for x in ratio.values()), "median_ratio": float(np.median(list(ratio.values()))),
                          "worst_ratio": ratio[worst], "worst_shape": "B{} H{}/{} d{} ctx {}".format(*worst)},
        "lean_bandwidth": {"shapes": len(long_small), "min_of_stream": min(long_small.values()) / stream,
                           "median_of_stream": float(np.median(list(long_small.values()))) / stream,
                           "at_least_85pct": sum(b >= 0.85 * stream for b in long_small.values())},
        "tree_vs_decode": tree,
        "ring_vs_sdpa": [{"seq": s, "causal": c, "ring_step_tflops": v.get("ring_step_block"), "sdpa_tflops": v.get("torch_sdpa")}
                         for (s, c), v in sorted(ring.items())],
    }

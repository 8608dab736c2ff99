"""The kernel simulator against kernelab's own H100 SXM run (``sim/data/measured/kernelab_h100_2026-11-25``).

**Rows.** Every ``flash`` row of

- ``attention_decode.csv`` (PyTorch SDPA's FlashAttention-2 split-KV kernel and
  combine kernel; one query token per sequence, the GQA group packed as query
  rows) -> schedule ``split-kv`` on ``AttentionProblem(batch, heads, kv_heads,
  head_dim, context)``, family ``decode``;
- ``attention_prefill.csv`` (FlashAttention-2 forward, 16k tokens per batch)
  -> schedule ``flash`` on ``AttentionProblem(batch, heads, heads, head_dim,
  seqlen, query_tokens=seqlen, causal)``, family ``prefill``.

``error = predicted / measured - 1`` (positive: the simulator is slower).

**Device parameters** are the catalog's and the calibration's, nothing else:
the HBM rate of these read-streaming kernels is the read-only stream figure
(BabelStream Dot, 3.18 TB/s, not one of these rows), FlashAttention-2's
``mma.sync`` runs at 2/3 of the calibrated ``wgmma`` rate (FlashAttention-3
paper), latencies are the pointer-chase figures. No row of these files is used
to set any parameter (:data:`CALIBRATION_ROWS` is empty), so every row is held
out; :func:`summary` still reports the held-out rows apart, for when one is.

**Harness model** (the measurement's setting, not the kernels'; both are
switched off by ``harness=False``):

- *launch*: the stream is queued ahead of the GPU (the timed calls follow a
  256 MiB L2-flush write that keeps the GPU busy), so each kernel starts one
  GPU-side launch after the previous one ends: launch.csv row
  ``graph_replay_tiny_kernel`` (0.99 us per back-to-back tiny kernel), not the
  host-bound eager launch (6.5 us).
- *dirty L2*: that flush leaves the L2 full of dirty lines, so each byte the
  first kernel reads from HBM evicts one dirty byte, up to the L2 size
  (``l2_bytes``, datasheet): the first kernel's HBM loads carry
  ``min(HBM load bytes, l2_bytes)`` of write-back traffic, in proportion to
  their HBM bytes.

Run ``python -m sim.kernel.validation`` for the table and the summary.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np

from hwmodels.catalog import CATALOG
from hwmodels.device import Device
from sim.kernel.engine import simulate
from sim.kernel.program import LOAD, Program
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.run import build_schedule

MEASURED = Path(__file__).resolve().parents[1] / "data" / "measured"


def runs() -> dict[str, str]:
    """kernelab's own run folders (``sim/data/measured/kernelab_*``) -> the catalog device each was measured on,
    read from the card name the run recorded (``environment.json``)."""
    return {d.name: CATALOG.get(json.loads((d / "environment.json").read_text())["device_name"]).name
            for d in sorted(MEASURED.glob("kernelab_*")) if (d / "environment.json").is_file()}


RUNS = runs()
RUN = "kernelab_h100_2026-11-25"
LAUNCH_ROW = "graph_replay_tiny_kernel"
#: rows used to set a parameter (none: every device figure comes from elsewhere)
CALIBRATION_ROWS: tuple[str, ...] = ()


def _rows(name: str, run: str = RUN) -> list[dict]:
    with open(MEASURED / run / name, newline="") as f:
        return [r for r in csv.DictReader(f) if r["backend"] == "flash"]


def measured_launch_s(run: str = RUN) -> float:
    """launch.csv, row ``graph_replay_tiny_kernel``: GPU-side cost of one back-to-back kernel."""
    with open(MEASURED / run / "launch.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["op"] == LAUNCH_ROW:
                return float(r["time_s_per_kernel"])
    raise LookupError(f"launch.csv has no row {LAUNCH_ROW!r}")


def cases(run: str = RUN) -> list[dict]:
    """One dict per measured ``flash`` row: id, family, schedule, problem, measured seconds."""
    out = []
    for r in _rows("attention_decode.csv", run):
        b, h, hkv, d, s = (int(r[k]) for k in ("batch", "heads", "kv_heads", "head_dim", "context"))
        out.append({"id": f"decode b{b} h{h}/{hkv} d{d} s{s}", "family": "decode", "schedule": "split-kv",
                    "problem": AttentionProblem(b, h, hkv, d, s), "measured_s": float(r["time_s"])})
    for r in _rows("attention_prefill.csv", run):
        b, h, L, d = (int(r[k]) for k in ("batch", "heads", "seqlen", "head_dim"))
        causal = r["causal"] == "1"
        out.append({"id": f"prefill b{b} h{h} d{d} L{L}{' causal' if causal else ''}", "family": "prefill",
                    "schedule": "flash", "problem": AttentionProblem(b, h, h, d, L, query_tokens=L, causal=causal),
                    "measured_s": float(r["time_s"])})
    return out


def with_dirty_l2(program: Program, l2_bytes: float) -> Program:
    """``program`` whose first kernel's HBM loads also write back ``min(their HBM bytes, l2_bytes)`` dirty bytes."""
    lo, hi = program.cta_ptr[program.kernel_ptr[0]], program.cta_ptr[program.kernel_ptr[1]]
    amount, hit = program.amount.copy(), program.l2_hit.copy()
    a, h = amount[lo:hi], hit[lo:hi]  # views
    loads = (program.kind[lo:hi] == LOAD) & (a > 0)
    hbm = a[loads] * (1.0 - h[loads])
    total = float(hbm.sum())
    if total <= 0:
        return program
    extra = hbm * min(1.0, l2_bytes / total)
    l2_part = a[loads] * h[loads]
    a[loads] = a[loads] + extra
    h[loads] = l2_part / a[loads]
    return dataclasses.replace(program, amount=amount, l2_hit=hit)


def predict(case: dict, device: Device, harness: bool = True, run: str = RUN) -> float:
    """Simulated seconds of one case (see the module docstring for ``harness``)."""
    sched = build_schedule(case["schedule"], case["problem"], device)
    program = with_dirty_l2(sched.program, device.l2_bytes) if harness and device.l2_bytes else sched.program
    launch = measured_launch_s(run) if harness else "kernel"
    return simulate(program, device, launch=launch, load_bytes_in_flight=sched.load_bytes_in_flight).seconds


def table(harness: bool = True, device: Device | None = None, run: str = RUN) -> list[dict]:
    """Rows ``{id, family, schedule, measured_s, predicted_s, error}``, in file order."""
    device = device or CATALOG.get(RUNS[run])
    out = []
    for c in cases(run):
        pred = predict(c, device, harness, run)
        out.append({"id": c["id"], "family": c["family"], "schedule": c["schedule"], "measured_s": c["measured_s"],
                    "predicted_s": pred, "error": pred / c["measured_s"] - 1.0})
    return out


def _stats(errors) -> dict:
    e = np.abs(np.asarray(errors, float))
    return {"rows": int(e.size), "median_abs_error": float(statistics.median(e)) if e.size else float("nan"),
            "max_abs_error": float(e.max()) if e.size else float("nan")}


def summary(rows: list[dict]) -> dict:
    """Per family: ``{all: {rows, median_abs_error, max_abs_error}, held_out: {...}}``."""
    out = {}
    for fam in sorted({r["family"] for r in rows}):
        mine = [r for r in rows if r["family"] == fam]
        out[fam] = {"all": _stats([r["error"] for r in mine]),
                    "held_out": _stats([r["error"] for r in mine if r["id"] not in CALIBRATION_ROWS])}
    return out


def main() -> None:
    for run, device in RUNS.items():
        rows = table(run=run)
        print(f"## {run} ({device})\n")
        print(f"{'row':40s} {'measured us':>12s} {'predicted us':>13s} {'error':>7s}")
        for r in rows:
            print(f"{r['id']:40s} {r['measured_s'] * 1e6:12.1f} {r['predicted_s'] * 1e6:13.1f} {r['error']:+7.1%}")
        print()
        for fam, s in summary(rows).items():
            a, h = s["all"], s["held_out"]
            print(f"{fam:8s} rows {a['rows']:3d}  median |error| {a['median_abs_error']:6.1%}  max {a['max_abs_error']:6.1%}"
                  f"   held out: rows {h['rows']}, median {h['median_abs_error']:6.1%}, max {h['max_abs_error']:6.1%}")
        print()


if __name__ == "__main__":
    main()

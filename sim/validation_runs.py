"""The step model's pieces against kernelab's own GPU runs (``sim/data/measured/kernelab_*``).

Where :mod:`sim.validation` checks whole-system figures that others published,
this module checks the cost model one level down, against what we measured
ourselves on one card (the run folder's README gives the card, clocks, method):

- **GEMMs** (``gemm.csv``, cuBLAS through PyTorch): each row's time against
  the step model's GEMM cost, ``max(tile- and wave-quantized FLOPs / (peak x
  gemm_fraction), bytes / (hbm x hbm_fraction))`` (:func:`sim.cost.time_op`),
  with no launch cost: the run times the kernel alone with CUDA events.
- **Steps** (``llama_step.csv``, ``llama_step_compiled.csv``): whole decode
  and prefill steps of Llama-shaped models (random weights, eager or
  ``torch.compile``d PyTorch replayed from a CUDA graph) against
  :func:`sim.cost.step_cost` with the same layer count.
- **Kernel classes** (``llama_kernels.csv``, one profiled step per shape): the
  measured GPU time of the GEMM, attention and other kernels against the step
  model's GEMM ops, attention op and remaining ops. This says where a step's
  miss comes from.

Nothing here is fitted: the predictions use the catalog and calibration as
they are. ``python -m sim.validation_runs`` prints the tables.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import statistics
from dataclasses import dataclass
from importlib import resources

import numpy as np

import hwmodels as hw
from sim import step as steps
from sim.cost import step_cost, time_op
from sim.graph import Op
from sim.model import get_model
from sim.kernel.validation import RUN, RUNS  # run folder -> catalog device, from its environment.json
from sim.precision import Precision

RUN_DEVICE = RUNS[RUN]

#: the gemm.csv row each run's GEMV streaming rate was read from (hwmodels/data/calibration, gemv_gb_per_s)
GEMV_CALIBRATION_ROW = "llama-3.1-8b.lm_head bf16 1x128256x4096"

_DTYPE = {"bf16": "bf16", "fp16": "fp16", "fp8_e4m3": "fp8", "tf32": "tf32"}
_IN_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "tf32": 4}
GEMM_OPS = ("qkv_proj", "o_proj", "mlp_up", "mlp_down", "lm_head")
_GEMM_KERNEL = re.compile(r"nvjet|gemm|cutlass.*(sm90|sm80)_xmma|splitKreduce", re.IGNORECASE)
_ATTENTION_KERNEL = re.compile(r"flash|fmha|attention", re.IGNORECASE)


@dataclass(frozen=True)
class Comparison:
    """One measured number and the model's prediction of it."""

    label: str
    measured_s: float
    predicted_s: float
    bound: str = ""

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


def read_csv(name: str, run: str = RUN) -> list[dict]:
    with resources.as_file(resources.files("sim") / "data" / "measured" / run / name) as path, \
            open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def gemm_comparisons(run: str = RUN, device: str | None = None) -> list[Comparison]:
    """Every ``gemm.csv`` row against the step model's GEMM time (no launch cost)."""
    dev = hw.get_device(device or RUNS[run])
    cal = hw.calibration(dev)
    out = []
    for r in read_csv("gemm.csv", run):
        m, n, k = (float(r[key]) for key in ("m", "n", "k"))
        dtype = _DTYPE[r["dtype"]]
        e = _IN_BYTES[dtype]
        out_bytes = 4 if dtype == "tf32" else 2
        op = Op("gemm", "gemm", 1, np.float64(2 * m * n * k), np.float64(e * n * k),
                np.float64(e * m * k + out_bytes * m * n), dtype=dtype,
                gemm_mnk=(np.float64(m), np.float64(n), np.float64(k)))
        t = time_op(op, None, None, None, dev, cal, 0.0, "flash")
        out.append(Comparison(f"{r['shape']} {r['dtype']} {int(m)}x{int(n)}x{int(k)}", float(r["time_s"]),
                              float(t.time_s), str(t.bound)))
    return out


def weight_only_comparisons(run: str = RUN, device: str | None = None, bits: int = 4) -> list[Comparison]:
    """``weight_only.csv``'s tinygemm rows (``int4-g32``) against the step model's W4A16 GEMM (sim.dequant)."""
    dev = hw.get_device(device or RUNS[run])
    cal = hw.calibration(dev)
    out = []
    for r in read_csv("weight_only.csv", run):
        if r["kind"] != f"int{bits}-g32":
            continue
        m, n, k = (float(r[key]) for key in ("m", "n", "k"))
        op = Op("gemm", "gemm", 1, np.float64(2 * m * n * k), np.float64(n * k * bits / 8),
                np.float64(2 * (m * k + m * n)), dtype="bf16", gemm_mnk=(np.float64(m), np.float64(n), np.float64(k)),
                weight_only_bits=bits)
        t = time_op(op, None, None, None, dev, cal, 0.0, "flash")
        out.append(Comparison(f"{r['shape']} {r['kind']} {int(m)}x{int(n)}x{int(k)}", float(r["time_s"]),
                              float(t.time_s), str(t.bound)))
    return out


def _run_model(row: dict):
    return dataclasses.replace(get_model(row["model"]), num_layers=int(row["layers"]))


def _run_step(row: dict) -> steps.Step:
    batch = int(row["batch"])
    if row["kind"] == "decode":
        return steps.decode(batch, int(row["context"]))
    return steps.prefill(batch, int(row.get("new_tokens") or row["length"]))


#: how the run's steps were executed -> the suffix of their files
OPS = {"eager": "", "compiled": "_compiled"}


def step_comparisons(run: str = RUN, device: str | None = None, ops: str = "eager",
                     engine: bool = False) -> list[Comparison]:
    """Every ``llama_step{_compiled}.csv`` row against :func:`sim.cost.step_cost` (bf16, CUDA graphs).

    ``ops="eager"``: every PyTorch op its own kernel (~26 a layer); ``"compiled"``:
    each layer through ``torch.compile`` (~13 kernels a layer, the elementwise
    ops fused by Inductor, as in gpt-fast). ``engine``: attention timed by the
    kernel simulator (``engine-split-kv`` for decode, ``engine-flash`` for prefill)."""
    dev = hw.get_device(device or RUNS[run])
    out = []
    for r in read_csv(f"llama_step{OPS[ops]}.csv", run):
        attention = ("engine-split-kv" if r["kind"] == "decode" else "engine-flash") if engine else None
        cost = step_cost(_run_model(r), dev, _run_step(r), Precision(), attention=attention)
        label = f"{r['model']} ({r['layers']} layers) {r['kind']} batch {r['batch']} " + (
            f"context {r['context']}" if r["kind"] == "decode" else f"{r['new_tokens']} tokens")
        by_bound = {k: float(np.sum(v)) for k, v in cost.time_by_bound().items()}
        out.append(Comparison(label, float(r["time_s"]), float(cost.time_s), max(by_bound, key=by_bound.get)))
    return out


def kernel_class(kernel_name: str) -> str:
    """``gemm``, ``attention`` or ``other`` for a profiled kernel's name."""
    if _ATTENTION_KERNEL.search(kernel_name):
        return "attention"
    return "gemm" if _GEMM_KERNEL.search(kernel_name) else "other"


def class_comparisons(run: str = RUN, device: str | None = None, ops: str = "eager") -> list[Comparison]:
    """Per profiled step, the GEMM / attention / other GPU time against the model's ops of that class."""
    dev = hw.get_device(device or RUNS[run])
    measured: dict[tuple, dict[str, float]] = {}
    for r in read_csv(f"llama_kernels{OPS[ops]}.csv", run):
        key = (r["model"], r["layers"], r["kind"], r["batch"], r["length"])
        by_class = measured.setdefault(key, {"gemm": 0.0, "attention": 0.0, "other": 0.0})
        by_class[kernel_class(r["kernel"])] += float(r["total_time_s"])
    out = []
    for (model, layers, kind, batch, length), by_class in measured.items():
        row = {"model": model, "layers": layers, "kind": kind, "batch": batch,
               "context": length, "new_tokens": length}
        cost = step_cost(_run_model(row), dev, _run_step(row), Precision())
        predicted = {"gemm": 0.0, "attention": 0.0, "other": 0.0}
        for ot in cost.ops:
            cls = "gemm" if ot.op.name in GEMM_OPS else ("attention" if ot.op.kind == "attention" else "other")
            predicted[cls] += float(np.sum(ot.total_s))
        for cls in ("gemm", "attention", "other"):
            out.append(Comparison(f"{model} {kind} batch {batch} length {length}: {cls}",
                                  by_class[cls], predicted[cls], cls))
    return out


def stats(comparisons: list[Comparison]) -> dict:
    errors = [abs(c.error) for c in comparisons]
    return {"rows": len(errors), "median_abs_error": statistics.median(errors) if errors else None,
            "max_abs_error": max(errors) if errors else None,
            "median_error": statistics.median(c.error for c in comparisons) if comparisons else None}


def memory_bound_gemms(comparisons: list[Comparison]) -> list[Comparison]:
    """Rows the model calls memory-bound, except the tiny square sizes and the row that set the GEMV rate."""
    return [c for c in comparisons if c.bound == "memory" and not c.label.startswith("square")
            and c.label != GEMV_CALIBRATION_ROW]


def _table(title: str, comparisons: list[Comparison]) -> str:
    lines = [f"### {title}", "", "| setting | measured | predicted | error | model's bound |", "|---|---|---|---|---|"]
    lines += [f"| {c.label} | {c.measured_s * 1e6:.1f} µs | {c.predicted_s * 1e6:.1f} µs | {c.error:+.1%} | {c.bound} |"
              for c in comparisons]
    return "\n".join(lines)


def summary(run: str = RUN) -> dict[str, dict]:
    """The README's table for one run: error statistics per family."""
    gemms = gemm_comparisons(run)
    long = [c for c in gemms if c.measured_s >= 100e-6]
    classes = class_comparisons(run)
    return {
        "compute-bound GEMMs >= 100 us": stats([c for c in long if c.bound == "compute"]),
        "memory-bound GEMMs >= 100 us": stats([c for c in memory_bound_gemms(long)]),
        "memory-bound GEMMs, all": stats(memory_bound_gemms(gemms)),
        "GEMM time of a profiled step": stats([c for c in classes if c.bound == "gemm"]),
        "attention time of a profiled step": stats([c for c in classes if c.bound == "attention"]),
        "other time of a compiled profiled step": stats([c for c in class_comparisons(run, ops="compiled")
                                                         if c.bound == "other"]),
        "whole steps, eager": stats(step_comparisons(run)),
        "whole steps, compiled": stats(step_comparisons(run, ops="compiled")),
        "whole steps, compiled, engine attention": stats(step_comparisons(run, ops="compiled", engine=True)),
    }


if __name__ == "__main__":  # python -m sim.validation_runs
    for run, device in RUNS.items():
        print(f"## {run} ({device})\n")
        gemms = gemm_comparisons(run)
        for title, rows in (("GEMMs, compute-bound", [c for c in gemms if c.bound == "compute"]),
                            ("GEMMs, memory-bound", memory_bound_gemms(gemms)),
                            ("Steps, eager", step_comparisons(run)),
                            ("Steps, compiled", step_comparisons(run, ops="compiled")),
                            ("Kernel classes of profiled eager steps", class_comparisons(run)),
                            ("Kernel classes of profiled compiled steps", class_comparisons(run, ops="compiled"))):
            print(_table(title, rows))
            print("\n", stats(rows), "\n")
        for family, s in summary(run).items():
            print(f"| {family} | {s['rows']} | {s['median_error']:+.1%} | {s['median_abs_error']:.1%} | {s['max_abs_error']:.1%} |")

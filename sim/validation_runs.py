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
- **Mixture of experts** (``moe/<card>_<date>/``, :data:`MOE_RUNS`): the
  grouped expert GEMM alone (``moe_gemm.csv``) against a grouped GEMM op, the
  experts each step touched against ``E (1 - (1 - k/E)^M)``, whole Mixtral
  steps (``moe_step.csv``, 16 of 32 layers, eager ops) and their grouped-GEMM
  kernels (``moe_kernels.csv``) against ``moe_up`` + ``moe_down``.

Nothing here is fitted: the predictions use the catalog and calibration as
they are (two rows set a rate: the GEMV and grouped-GEMM streaming rates of
each card, named by :data:`GEMV_CALIBRATION_ROW` and :data:`GROUPED_CALIBRATION_ROW`). ``python -m sim.validation_runs`` prints the tables.
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
from sim.graph import Op, Routing
from sim.model import get_model
from sim.kernel.validation import RUN, RUNS  # run folder -> catalog device, from its environment.json
from sim.precision import Precision

RUN_DEVICE = RUNS[RUN]

#: the gemm.csv row each run's GEMV streaming rate was read from (hwmodels/data/calibration, gemv_gb_per_s)
GEMV_CALIBRATION_ROW = "llama-3.1-8b.lm_head bf16 1x128256x4096"
#: the moe_gemm.csv row each card's grouped-GEMM streaming rate was read from (grouped_gemm_gb_per_s)
GROUPED_CALIBRATION_ROW = "mixtral-8x7b.w13 grouped 8x16x28672x4096"
MOE = resources.files("sim") / "data" / "measured" / "moe"


def moe_runs() -> dict[str, str]:
    """``moe/<card>_<date>`` folders -> the catalog device each was measured on (its ``environment.json``)."""
    import json

    return {d.name: hw.CATALOG.get(json.loads((d / "environment.json").read_text())["device_name"]).name
            for d in sorted(MOE.iterdir(), key=lambda d: d.name) if (d / "environment.json").is_file()}


MOE_RUNS = moe_runs()

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


def _moe_csv(name: str, run: str) -> list[dict]:
    with resources.as_file(MOE / run / name) as path, open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def moe_gemm_comparisons(run: str) -> list[Comparison]:
    """``moe_gemm.csv``: the grouped GEMM (``experts`` groups of ``rows_per_expert`` rows) and cuBLAS on one expert,
    each against the step model's GEMM op of that shape (grouped: :attr:`sim.graph.Op.grouped`), no launch cost."""
    dev = hw.get_device(MOE_RUNS[run])
    cal = hw.calibration(dev)
    out = []
    for r in _moe_csv("moe_gemm.csv", run):
        g, m, n, k = (float(r[key]) for key in ("experts", "rows_per_expert", "n", "k"))
        op = Op("gemm", "gemm", 1, np.float64(2 * g * m * n * k), np.float64(2 * g * n * k),
                np.float64(2 * g * m * (k + n)), gemm_mnk=(np.float64(m), np.float64(n), np.float64(k)),
                gemm_groups=np.float64(g), grouped=r["impl"] == "grouped")
        t = time_op(op, None, None, None, dev, cal, 0.0, "flash")
        out.append(Comparison(f"{r['shape']} {r['impl']} {int(g)}x{int(m)}x{int(n)}x{int(k)}",
                              float(r["time_s"]), float(t.time_s), str(t.bound)))
    return out


def moe_routed_comparisons(run: str) -> list[Comparison]:
    """``moe_gemm_routed.csv``: the grouped GEMM over routed (uneven, ``impl=routed``) and even groups of the same
    rows, against the grouped GEMM op with :class:`sim.graph.Routing` for the routed rows."""
    dev = hw.get_device(MOE_RUNS[run])
    cal = hw.calibration(dev)
    out = []
    for r in _moe_csv("moe_gemm_routed.csv", run):
        g, tokens, k_tok, n, k = (float(r[key]) for key in ("experts", "tokens", "experts_per_token", "n", "k"))
        rows = tokens * k_tok
        routing = Routing(np.float64(tokens), k_tok / g, g) if r["impl"] == "routed" else None
        op = Op("gemm", "gemm", 1, np.float64(2 * rows * n * k), np.float64(2 * g * n * k),
                np.float64(2 * rows * (k + n)), gemm_mnk=(np.float64(rows / g), np.float64(n), np.float64(k)),
                gemm_groups=np.float64(g), grouped=True, routing=routing)
        t = time_op(op, None, None, None, dev, cal, 0.0, "flash")
        out.append(Comparison(f"{r['shape']} {r['impl']} {int(tokens)} tokens (rows per expert "
                              f"{r['min_rows_per_expert']}-{r['max_rows_per_expert']})",
                              float(r["time_s"]), float(t.time_s), str(t.bound)))
    return out


def expected_touched_experts(row: dict) -> float:
    """The experts the step model's graph has the row's step touch (``moe_up``'s groups, :mod:`sim.graph`'s
    uniform-routing expectation ``E (1 - (1 - k/E)^M)``)."""
    from sim.graph import step_graph

    up = next(o for o in step_graph(_run_model(row), _run_step(row)) if o.name == "moe_up")
    return float(up.gemm_groups)


def moe_step_comparisons(run: str, ops: str = "eager") -> list[Comparison]:
    """``moe_step{_compiled}.csv``: whole Mixtral steps (CUDA graph) against :func:`sim.cost.step_cost`."""
    dev = hw.get_device(MOE_RUNS[run])
    out = []
    for r in _moe_csv(f"moe_step{OPS[ops]}.csv", run):
        cost = step_cost(_run_model(r), dev, _run_step(r), Precision())
        by_bound = {k: float(np.sum(v)) for k, v in cost.time_by_bound().items()}
        label = f"{r['model']} ({r['layers']} layers) {r['kind']} batch {r['batch']} " + (
            f"context {r['context']}" if r["kind"] == "decode" else f"{r['new_tokens']} tokens")
        out.append(Comparison(label, float(r["time_s"]), float(cost.time_s), max(by_bound, key=by_bound.get)))
    return out


_GROUPED_KERNEL = re.compile(r"GroupProblemShape")  # CUTLASS 3.x grouped GEMM (torch._grouped_mm on sm90)


def moe_expert_comparisons(run: str, ops: str = "eager") -> list[Comparison]:
    """Per profiled Mixtral step, the grouped-GEMM kernels' GPU time against the model's ``moe_up`` + ``moe_down``."""
    dev = hw.get_device(MOE_RUNS[run])
    measured: dict[tuple, float] = {}
    for r in _moe_csv(f"moe_kernels{OPS[ops]}.csv", run):
        key = (r["model"], r["layers"], r["kind"], r["batch"], r["length"])
        if _GROUPED_KERNEL.search(r["kernel"]):
            measured[key] = measured.get(key, 0.0) + float(r["total_time_s"])
    out = []
    for key, seconds in measured.items():
        model, layers, kind, batch, length = key
        row = {"model": model, "layers": layers, "kind": kind, "batch": batch, "context": length, "new_tokens": length}
        cost = step_cost(_run_model(row), dev, _run_step(row), Precision())
        predicted = sum(float(np.sum(ot.total_s)) for ot in cost.ops if ot.op.name in ("moe_up", "moe_down"))
        out.append(Comparison(f"{model} {kind} batch {batch} length {length}: expert GEMMs", seconds, predicted,
                              "grouped gemm"))
    return out


PREFILL_GRID = resources.files("sim") / "data" / "measured" / "prefill_grid"
PREFILL_GRID_RUN = "h100_2026-11-26"
PREFILL_GRID_RUNS = ("h100_2026-11-26", "h200_2026-11-26")


def prefill_grid_comparisons(kernel: str = "flash", run: str = PREFILL_GRID_RUN, min_seqlen: int = 2048,
                             causal: bool | None = None) -> list[Comparison]:
    """``prefill_grid/<run>/attention_prefill_grid.csv``: FlashAttention-2 prefill calls (``flash`` backend, Q as
    [B, H, S, D]) of at least ``min_seqlen`` tokens (shorter ones carry the host's dispatch time) against an
    attention kernel model by name (``flash``, ``engine-flash``), no launch cost."""
    import json

    from sim.attention import get_attention_kernel

    folder = PREFILL_GRID / run
    dev = hw.get_device(hw.CATALOG.get(json.loads((folder / "environment.json").read_text())["device_name"]).name)
    cal = hw.calibration(dev)
    out = []
    with resources.as_file(folder / "attention_prefill_grid.csv") as path, open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        b, h, s, d, is_causal = (int(r["batch"]), int(r["heads"]), int(r["seqlen"]), int(r["head_dim"]),
                                 r["causal"] == "1")
        if r["backend"] != "flash" or r["q_layout"] != "bhsd" or s < min_seqlen or causal not in (None, is_causal):
            continue
        st = steps.prefill(b, s)
        pairs = st.attention_pairs if is_causal else np.float64(b * s * s)
        st = steps.Step(st.kind, st.seqs, st.new_tokens, st.kv_read_tokens, pairs, st.logit_rows, st.max_kv_tokens,
                        st.description, causal=is_causal)
        op = Op("attention", "attention", 1, np.float64(4.0 * d * h * pairs), np.float64(0.0),
                np.float64(2.0 * b * s * h * d * 2), np.float64(2.0 * b * s * h * d * 2))
        at = get_attention_kernel(kernel)(op, st, h, h, d, dev, cal)
        predicted = float(np.maximum(at.compute_s, at.memory_s) + at.latency_s)
        out.append(Comparison(f"FA2 {b}x{h}x{s} {'causal' if is_causal else 'full'}", float(r["time_s"]), predicted,
                              kernel))
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
    for grid_run in PREFILL_GRID_RUNS:
        rows = prefill_grid_comparisons(run=grid_run)
        print(f"## prefill_grid/{grid_run}\n")
        print(_table("FlashAttention-2 prefill at step grids", rows))
        print("\n", stats(rows), "\n")
    for run, device in MOE_RUNS.items():
        print(f"## moe/{run} ({device})\n")
        tables = [("Grouped and one-expert GEMMs", moe_gemm_comparisons(run)),
                  ("Mixtral steps, eager", moe_step_comparisons(run)),
                  ("Expert GEMMs of profiled steps", moe_expert_comparisons(run)),
                  ("Grouped GEMMs over routed and even groups", moe_routed_comparisons(run)),
                  ("Mixtral steps, compiled", moe_step_comparisons(run, ops="compiled")),
                  ("Expert GEMMs of profiled compiled steps", moe_expert_comparisons(run, ops="compiled"))]
        for title, rows in tables:
            print(_table(title, rows))
            print("\n", stats(rows), "\n")

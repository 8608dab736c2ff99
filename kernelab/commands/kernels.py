"""The cycle-level kernel command."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

import hwmodels as hw
from hwmodels.units import format_si
from kernelab.commands._common import DEFAULT_DEVICE, print_json


#: CLI names of the kernel schedules -> their registry names
KERNEL_SCHEDULES = {"fa2": "flash", "split-kv": "split-kv", "lean": "lean", "tree": "tree", "cascade": "cascade",
                    "ring-step": "ring-step", "gemm": "gemm"}


def _kernel_problem(args: argparse.Namespace, name: str):
    from sim.kernel.schedules.problem import AttentionProblem, GemmProblem

    if name == "gemm":
        if args.m is None or args.n is None or args.k is None:
            raise hw.InvalidValueError("gemm needs --m, --n and --k")
        return GemmProblem(args.m, args.n, args.k, dtype=args.dtype, split_k=args.split_k, mode=args.mode)
    for flag in ("batch", "heads", "head_dim", "context"):
        v = getattr(args, flag)
        if v is None or v < 1:
            raise hw.InvalidValueError(f"--{flag.replace('_', '-')} must be a positive integer, got {v!r}")
    kv_heads = args.kv_heads if args.kv_heads is not None else args.heads
    if kv_heads < 1 or args.heads % kv_heads:
        raise hw.InvalidValueError(f"--heads ({args.heads}) must be a positive multiple of --kv-heads ({kv_heads})")
    tokens = args.tokens
    if tokens is None:
        tokens = args.context if name == "ring-step" else 1
    if name in ("fa2", "ring-step") and tokens < 1:
        raise hw.InvalidValueError(f"--tokens must be a positive integer, got {tokens}")
    extra = {}
    if name == "tree":
        extra["tree_tokens"] = 1 if args.tree_tokens is None else args.tree_tokens
        if extra["tree_tokens"] < 1:
            raise hw.InvalidValueError(f"--tree-tokens must be a positive integer, got {extra['tree_tokens']}")
        if args.tree_pairs is not None:
            extra["tree_pairs"] = args.tree_pairs
    if name == "cascade":
        if not args.prefix or args.prefix < 1 or args.prefix >= args.context:
            raise hw.InvalidValueError(f"cascade needs --prefix between 1 and --context - 1 (shared prefix of the "
                                       f"{args.context}-token context), got {args.prefix!r}")
        extra["prefix"] = args.prefix
    q = tokens if name in ("fa2", "ring-step") else 1
    tree_pairs = extra.pop("tree_pairs", None)
    problem = AttentionProblem(args.batch, args.heads, kv_heads, args.head_dim, args.context, query_tokens=q,
                               causal=args.causal, dtype=args.dtype, kv_bits=args.kv_bits, **extra)
    return (problem, tree_pairs) if name == "tree" else problem


def cmd_kernel(args: argparse.Namespace, console: Console) -> int:
    import numpy as np

    from sim.kernel.schedules.run import build_schedule, simulate_schedule, summary

    name = args.schedule.strip().lower()
    if name not in KERNEL_SCHEDULES:
        raise hw.UnknownNameError("kernel schedule", args.schedule, KERNEL_SCHEDULES)
    device = hw.get_device(args.device)
    problem = _kernel_problem(args, name)
    kwargs = {}
    if name == "tree":
        problem, pairs = problem
        if pairs is not None:
            kwargs["tree_pairs"] = pairs
    launch = args.launch
    schedule = build_schedule(KERNEL_SCHEDULES[name], problem, device, **kwargs)
    result, _ = simulate_schedule(KERNEL_SCHEDULES[name], problem, device, launch=launch, **kwargs)
    rec = summary(result)
    rec.update(
        schedule=name, registry_name=KERNEL_SCHEDULES[name], device=device.name,
        time_s=float(result.seconds), cycles=float(result.cycles), tail_fraction=float(result.tail_fraction),
        kernels=[{"name": n, "start_cycles": float(s), "end_cycles": float(e), "start_s": float(s) / result.clock_hz,
                  "end_s": float(e) / result.clock_hz, "ctas": int(np.sum(result.cta_kernel == i)),
                  "occupancy": int(result.kernel_occupancy[i])}
                 for i, (n, s, e) in enumerate(zip(result.kernel_names, result.kernel_start, result.kernel_end))],
        problem={k: getattr(problem, k) for k in problem.__dataclass_fields__},
    )
    rec.setdefault("bytes_per_s", float(result.achieved_hbm_bytes_per_s))
    rec.setdefault("flops_per_s", float(result.achieved_flops_per_s))
    rec.setdefault("sm_utilization", float(result.mean_sm_utilisation))
    if schedule.info:
        rec["info"] = schedule.info
    if args.timeline:
        from hwmodels.plot import write_figure
        from sim.kernel.timeline import timeline_figure

        fig = timeline_figure(result, schedule.program,
                              title=f"{name} on {device.name}: per-SM CTA timeline")
        rec["timeline"] = str(write_figure(fig, args.timeline))
    if args.json:
        print_json(rec)
        return 0
    console.print(f"[bold]{name}[/bold] on [bold]{device.name}[/bold]: {format_si(rec['time_s'], 's')} "
                  f"({rec['cycles']:,.0f} cycles), {format_si(rec['bytes_per_s'], 'B/s')}, "
                  f"{format_si(rec['flops_per_s'], 'FLOP/s')}, SM utilization {rec['sm_utilization']:.1%}, "
                  f"tail {rec['tail_fraction']:.1%}")
    table = Table(title="kernels")
    for col in ("kernel", "CTAs", "CTAs/SM", "start", "end"):
        table.add_column(col, justify="left" if col == "kernel" else "right")
    for k in rec["kernels"]:
        table.add_row(k["name"], f"{k['ctas']:,}", str(k["occupancy"]), format_si(k["start_s"], "s"), format_si(k["end_s"], "s"))
    console.print(table)
    if "timeline" in rec:
        console.print(f"wrote {rec['timeline']}")
    return 0


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from sim.kernel import measured

    rows = measured.validate(args.csv)
    groups = measured.summary(rows)
    if args.json:
        print_json({"csv": str(args.csv), "summary": groups, "rows": rows if args.rows else None})
        return 0
    t = Table(title=f"sim versus real: {args.csv} (error = predicted / measured - 1)")
    for col in ("device", "kernel", "rows", "median |error|", "max |error|", "median error"):
        t.add_column(col, justify="left" if col in ("device", "kernel") else "right")
    for g in groups:
        t.add_row(g["device"], g["kernel"], str(g["rows"]), f"{g['median_abs_error']:.1%}",
                  f"{g['max_abs_error']:.1%}", f"{g['median_error']:+.1%}")
    console.print(t)
    if args.rows:
        r = Table(title="rows")
        for col in ("kernel", "shape", "dtype", "measured", "predicted", "error"):
            r.add_column(col, justify="left" if col in ("kernel", "shape", "dtype") else "right")
        for row in rows:
            r.add_row(row["kernel"], row["shape"], row["dtype"], format_si(row["measured_s"], "s"),
                      format_si(row["predicted_s"], "s"), f"{row['error']:+.1%}")
        console.print(r)
    return 0


def register(sub) -> None:
    v = sub.add_parser("validate", help="predict every row of a kernel benchmark CSV with the kernel simulator "
                                        "and print the error per kernel (GPU or CPU measurements)")
    v.add_argument("csv", type=Path, help="a CSV of kernels_cuda/bench/attention_gpu_bench.py or attention_cpu_bench.py")
    v.add_argument("--rows", action="store_true", help="also print (or put in the JSON) every row")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_validate)
    s = sub.add_parser("kernel", help="simulate one kernel schedule cycle by cycle (attention or GEMM)")
    s.add_argument("schedule", help="fa2, split-kv, lean, tree, cascade, ring-step or gemm")
    s.add_argument("--device", default=DEFAULT_DEVICE)
    s.add_argument("--batch", type=int, default=1, help="sequences")
    s.add_argument("--heads", type=int, default=32, help="query heads")
    s.add_argument("--kv-heads", type=int, help="KV heads (default: --heads)")
    s.add_argument("--head-dim", type=int, default=128)
    s.add_argument("--context", type=int, default=4096,
                   help="KV length per sequence (ring-step: the KV block; tree: the decode step's context)")
    s.add_argument("--tokens", type=int, help="query tokens per sequence for fa2 (default 1) and ring-step (default --context)")
    s.add_argument("--tree-tokens", type=int, help="tree: tokens of the draft tree (default 1)")
    s.add_argument("--tree-pairs", type=int, help="tree: its (node, ancestor-or-self) pairs (default: a chain)")
    s.add_argument("--prefix", type=int, help="cascade: tokens of the prefix all sequences share")
    s.add_argument("--causal", action="store_true")
    s.add_argument("--dtype", default="bf16")
    s.add_argument("--kv-bits", type=int, default=16)
    s.add_argument("--m", type=int, help="gemm: rows of A and C")
    s.add_argument("--n", type=int, help="gemm: columns of B and C")
    s.add_argument("--k", type=int, help="gemm: the reduction dimension")
    s.add_argument("--split-k", type=int, default=1, help="gemm: CTAs per output tile over K (--mode split-k)")
    s.add_argument("--mode", choices=("tiles", "split-k", "stream-k"), default="tiles", help="gemm decomposition")
    s.add_argument("--launch", choices=("kernel", "graph"), default="kernel", help="launch cost between kernels")
    s.add_argument("--timeline", type=Path, help="write the per-SM CTA Gantt chart to FILE.html")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_kernel)

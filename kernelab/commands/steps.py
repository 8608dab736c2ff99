"""Commands about what a step costs: predict one step, sweep a grid."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

import hwmodels as hw
from hwmodels.units import format_si
from kernelab.commands._common import DEFAULT_DEVICE, DEFAULT_MODEL, print_json


def _build_step(args: argparse.Namespace):
    from sim import step as steps

    if args.kind == "prefill":
        if args.tokens is None:
            return steps.prefill(args.batch, args.context, 0)
        return steps.prefill(args.batch, args.tokens, args.context)
    if args.kind == "decode":
        return steps.decode(args.batch, args.context)
    return steps.verify(args.batch, args.context, args.tokens or 8, tree_pairs=args.tree_pairs)


def _breakdown_text(breakdown: dict) -> str:
    return ", ".join(f"{k[:-2]} {format_si(v, 's')}" for k, v in breakdown.items())


def _predict_context_parallel(args, model, device, step, kwargs, console: Console) -> int:
    from sim.context_parallel import context_parallel_cost

    if args.kind != "prefill" or args.pp > 1 or args.ep > 1:
        raise hw.InvalidValueError("--cp applies to a prefill step, without --pp or --ep")
    rec = context_parallel_cost(model, device, step, args.cp, method=args.cp_method, **kwargs).as_dict()
    rec["ttft_s"] = rec["time_s"]
    if args.json:
        print_json(rec)
        return 0
    console.print(f"[bold]{model.name}[/bold] on {rec['gpus']}x [bold]{device.name}[/bold] (CP={args.cp}, TP={args.tp}, "
                  f"{rec['method']}): {step.description}")
    console.print(f"time {format_si(rec['time_s'], 's')}, {rec['tokens_per_s']:,.0f} tokens/s; "
                  + _breakdown_text(rec["breakdown"]) + f"; {rec['choice_reason']}")
    return 0


def cmd_predict(args: argparse.Namespace, console: Console) -> int:
    from sim import get_model
    from sim.cost import step_cost
    from sim.memory import check_fits
    from sim.pipeline import pipeline_cost
    from sim.precision import Precision

    device, model = hw.get_device(args.device), get_model(args.model)
    precision = Precision(args.weight_bits, args.activation_bits, args.kv_bits)
    step = _build_step(args)
    memory = None if args.ignore_memory else check_fits(model, device, step, precision, tp=args.tp, pp=args.pp,
                                                        ep=args.ep, cp=args.cp)
    kwargs = dict(precision=precision, tp=args.tp, attention=args.attention, cuda_graphs=not args.no_cuda_graphs)
    if args.cp > 1:
        return _predict_context_parallel(args, model, device, step, kwargs, console)
    if args.pp > 1:
        pipe = pipeline_cost(model, device, step, pp=args.pp, microbatches=args.microbatches, ep=args.ep, **kwargs)
        cost, time_s, tokens_per_s = pipe.micro, float(pipe.time_s), float(pipe.tokens_per_s)
    else:
        cost = step_cost(model, device, step, ep=args.ep, **kwargs)
        pipe, time_s, tokens_per_s = None, float(cost.time_s), float(cost.tokens_per_s)
    rec = cost.as_dict()
    rec.update(time_s=time_s, tokens_per_s=tokens_per_s, pp=args.pp, ep=args.ep, n_gpus=args.tp * args.pp * args.ep,
               precision={"weight_bits": args.weight_bits, "activation_bits": args.activation_bits, "kv_bits": args.kv_bits})
    if memory is not None:
        rec["memory"] = memory.as_dict()
    if pipe is not None:
        rec["pipeline"] = {"microbatches": pipe.microbatches, "layers_per_stage": pipe.layers_per_stage,
                           "stage_s": float(pipe.stage_s), "p2p_s": float(pipe.p2p.time_s),
                           "bubble_fraction": pipe.bubble_fraction,
                           "note": "ops and breakdown are for one micro-batch through all layers"}
    if args.kind == "prefill":
        rec["ttft_s"] = time_s
    else:
        rec["tpot_s"] = time_s
    if args.json:
        print_json(rec)
        return 0
    console.print(f"[bold]{model.name}[/bold] on {rec['n_gpus']}x [bold]{device.name}[/bold] "
                  f"(TP={args.tp}, PP={args.pp}, EP={args.ep}): {step.description}")
    console.print(f"time {format_si(time_s, 's')}, {tokens_per_s:,.0f} tokens/s, MFU {rec['mfu']:.1%}, MBU {rec['mbu']:.1%}; "
                  + _breakdown_text(rec["breakdown"]))
    table = Table(title="per op (one instance; x repeat per step)")
    for col in ("op", "x", "time", "compute", "memory", "overhead", "FLOP/B", "bound"):
        table.add_column(col, justify="left" if col in ("op", "bound") else "right")
    for o in rec["ops"]:
        table.add_row(o["name"], str(o["repeat"]), format_si(o["time_s"], "s"), format_si(o["compute_s"], "s"),
                      format_si(o["memory_s"], "s"), format_si(o["overhead_s"], "s"),
                      f"{o['intensity_flops_per_byte']:.3g}" if o["intensity_flops_per_byte"] else "-", o["bound"])
    for c in rec["communication"]:
        table.add_row(c["name"], str(c["repeat"]), format_si(c["time_s"], "s"), "", "", "", "", "communication")
    console.print(table)
    return 0


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    from sim.sweep import parse_values, sweep

    def values(flag: str, text: str | None):
        if text is None:
            return None
        try:
            return parse_values(text)
        except hw.InvalidValueError as exc:
            raise hw.InvalidValueError(f"{flag}: {exc}") from None

    bits = {k: values(f"--{k.replace('_', '-')}", getattr(args, k)) for k in ("weight_bits", "activation_bits", "kv_bits")}
    result = sweep(
        args.model or [DEFAULT_MODEL], args.device or [DEFAULT_DEVICE], kinds=args.kind or ["decode"],
        batch=values("--batch", args.batch), context=values("--context", args.context), tokens=values("--tokens", args.tokens),
        tp=values("--tp", args.tp), ep=values("--ep", args.ep), **bits, attention=args.attention, cuda_graphs=not args.no_cuda_graphs,
        output=args.output, resume=args.resume, scheduler=args.scheduler, chunk_size=args.chunk_size,
        progress=not args.no_progress and sys.stderr.isatty(), collect=False,
    )
    rec = {"output": str(result.output), "rows": result.rows_written, "resumed_rows": result.resumed_rows,
           "evals": result.evals, "elapsed_s": result.elapsed_s, "evals_per_s": result.evals_per_s,
           "combinations": result.combinations, "scheduler": result.scheduler, "skipped": result.skipped}
    if args.json:
        print_json(rec)
        return 0
    console.print(f"wrote {result.rows_written:,} rows to [bold]{result.output}[/bold]: {result.evals:,} evaluations in "
                  f"{format_si(result.elapsed_s, 's')} ({result.evals_per_s:,.0f}/s, {result.scheduler})")
    if result.resumed_rows:
        console.print(f"kept {result.resumed_rows:,} rows the file already had (--resume)")
    if result.skipped:
        by_reason: dict[str, list[str]] = {}
        for s in result.skipped:
            what = " ".join(f"{k}={s[k]}" for k in ("model", "device", "kind", "tp", "ep") if s[k] is not None)
            what += f" W{s['weight_bits']}A{s['activation_bits']}KV{s['kv_bits']}"
            by_reason.setdefault(s["reason"], []).append(what)
        table = Table(title=f"skipped {len(result.skipped)} of {result.combinations} combinations")
        for col in ("reason", "combinations"):
            table.add_column(col, overflow="fold")
        for reason, whats in by_reason.items():
            table.add_row(reason, "; ".join(whats[:4]) + (f"; and {len(whats) - 4} more" if len(whats) > 4 else ""))
        console.print(table)
    return 0


KERNEL_SCHEDULES = {"fa2": "flash", "split-kv": "split-kv", "lean": "lean", "tree": "tree", "cascade": "cascade",
                    "ring-step": "ring-step", "gemm": "gemm"}


def register(sub) -> None:
    s = sub.add_parser("predict", help="time of one prefill, decode or verification step, with its breakdown")
    s.add_argument("kind", choices=("prefill", "decode", "verify"))
    s.add_argument("--device", default=DEFAULT_DEVICE)
    s.add_argument("--model", default=DEFAULT_MODEL)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--context", type=int, default=2048,
                   help="prefill: prompt length (or the prefix, with --tokens); decode/verify: cached tokens")
    s.add_argument("--tokens", type=int, help="prefill: chunk of new tokens over --context; verify: draft tokens (default 8)")
    s.add_argument("--tree-pairs", type=int, help="verify a tree: its number of (node, ancestor-or-self) pairs")
    s.add_argument("--tp", type=int, default=1)
    s.add_argument("--pp", type=int, default=1)
    s.add_argument("--microbatches", type=int, help="pipeline micro-batches (default: --pp)")
    s.add_argument("--ep", type=int, default=1, help="expert parallelism (MoE models)")
    s.add_argument("--cp", type=int, default=1, help="context parallelism for a long prefill (ring attention)")
    s.add_argument("--cp-method", default="auto", help="auto, pass-kv, pass-q, tokenring, lasp2")
    s.add_argument("--weight-bits", type=int, default=16)
    s.add_argument("--activation-bits", type=int, default=16)
    s.add_argument("--kv-bits", type=int, default=16)
    s.add_argument("--attention", help="attention kernel model: flash, split-kv, paged, or the kernel simulator's engine-flash, engine-split-kv, engine-lean, engine-tree (default by step kind)")
    s.add_argument("--no-cuda-graphs", action="store_true", help="charge stream launches instead of graph replays")
    s.add_argument("--ignore-memory", action="store_true", help="predict even if the weights and KV cache do not fit")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser(
        "sweep", help="step costs over a grid of models, devices, kinds, layouts, precisions and shapes, to a file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Writes one row per point of the grid (models x devices x kinds x tp x ep x precisions x batch x "
                    "context x tokens) to a CSV or Parquet file as it goes; invalid combinations are skipped with "
                    "their reason.",
        epilog="numeric lists: 1,8,64 | 1:256:x2 (geometric, inclusive) | 1024:32768:+1024 (arithmetic) | 1:8 | mixed: 1,2,4:64:x4\n"
               "columns: context = tokens cached before the step, tokens = new tokens per sequence (decode: 1;\n"
               "prefill without --tokens: each --context value is a whole prompt, rows read context=0, tokens=prompt)\n"
               "--resume computes only the points missing from the file; without it the file is replaced",
    )
    s.add_argument("--model", action="append", help=f"model name or config.json (repeat for several; default {DEFAULT_MODEL})")
    s.add_argument("--device", action="append", help=f"device name or TOML file (repeat for several; default {DEFAULT_DEVICE})")
    s.add_argument("--kind", action="append", choices=("decode", "prefill", "verify"), help="step kind (repeat; default decode)")
    s.add_argument("--batch", default="1:256:x2", help="sequences per step (default %(default)s)")
    s.add_argument("--context", default="1024:32768:x2", help="cached tokens per sequence; prefill without --tokens: prompt length (default %(default)s)")
    s.add_argument("--tokens", help="new tokens per sequence: prefill chunk over --context, verify draft tokens (default 8)")
    s.add_argument("--tp", default="1", help="tensor-parallel sizes (default %(default)s)")
    s.add_argument("--ep", default="1", help="expert-parallel sizes, for mixture-of-experts models (default %(default)s)")
    s.add_argument("--weight-bits", help="weight bits list (default 16)")
    s.add_argument("--activation-bits", help="activation bits list (default 16)")
    s.add_argument("--kv-bits", help="KV-cache bits list (default 16)")
    s.add_argument("--attention", help="attention kernel model: flash, split-kv, paged, or the kernel simulator's engine-flash, engine-split-kv, engine-lean, engine-tree (default by step kind)")
    s.add_argument("--no-cuda-graphs", action="store_true", help="charge stream launches instead of graph replays")
    s.add_argument("-o", "--output", type=Path, required=True, help="FILE.csv or FILE.parquet")
    s.add_argument("--resume", action="store_true", help="keep the rows already in the file, compute the rest")
    s.add_argument("--scheduler", help="'local' (a Dask LocalCluster), a Dask scheduler address tcp://HOST:PORT, or "
                                       "'in-process' (default: in-process unless the sweep is large)")
    s.add_argument("--chunk-size", type=int, default=65_536, help="most points per vectorized call (default %(default)s)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.set_defaults(func=cmd_sweep)

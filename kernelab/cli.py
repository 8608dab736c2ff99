"""``kernelab``: a thin command line over the Python API.

Every command prints a rich table for people, or JSON with ``--json``; bad
input exits with status 2 and a one-line message that says what to change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

import hwmodels as hw
from hwmodels.describe import device_detail, device_summary
from hwmodels.units import format_si

DEFAULT_DEVICE = "H100-SXM"
DEFAULT_MODEL = "Llama-2-7B"


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _peak_cell(d: hw.Device, dtype: str) -> str:
    return f"{format_si(d.peak(dtype), 'FLOP/s')} {dtype}" if dtype in d.peak_flops_per_s else "–"


def cmd_devices(args: argparse.Namespace, console: Console) -> int:
    devices = [hw.get_device(n) for n in hw.device_names(include_host=not args.no_host)]
    if args.json:
        _print_json([device_summary(d) for d in devices])
        return 0
    table = Table(title="kernelab device catalog (dense peaks, datasheet figures)")
    for col in ("name", "arch", "SMs", "clock", "16-bit peak", "fp8 peak", "memory", "bandwidth", "L2", "link", "TDP"):
        table.add_column(col, justify="left" if col in ("name", "arch") else "right")
    for d in devices:
        table.add_row(
            d.name,
            d.architecture,
            str(d.sm_count),
            format_si(d.clock_hz, "Hz"),
            _peak_cell(d, next((t for t in ("bf16", "fp16", "fp32") if t in d.peak_flops_per_s), d.dtypes[0])),
            _peak_cell(d, "fp8"),
            f"{format_si(d.memory_bytes, 'B')} {d.memory_type}",
            format_si(d.hbm_bytes_per_s, "B/s"),
            f"{d.l2_bytes / 2**20:.4g} MiB" if d.l2_bytes else "–",
            f"{d.link_name or 'link'} {format_si(d.link_bytes_per_s, 'B/s')}" if d.link_bytes_per_s else (d.link_name or "–"),
            format_si(d.tdp_w, "W") if d.tdp_w else "–",
        )
    console.print(table)
    return 0


def cmd_device(args: argparse.Namespace, console: Console) -> int:
    d = hw.get_device(args.name)
    detail = device_detail(d)
    if args.json:
        _print_json(detail)
        return 0
    console.print(f"[bold]{d.name}[/bold]  {d.vendor} {d.architecture} {d.compute_capability}  {d.description}")
    for title, rows in (("specification", detail["fields"]), ("calibration (achievable)", detail["calibration"])):
        table = Table(title=title)
        for col in ("field", "value", "kind", "source", "note"):
            table.add_column(col, overflow="fold")
        for name, rec in rows.items():
            table.add_row(
                name,
                format_si(rec["value"], rec["unit"]) if rec["unit"] not in ("fraction",) else f"{rec['value']:.3f}",
                rec.get("source_kind", ""),
                rec.get("source", ""),
                rec.get("note", "") or rec.get("source_title", ""),
            )
        console.print(table)
    return 0


def cmd_roofline(args: argparse.Namespace, console: Console) -> int:
    from hwmodels.plot import roofline_figure, write_figure

    devices = [hw.get_device(n) for n in (args.device or [DEFAULT_DEVICE])]
    ops = []
    if args.model:
        from sim import get_model, step_operations

        ops = step_operations(get_model(args.model), args.step, args.batch, args.context, dtype=args.dtype)
    fig = roofline_figure(devices, ops, dtype=args.dtype, calibrated=args.calibrated)
    write_figure(fig, args.output)
    if args.json:
        placements = [hw.place(op, hw.roofline(d, args.dtype, args.calibrated)).as_dict() for d in devices for op in ops]
        rooflines = []
        for d in devices:
            rf = hw.roofline(d, args.dtype, args.calibrated)
            rooflines.append(
                {
                    "device": d.name,
                    "dtype": rf.dtype,
                    "peak_flops_per_s": rf.peak_flops_per_s,
                    "ceilings": [
                        {"level": c.level, "bytes_per_s": c.bytes_per_s, "ridge_flops_per_byte": rf.ridge_point(c.level), "source_kind": c.source_kind}
                        for c in rf.ceilings
                    ],
                }
            )
        _print_json({"output": str(args.output), "rooflines": rooflines, "operations": placements})
    else:
        console.print(f"wrote {args.output}")
    return 0


_SIZE_SUFFIXES = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
                  "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> float:
    """``'256MiB'`` -> 268435456; decimal (kB, MB, GB) and binary (KiB, MiB, GiB) suffixes."""
    t = text.strip().lower()
    number = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    suffix = t[len(number):]
    try:
        value = float(number) * _SIZE_SUFFIXES[suffix]
    except (ValueError, KeyError):
        raise hw.InvalidValueError(f"cannot read message size {text!r}; write e.g. 4, 1MiB, 256MiB, 1GiB or 1e9") from None
    if value < 0:
        raise hw.InvalidValueError(f"message size must be non-negative, got {text!r}")
    return value


def cmd_collective(args: argparse.Namespace, console: Console) -> int:
    import numpy as np

    device = hw.get_device(args.device)
    if args.gpus < 1 or args.nodes < 1:
        raise hw.InvalidValueError("--gpus and --nodes must be at least 1")
    topo = hw.device_node(device, args.gpus, kind=args.topology)
    if args.nodes > 1:
        topo = hw.cluster(topo, args.nodes, args.nic, args.nics_per_node or args.gpus)
    sizes = np.array([parse_size(x) for x in args.bytes.split(",")])
    cost = hw.collective_time(args.op, sizes, topo, algorithm=args.algorithm)
    rows = [
        {
            "message_bytes": float(cost.message_bytes[i]),
            "time_s": float(cost.time_s[i]),
            "latency_s": float(cost.latency_s[i]),
            "bandwidth_time_s": float(cost.bandwidth_time_s[i]),
            "algorithm": str(cost.algorithm[i]),
            "protocol": str(cost.protocol[i]),
            "algbw_bytes_per_s": float(cost.algbw_bytes_per_s[i]),
            "busbw_bytes_per_s": float(cost.busbw_bytes_per_s[i]),
            "bound_by": str(cost.bound_by[i]),
        }
        for i in range(len(sizes))
    ]
    if args.json:
        _print_json({"op": cost.op, "n_gpus": cost.n_gpus, "topology": cost.topology, "results": rows})
        return 0
    table = Table(title=f"{cost.op} on {cost.topology} ({cost.n_gpus} GPUs), nccl-tests conventions")
    for col in ("size", "time", "latency", "algorithm", "algbw", "busbw", "bound by"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            format_si(r["message_bytes"], "B"), format_si(r["time_s"], "s"), format_si(r["latency_s"], "s"),
            f"{r['algorithm']}/{r['protocol']}", format_si(r["algbw_bytes_per_s"], "B/s"),
            format_si(r["busbw_bytes_per_s"], "B/s"), r["bound_by"],
        )
    console.print(table)
    return 0


def _build_step(args: argparse.Namespace):
    from sim import step as steps

    if args.kind == "prefill":
        if args.tokens is None:
            return steps.prefill(args.batch, args.context, 0)
        return steps.prefill(args.batch, args.tokens, args.context)
    if args.kind == "decode":
        return steps.decode(args.batch, args.context)
    return steps.verify(args.batch, args.context, args.tokens or 8, tree_pairs=args.tree_pairs)


def _predict_context_parallel(args, model, device, step, kwargs, console: Console) -> int:
    from sim.context_parallel import context_parallel_cost

    if args.kind != "prefill" or args.pp > 1 or args.ep > 1:
        raise hw.InvalidValueError("--cp applies to a prefill step, without --pp or --ep")
    rec = context_parallel_cost(model, device, step, args.cp, method=args.cp_method, **kwargs).as_dict()
    rec["ttft_s"] = rec["time_s"]
    if args.json:
        _print_json(rec)
        return 0
    console.print(f"[bold]{model.name}[/bold] on {rec['gpus']}x [bold]{device.name}[/bold] (CP={args.cp}, TP={args.tp}, "
                  f"{rec['method']}): {step.description}")
    console.print(f"time {format_si(rec['time_s'], 's')}, {rec['tokens_per_s']:,.0f} tokens/s; "
                  + ", ".join(f"{k[:-2]} {format_si(v, 's')}" for k, v in rec["breakdown"].items())
                  + f"; {rec['choice_reason']}")
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
        _print_json(rec)
        return 0
    console.print(f"[bold]{model.name}[/bold] on {rec['n_gpus']}x [bold]{device.name}[/bold] "
                  f"(TP={args.tp}, PP={args.pp}, EP={args.ep}): {step.description}")
    console.print(f"time {format_si(time_s, 's')}, {tokens_per_s:,.0f} tokens/s, MFU {rec['mfu']:.1%}, MBU {rec['mbu']:.1%}; "
                  + ", ".join(f"{k[:-2]} {format_si(v, 's')}" for k, v in rec["breakdown"].items()))
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


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from kernelab.report import write_report

    path = write_report(args.output, device=args.device, model=args.model, dtype=args.dtype)
    console.print(f"wrote {path} (open it in a browser)")
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
        _print_json(rec)
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
        _print_json(rec)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kernelab", description="GPU cost models and kernel lab for LLM inference.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("devices", help="list the device catalog")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--no-host", action="store_true", help="leave out the host CPU (skips its probe)")
    s.set_defaults(func=cmd_devices)

    s = sub.add_parser("device", help="every field of one device, with sources")
    s.add_argument("name", help="catalog name (case-insensitive), host-cpu, or a device/what-if TOML file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_device)

    s = sub.add_parser("roofline", help="draw rooflines of one or more devices")
    s.add_argument("--device", action="append", help="device name or TOML file (repeat for several)")
    s.add_argument("-o", "--output", type=Path, required=True, help="FILE.html (or .png/.svg with a Chromium)")
    s.add_argument("--dtype", default="bf16")
    s.add_argument("--calibrated", action="store_true", help="achievable ceilings instead of datasheet peaks")
    s.add_argument("--model", help="place a step's operations of this model on the plot")
    s.add_argument("--step", choices=("prefill", "decode"), default="decode")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--context", type=int, default=4096)
    s.add_argument("--json", action="store_true", help="also print the ceilings and placements as JSON")
    s.set_defaults(func=cmd_roofline)

    s = sub.add_parser("collective", help="predict a collective's time, algbw and busbw")
    s.add_argument("op", help="all_reduce, all_gather, reduce_scatter, all_to_all, sendrecv, sendrecv_bidirectional")
    s.add_argument("--device", default=DEFAULT_DEVICE)
    s.add_argument("--gpus", type=int, default=8, help="GPUs per node")
    s.add_argument("--nodes", type=int, default=1)
    s.add_argument("--topology", choices=("switch", "full_mesh", "ring", "pcie"), help="node wiring (default: from the device's link)")
    s.add_argument("--nic", default="ib-ndr", help="inter-node link, e.g. ib-hdr, ib-ndr, eth-400g")
    s.add_argument("--nics-per-node", type=int, help="default: one per GPU")
    s.add_argument("--algorithm", default="auto", help="auto, ring, tree, nvls, hierarchical")
    s.add_argument("--bytes", default="1MiB,16MiB,256MiB,1GiB", help="comma-separated message sizes")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_collective)

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
    s.add_argument("--attention", help="attention kernel model: flash, split-kv (default by step kind)")
    s.add_argument("--no-cuda-graphs", action="store_true", help="charge stream launches instead of graph replays")
    s.add_argument("--ignore-memory", action="store_true", help="predict even if the weights and KV cache do not fit")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("report", help="write an HTML report on the built-in defaults")
    s.add_argument("-o", "--output", type=Path, default=Path("kernelab-report.html"))
    s.add_argument("--device", default=DEFAULT_DEVICE)
    s.add_argument("--model", default=DEFAULT_MODEL)
    s.add_argument("--dtype", default="bf16")
    s.set_defaults(func=cmd_report)

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
    s.add_argument("--attention", help="attention kernel model: flash, split-kv (default by step kind)")
    s.add_argument("--no-cuda-graphs", action="store_true", help="charge stream launches instead of graph replays")
    s.add_argument("-o", "--output", type=Path, required=True, help="FILE.csv or FILE.parquet")
    s.add_argument("--resume", action="store_true", help="keep the rows already in the file, compute the rest")
    s.add_argument("--scheduler", help="'local' (a Dask LocalCluster), a Dask scheduler address tcp://HOST:PORT, or "
                                       "'in-process' (default: in-process unless the sweep is large)")
    s.add_argument("--chunk-size", type=int, default=65_536, help="most points per vectorized call (default %(default)s)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.set_defaults(func=cmd_sweep)

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Rich wraps at 80 columns when not writing to a terminal; tables of sources need more.
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        return args.func(args, console)
    except hw.KernelabError as exc:
        print(f"kernelab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

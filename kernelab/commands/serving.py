"""``kernelab serve`` and ``kernelab capacity``: the request-level serving simulator."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hwmodels.errors import InvalidValueError
from hwmodels.units import format_si
from kernelab.commands._common import print_json

SERVE_DEVICE = "A100-SXM-80GB"
SERVE_MODEL = "Mistral-7B"


def _precision(args):
    from sim.precision import Precision

    return Precision(args.weight_bits, 16, args.kv_bits)


def _config(args):
    from sim.serving import ServingConfig

    return ServingConfig(scheduler=args.scheduler, max_num_seqs=args.max_num_seqs, token_budget=args.token_budget,
                         block_size=args.block_size, gpu_memory_utilization=args.gpu_memory_utilization,
                         preemption=args.preemption, prefix_caching=args.prefix_caching,
                         replicas=args.replicas, router=args.router)


def _workload(args, qps: float):
    from sim.serving import from_trace, synthetic

    if args.trace:
        return from_trace(args.trace)
    return synthetic(args.dataset, args.requests, qps, args.seed, args.arrival, args.cv)


def _check(args) -> None:
    if args.requests < 1 and not args.trace:
        raise InvalidValueError(f"--requests must be at least 1, got {args.requests}")
    if args.qps is not None and not args.qps > 0:
        raise InvalidValueError(f"--qps must be positive (inf: all at once), got {args.qps}")


def _dist(d: dict) -> str:
    return "-" if d["p50"] is None else " / ".join(format_si(d[k], "s") for k in ("p50", "p90", "p99"))


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    from sim.serving import Simulation, replica_cost

    _check(args)
    cost = replica_cost(args.model, args.device, args.tp, args.pp, _precision(args))
    result = Simulation(_workload(args, args.qps if args.qps is not None else 1.0), cost, _config(args)).run()
    summary = result.summary(args.slo_ttft, args.slo_tpot)
    summary["seed"] = args.seed
    if args.plot:
        from sim.serving.plots import write_report

        write_report({args.scheduler: result}, args.plot)
        summary["plot"] = str(args.plot)
    if args.json:
        print_json(summary)
        return 0
    s = summary
    console.print(f"[bold]{s['model']}[/bold] on {s['replicas']} x {s['tp'] * s['pp']} [bold]{s['device']}[/bold] "
                  f"(TP={s['tp']}, PP={s['pp']}), scheduler [bold]{s['scheduler']}[/bold]: {s['workload']}")
    console.print(f"{s['completed']} of {s['requests']} completed ({s['rejected']} rejected as too long) in "
                  f"{format_si(s['duration_s'], 's')}: {s['throughput_tokens_per_s']:,.0f} output tokens/s, "
                  f"{s['requests_per_s']:.3g} requests/s, {s['preemptions']} preemptions, {s['iterations']:,} iterations, "
                  f"KV peak {s['kv_peak_fraction']:.0%} of {s['kv_blocks_per_replica']:,} blocks")
    table = Table(title="latency (p50 / p90 / p99)")
    table.add_column("metric")
    table.add_column("p50 / p90 / p99", justify="right")
    for key, name in (("ttft_s", "TTFT"), ("tbt_s", "TBT"), ("tpot_s", "TPOT"), ("e2e_s", "end to end"),
                      ("scheduling_delay_s", "scheduling delay")):
        table.add_row(name, _dist(s[key]))
    console.print(table)
    b = s["breakdown"]
    busy = sum(v for k, v in b.items() if k != "idle_s") or 1.0
    console.print("busy time: " + ", ".join(f"{k[:-2]} {v / busy:.0%}" for k, v in b.items() if k != "idle_s" and v)
                  + f"; idle {format_si(b['idle_s'], 's')}")
    if args.slo_ttft is not None or args.slo_tpot is not None:
        console.print(f"goodput: {s['goodput_requests_per_s']:.3g} requests/s within the SLOs")
    return 0


def cmd_capacity(args: argparse.Namespace, console: Console) -> int:
    from sim.serving import Simulation, capacity_search, from_trace, replica_cost, rescaled, synthetic

    _check(args)
    cost = replica_cost(args.model, args.device, args.tp, args.pp, _precision(args))
    config = _config(args)
    if args.trace:
        base = from_trace(args.trace)
        base_qps = len(base) / max(float(base.arrival_s[-1]), 1e-12)
    else:
        base, base_qps = synthetic(args.dataset, args.requests, 1.0, args.seed, args.arrival, args.cv), 1.0
    result = capacity_search(lambda qps: Simulation(rescaled(base, qps, base_qps), cost, config).run(),
                             args.slo_tbt_p99, args.max_scheduling_delay, args.start_qps or 1.0)
    rec = {"device": cost.device.name, "model": cost.model.name, "tp": args.tp, "pp": args.pp, "scheduler": config.scheduler,
           "requests": len(base), "seed": args.seed, **result.as_dict()}
    if args.json:
        print_json(rec)
        return 0
    console.print(f"[bold]{rec['model']}[/bold] on {args.tp * args.pp}x [bold]{rec['device']}[/bold], {config.scheduler}: "
                  f"capacity [bold]{result.capacity_qps:.3g} QPS[/bold] (P99 TBT <= {format_si(args.slo_tbt_p99, 's')}, "
                  f"median scheduling delay <= {format_si(args.max_scheduling_delay, 's')})")
    table = Table(title="trials")
    for col in ("QPS", "P99 TBT", "median scheduling delay", "median TTFT", "passed"):
        table.add_column(col, justify="right")
    for t in result.trials:
        table.add_row(f"{t.qps:.4g}", format_si(t.tbt_p99_s, "s"), format_si(t.scheduling_delay_p50_s, "s"),
                      format_si(t.ttft_p50_s, "s"), "yes" if t.passed else "no")
    console.print(table)
    return 0


def _common(s: argparse.ArgumentParser) -> None:
    from sim.serving import SCHEDULERS, ROUTERS

    s.add_argument("--device", default=SERVE_DEVICE, help="device name or TOML file (default %(default)s)")
    s.add_argument("--model", default=SERVE_MODEL, help="model name or config.json (default %(default)s)")
    s.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs per replica")
    s.add_argument("--pp", type=int, default=1, help="pipeline stages per replica (one batch in flight)")
    s.add_argument("--scheduler", default="vllm", choices=SCHEDULERS)
    s.add_argument("--requests", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dataset", default="openchat_sharegpt4",
                   help="length distribution: openchat_sharegpt4, arxiv_summarization, azure_conv, azure_code")
    s.add_argument("--trace", type=Path, help="CSV of arrival_s, prompt_tokens, output_tokens[, prefix_id, prefix_tokens]")
    s.add_argument("--arrival", default="poisson", choices=("poisson", "gamma"))
    s.add_argument("--cv", type=float, default=1.0, help="gamma arrivals: coefficient of variation of the gaps")
    s.add_argument("--replicas", type=int, default=1)
    s.add_argument("--router", default="round_robin", choices=ROUTERS)
    s.add_argument("--max-num-seqs", type=int, help="running sequences per replica (default 256; batchllm: memory-bound)")
    s.add_argument("--token-budget", type=int, help="tokens per iteration (sarathi default 512, batchllm 4096, "
                   "vllm the longest prompt or 2048)")
    s.add_argument("--block-size", type=int, default=16, help="KV block size in tokens")
    s.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    s.add_argument("--preemption", default="recompute", choices=("recompute", "swap"))
    s.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=None,
                   help="keep shared prefixes' KV blocks, LRU eviction (default: on for batchllm only)")
    s.add_argument("--weight-bits", type=int, default=16)
    s.add_argument("--kv-bits", type=int, default=16)
    s.add_argument("--json", action="store_true")


def register(sub) -> None:
    s = sub.add_parser("serve", help="simulate serving a request workload (simpy): latency percentiles, throughput, memory")
    _common(s)
    s.add_argument("--qps", type=float, default=1.0, help="mean arrival rate (inf: all requests at t=0)")
    s.add_argument("--slo-ttft", type=float, help="TTFT SLO in seconds, for goodput")
    s.add_argument("--slo-tpot", type=float, help="TPOT SLO in seconds, for goodput")
    s.add_argument("--plot", type=Path, help="write latency CDFs and KV memory over time to FILE.html")
    s.set_defaults(func=cmd_serve)
    c = sub.add_parser("capacity", help="the largest QPS that meets a P99 TBT SLO (Sarathi-Serve's capacity search)")
    _common(c)
    c.add_argument("--slo-tbt-p99", type=float, required=True, help="P99 time-between-tokens SLO in seconds")
    c.add_argument("--max-scheduling-delay", type=float, default=2.0, help="median scheduling delay limit (default %(default)s s)")
    c.add_argument("--start-qps", type=float, help="first QPS tried (default 1)")
    c.add_argument("--qps", type=float, help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_capacity)

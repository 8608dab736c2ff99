"""``kernelab whatif`` (one technique on any setting) and ``kernelab papers`` (every seed paper, predicted)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hwmodels.errors import InvalidValueError
from kernelab.commands._common import DEFAULT_DEVICE, DEFAULT_MODEL, print_json


def _assignments(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidValueError(f"--set takes name=value, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def cmd_whatif(args: argparse.Namespace, console: Console) -> int:
    from sim.precision import Precision
    from sim.techniques import TECHNIQUES, Setting, get_technique

    if args.list or not args.technique:
        described = [t.describe() for t in TECHNIQUES.values()]
        if args.json:
            print_json(described)
            return 0
        for d in described:
            console.print(f"[bold]{d['name']}[/bold] ({d['layer']}): {d['summary']}. [dim]{d['citation']}[/dim]")
            for p in d["parameters"]:
                console.print(f"    {p['name']} = {p['default']} [{p['unit']}]: {p['description']} [dim](default: {p['source']})[/dim]")
        return 0
    technique = get_technique(args.technique)(**_assignments(args.set))
    setting = Setting(args.device, args.model, args.batch, args.context, args.tp, Precision(args.weight_bits, 16, args.kv_bits))
    p = technique.predict(setting)
    rec = p.as_dict()
    if args.json:
        print_json(rec)
        return 0
    s = rec["setting"]
    console.print(f"[bold]{p.technique}[/bold] on {s['model']}, {s['tp']}x {s['device']}, batch {s['batch']}, "
                  f"context {s['context']}: [bold]{p.metric} {p.value:.3g}[/bold]")
    console.print(p.explain)
    table = Table(title="breakdown")
    table.add_column("part")
    table.add_column("value", justify="right")
    for k, v in p.breakdown.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)
    return 0


def cmd_papers(args: argparse.Namespace, console: Console) -> int:
    from sim.techniques import papers

    reg = papers.registry()
    if args.output:
        from sim.techniques.report import write_papers_report

        write_papers_report(reg, args.output)
    if args.json:
        print_json([p.as_dict() for p in reg])
        return 0
    table = Table(title="seed papers: reported against predicted")
    for col in ("paper", "status", "technique", "metric", "reported", "predicted", "error", "setting / reason"):
        table.add_column(col, justify="right" if col in ("reported", "predicted", "error") else "left")
    for p in reg:
        shown = [c for c in p.claims if c.predicted is not None] or p.claims[:1]
        if not shown:
            table.add_row(p.title[:60], p.status, p.technique, "", "", "", "", p.reason[:80])
        for i, c in enumerate(shown):
            first = i == 0
            table.add_row(p.title[:60] if first else "", p.status if first else "",
                          (c.predict or {}).get("technique", p.technique) if c.predicted is not None else p.technique,
                          c.metric, f"{c.reported:.3g}",
                          "-" if c.predicted is None else f"{c.predicted:.3g}",
                          "-" if c.error is None else f"{c.error:+.0%}",
                          ", ".join(f"{k} {v}" for k, v in c.setting.items() if k != "baseline")[:80] if c.predicted is not None
                          else (p.reason or "not predicted")[:80])
    console.print(table)
    s = papers.summary()
    console.print(f"{s['papers']} papers ({', '.join(f'{v} {k}' for k, v in s['by_status'].items())}); "
                  f"{s['predicted_claims']} claims predicted from {s['papers_with_predicted_claims']} papers, "
                  f"median |error| {s['median_abs_error']:.0%}, max {s['max_abs_error']:.0%}")
    if args.output:
        console.print(f"wrote {args.output}")
    return 0


def register(sub) -> None:
    w = sub.add_parser("whatif", help="one seed-paper technique on any device, model, batch and context")
    w.add_argument("technique", nargs="?", help="technique name (see --list)")
    w.add_argument("--list", action="store_true", help="every technique and its parameters, with units and sources")
    w.add_argument("--device", default=DEFAULT_DEVICE)
    w.add_argument("--model", default=DEFAULT_MODEL)
    w.add_argument("--batch", type=int, default=1)
    w.add_argument("--context", type=int, default=1024, help="tokens already in the KV cache")
    w.add_argument("--tp", type=int, default=1)
    w.add_argument("--weight-bits", type=int, default=16)
    w.add_argument("--kv-bits", type=int, default=16)
    w.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a technique parameter (repeat)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_whatif)
    p = sub.add_parser("papers", help="every seed paper: its cost claims, reported against predicted")
    p.add_argument("-o", "--output", type=Path, default=Path("kernelab-papers.html"),
                   help="HTML report: predicted against reported on log axes (default %(default)s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_papers)

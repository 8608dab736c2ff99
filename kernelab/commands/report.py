"""The main job: the HTML report on the built-in defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from kernelab.commands._common import DEFAULT_DEVICE, DEFAULT_MODEL


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from kernelab.report import write_report

    path = write_report(args.output, device=args.device, model=args.model, dtype=args.dtype)
    console.print(f"wrote {path} (open it in a browser)")
    return 0


def register(sub) -> None:
    s = sub.add_parser("report", help="write an HTML report on the built-in defaults")
    s.add_argument("-o", "--output", type=Path, default=Path("kernelab-report.html"))
    s.add_argument("--device", default=DEFAULT_DEVICE)
    s.add_argument("--model", default=DEFAULT_MODEL)
    s.add_argument("--dtype", default="bf16")
    s.set_defaults(func=cmd_report)

"""``kernelab``: a thin command line over the Python API.

Every command prints a rich table for people, or JSON with ``--json``; bad
input exits with status 2 and a one-line message that says what to change.
The commands live in :mod:`kernelab.commands`, one module per family.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

import hwmodels as hw
from kernelab.commands import MODULES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kernelab", description="GPU cost models and kernel lab for LLM inference.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.register(sub)
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

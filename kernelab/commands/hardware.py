"""Commands about the machine: devices, one device, rooflines, collectives."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

import hwmodels as hw
from hwmodels.units import format_si
from kernelab.commands._common import DEFAULT_DEVICE, print_json
from hwmodels.describe import device_detail, device_summary


def _peak_cell(d: hw.Device, dtype: str) -> str:
    return f"{format_si(d.peak(dtype), 'FLOP/s')} {dtype}" if dtype in d.peak_flops_per_s else "–"


def cmd_devices(args: argparse.Namespace, console: Console) -> int:
    devices = [hw.get_device(n) for n in hw.device_names(include_host=not args.no_host)]
    if args.json:
        print_json([device_summary(d) for d in devices])
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
        print_json(detail)
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
        print_json({"output": str(args.output), "rooflines": rooflines, "operations": placements})
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
        print_json({"op": cost.op, "n_gpus": cost.n_gpus, "topology": cost.topology, "results": rows})
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


def register(sub) -> None:
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

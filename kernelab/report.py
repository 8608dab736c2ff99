"""The HTML report of ``kernelab report``: a device, its rooflines, and a model's operations on them."""

from __future__ import annotations

import datetime
import html
from pathlib import Path

import hwmodels as hw
from hwmodels.describe import device_detail
from hwmodels.plot import roofline_figure
from hwmodels.units import format_si
from kernelab import __version__
from sim import get_model, step_operations
from sim import step as steps
from sim.cost import step_cost
from sim.memory import max_batch

# The steps placed on the default report: a latency-bound decode, a batched
# decode, and a prefill chunk, which land on either side of the ridge point.
DEFAULT_STEPS = (
    ("decode", 1, 4096, None),
    ("decode", 64, 1024, None),
    ("prefill", 1, 0, 2048),
)

_SPEC_ROWS = (
    "sm_count", "clock_hz", "peak_flops_per_s.bf16", "peak_flops_per_s.fp8", "memory_bytes",
    "hbm_bytes_per_s", "l2_bytes", "smem_per_sm_bytes", "link_bytes_per_s", "tdp_w",
)


def _cell(text: object) -> str:
    return f"<td>{html.escape(str(text))}</td>"


def _spec_table(device: hw.Device) -> str:
    detail = device_detail(device)
    rows = []
    for name in _SPEC_ROWS:
        rec = detail["fields"].get(name)
        if rec is None:
            continue
        src = rec.get("source", "")
        link = f'<a href="{html.escape(src)}">{html.escape(rec.get("source_kind", ""))}</a>' if src.startswith("http") else html.escape(rec.get("source_kind", ""))
        rows.append(f"<tr>{_cell(name)}{_cell(format_si(rec['value'], rec['unit']))}<td>{link}</td>{_cell(rec.get('note', ''))}</tr>")
    for name, rec in detail["calibration"].items():
        value = f"{rec['value']:.3f}" if rec["unit"] == "fraction" else format_si(rec["value"], rec["unit"])
        note = rec.get("note") or rec.get("source_title", "")
        rows.append(f"<tr>{_cell('achievable ' + name)}{_cell(value)}{_cell(rec.get('source_kind', ''))}{_cell(note)}</tr>")
    return "<table><tr><th>field</th><th>value</th><th>source</th><th>note</th></tr>" + "".join(rows) + "</table>"


def _placement_table(placements: list[hw.Placement]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("operation", "FLOPs", "device-memory bytes", "FLOP/byte", "time", "bound", "level"))
    rows = []
    for p in placements:
        op = p.operation
        rows.append(
            "<tr>" + _cell(op.name) + _cell(f"{op.flops:.3g}") + _cell(format_si(op.hbm_bytes, "B"))
            + _cell(f"{p.intensity['hbm']:.1f}") + _cell(format_si(p.time_s, "s")) + _cell(p.bound) + _cell(p.level) + "</tr>"
        )
    return f"<table><tr>{head}</tr>" + "".join(rows) + "</table>"


def _steps_table(dev: hw.Device, mdl) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("step", "time", "tokens/s", "MFU", "MBU", "compute", "memory", "overhead", "communication"))
    rows = []
    for kind, b, ctx, t in DEFAULT_STEPS:
        step = steps.prefill(b, t, ctx) if kind == "prefill" else steps.decode(b, ctx)
        cost = step_cost(mdl, dev, step)
        by = cost.time_by_bound()
        cells = [step.description, format_si(float(cost.time_s), "s"), f"{float(cost.tokens_per_s):,.0f}",
                 f"{float(cost.mfu):.1%}", f"{float(cost.mbu):.1%}"] + [format_si(float(by[k]), "s") for k in ("compute", "memory", "overhead", "communication")]
        rows.append("<tr>" + "".join(_cell(c) for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>" + "".join(rows) + "</table>"


def _max_batch_table(dev: hw.Device, mdl) -> str:
    contexts = (1024, 4096, 16384, 65536)
    batch = max_batch(mdl, dev, list(contexts))
    head = "".join(f"<th>{c} tokens</th>" for c in contexts)
    return f"<table><tr><th>context</th>{head}</tr><tr>{_cell('largest batch')}" + "".join(_cell(int(b)) for b in batch) + "</tr></table>"


def build_report(device: str = "H100-SXM", model: str = "Llama-2-7B", dtype: str = "bf16") -> str:
    """The report as one self-contained HTML page (plotly.js embedded, opens offline)."""
    dev = hw.get_device(device)
    mdl = get_model(model)
    ops = [op for kind, b, ctx, t in DEFAULT_STEPS for op in step_operations(mdl, kind, b, ctx, t, dtype)]
    rf = hw.roofline(dev, dtype)
    placements = [hw.place(op, rf) for op in ops]
    fig = roofline_figure([dev], ops, dtype=dtype, title=f"{dev.name} roofline ({dtype}) with {mdl.name} operations")
    ridges = ", ".join(f"{c.level} {rf.ridge_point(c.level):.0f}" for c in rf.ceilings)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kernelab report: {html.escape(dev.name)}, {html.escape(mdl.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}} th{{background:#f4f4f4}}</style></head>
<body>
<h1>kernelab report</h1>
<p>Device <b>{html.escape(dev.name)}</b> ({html.escape(dev.description)}), model <b>{html.escape(mdl.name)}</b>
(<a href="{html.escape(mdl.source)}">config</a>), dtype {dtype}. kernelab {__version__}, {datetime.date.today().isoformat()}.</p>
<h2>Roofline</h2>
<p>Datasheet ceilings (dense). Ridge points in FLOP/byte: {ridges}. Each point is one operation of one decoder layer
(or the LM head) in the step named in brackets, placed at its device-memory arithmetic intensity.</p>
{fig.to_html(full_html=False, include_plotlyjs=True)}
<h2>Steps</h2>
<p>The step model (<code>sim.cost.step_cost</code>): every operator of the step, each timed as
max(FLOPs / achievable peak, bytes / achievable bandwidth) + launch overhead, with the device's measured
achievable fractions; the columns split the step time by what bounds each operator.</p>
{_steps_table(dev, mdl)}
<p>Largest decode batch that fits one {html.escape(dev.name)} (weights, KV cache and activations; 10% reserved):</p>
{_max_batch_table(dev, mdl)}
<h2>Operations</h2>
<p>Roofline time per operation: max(FLOPs / peak, bytes / bandwidth) &mdash; a lower bound; the level is the memory roof
with the largest time.</p>
{_placement_table(placements)}
<h2>Device</h2>
{_spec_table(dev)}
</body></html>
"""


def write_report(path: Path | str = "kernelab-report.html", **kwargs) -> Path:
    path = Path(path)
    path.write_text(build_report(**kwargs), encoding="utf-8")
    return path

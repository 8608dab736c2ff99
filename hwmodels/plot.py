"""Roofline figures (plotly) and their export to HTML, PNG, SVG and PDF.

:func:`roofline_figure` draws, on log-log axes, the roofs of one or more
devices from :func:`hwmodels.roofline.roofline`: for each device (one colour)
a slanted bandwidth roof per memory level (one dash style per level: device
memory solid, L2 dashed, shared memory dotted) up to its ridge point, the
compute roof as a horizontal segment, and the ridge points as markers. The
operations given are placed with :func:`hwmodels.roofline.place` and drawn as
labelled markers at (device-memory intensity, attainable FLOP/s), with hover
text giving FLOPs, bytes per level, intensity, time, bound and level.

:func:`write_figure` picks the format from the file suffix. ``.html`` always
works and is self-contained by default (plotly.js is embedded, so the file
opens offline, at the cost of about 4.5 MB). ``.png``, ``.svg`` and ``.pdf``
are rendered by kaleido (>= 1.0), which drives a Chromium-based browser: the
one named by ``BROWSER_PATH``, else ``/usr/bin/chromium`` (Debian's
``chromium`` package), else ``chromium``, ``chromium-browser``,
``google-chrome``... on ``PATH``. kernelab never downloads a browser; where
none is found :class:`ExportError` says how to install one.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import plotly.graph_objects as go

from hwmodels.device import Device
from hwmodels.errors import ExportError, InvalidValueError
from hwmodels.roofline import LEVEL_LABELS, LEVELS, Operation, Placement, Roofline, place, roofline
from hwmodels.units import format_si

__all__ = [
    "BROWSER_CANDIDATES",
    "ExportError",
    "IMAGE_FORMATS",
    "SUPPORTED_SUFFIXES",
    "find_browser",
    "roofline_figure",
    "write_figure",
]

#: Dash style of each memory level's roof.
LEVEL_DASH = {"hbm": "solid", "l2": "dash", "smem": "dot"}
#: Short names of the levels, for legends.
LEVEL_SHORT = {"hbm": "HBM", "l2": "L2", "smem": "SMEM"}
#: One colour per device, in order (plotly's default qualitative palette).
DEVICE_COLOURS = (
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A",
    "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
)  # fmt: skip
#: One marker symbol per operation, in order, so an operation is recognisable across devices.
OPERATION_SYMBOLS = (
    "circle", "square", "diamond", "triangle-up", "cross", "x", "star",
    "pentagon", "hexagon", "triangle-down", "star-triangle-up", "hourglass",
)  # fmt: skip

IMAGE_FORMATS = ("png", "svg", "pdf")
SUPPORTED_SUFFIXES = (".html", *(f".{f}" for f in IMAGE_FORMATS))

#: Where a browser is looked for after ``BROWSER_PATH``: absolute paths first, then names on PATH.
BROWSER_CANDIDATES = (
    "/usr/bin/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)

NO_BROWSER_MESSAGE = (
    "PNG/SVG export needs a Chromium or Chrome browser; install Debian's `chromium` "
    "(apt-get install chromium) or set BROWSER_PATH, or export .html"
)


# ---------------------------------------------------------------------------------------------
# The figure


def roofline_figure(
    devices: Device | str | Iterable[Device | str],
    operations: Iterable[Operation | Placement] = (),
    dtype: str = "bf16",
    levels: Sequence[str] = ("hbm", "l2", "smem"),
    calibrated: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Log-log roofline of ``devices`` for ``dtype``, with ``operations`` as labelled points.

    ``devices`` are :class:`Device` objects or names (one or several): catalog
    names, ``host-cpu``, or device/what-if TOML files, as :func:`hwmodels.get_device`.
    ``operations`` are :class:`Operation` records, placed on every device's
    roofline, or precomputed :class:`Placement` objects, drawn on the device
    they name (which must be one of ``devices``, with the same dtype and
    calibration). ``levels`` picks the memory roofs drawn; a device without a
    level (a CPU has no L2 roof) simply lacks that line. With ``calibrated``
    the roofs are the measured achievable ones.

    Every trace carries ``meta`` = ``{"kind": ..., "device": ..., ...}``
    (``kind`` is ``"ceiling"``, ``"compute"``, ``"ridge"`` or ``"operations"``)
    so the figure's data can be found again, also in exported HTML.
    """
    devs = _resolve_devices(devices)
    levels = _check_levels(levels)
    dtype = dtype.lower()
    rfs = [roofline(d, dtype, calibrated) for d in devs]
    placements = _placements(list(operations), rfs, dtype, calibrated)

    # Operations are told apart by name across devices (same symbol on every device).
    op_names: list[str] = []
    for p in placements:
        if p.operation.name not in op_names:
            op_names.append(p.operation.name)
    symbol_of = {n: OPERATION_SYMBOLS[i % len(OPERATION_SYMBOLS)] for i, n in enumerate(op_names)}

    shown = {rf.device.name: [c for c in rf.ceilings if c.level in levels] for rf in rfs}
    ridges = [rf.ridge_point(c.level) for rf in rfs for c in shown[rf.device.name]]
    point_x = [p.intensity["hbm"] for p in placements]
    point_y = [p.attainable_flops_per_s for p in placements]
    x_lo, x_hi = _decade_range([*ridges, *point_x], pad_lo=2.0, pad_hi=4.0, lo_at_most=1.0)

    label_of, text_pos = _label_layout(placements, several_devices=len(rfs) > 1)

    fig = go.Figure()
    for i, rf in enumerate(rfs):
        name = rf.device.name
        colour = DEVICE_COLOURS[i % len(DEVICE_COLOURS)]
        group = dict(legendgroup=name, legendgrouptitle_text=name)
        peak = rf.peak_flops_per_s
        peak_label = format_si(peak, "FLOP/s")
        roof_kind = "achievable" if calibrated else "peak"
        for c in shown[name]:
            ridge = rf.ridge_point(c.level)
            bw = format_si(c.bytes_per_s, "B/s")
            label = (rf.device.memory_type or "memory") if c.level == "hbm" else LEVEL_SHORT[c.level]
            hover = [
                f"<b>{name}</b> {LEVEL_LABELS[c.level]} roof ({c.source_kind})<br>"
                f"bandwidth {bw}<br>intensity {_num(x)} FLOP/B → {format_si(x * c.bytes_per_s, 'FLOP/s')}"
                for x in (x_lo, ridge)
            ]
            fig.add_trace(
                go.Scatter(
                    x=[x_lo, ridge],
                    y=[x_lo * c.bytes_per_s, peak],
                    mode="lines",
                    name=f"{label} {bw}",
                    line=dict(color=colour, dash=LEVEL_DASH[c.level], width=2),
                    hovertext=hover,
                    hoverinfo="text",
                    meta=dict(kind="ceiling", device=name, level=c.level, bytes_per_s=c.bytes_per_s),
                    **group,
                )
            )
        x_start = min((rf.ridge_point(c.level) for c in shown[name]), default=x_lo)
        fig.add_trace(
            go.Scatter(
                x=[x_start, x_hi],
                y=[peak, peak],
                mode="lines",
                name=f"{dtype} {roof_kind} {peak_label}",
                line=dict(color=colour, width=3),
                hovertext=f"<b>{name}</b> {dtype} {roof_kind} compute roof<br>{peak_label}",
                hoverinfo="text",
                meta=dict(kind="compute", device=name, dtype=dtype, flops_per_s=peak),
                **group,
            )
        )
        if shown[name]:
            rx = [rf.ridge_point(c.level) for c in shown[name]]
            fig.add_trace(
                go.Scatter(
                    x=rx,
                    y=[peak] * len(rx),
                    mode="markers",
                    name="ridge points",
                    showlegend=False,  # toggled with the device; keeps the legend within the plot height
                    marker=dict(color=colour, symbol="diamond-open", size=10, line=dict(width=2)),
                    hovertext=[
                        f"<b>{name}</b> ridge {_num(r)} FLOP/B ({LEVEL_LABELS[c.level]})<br>"
                        f"{peak_label} ÷ {format_si(c.bytes_per_s, 'B/s')}"
                        for r, c in zip(rx, shown[name])
                    ],
                    hoverinfo="text",
                    meta=dict(kind="ridge", device=name, levels=[c.level for c in shown[name]]),
                    **group,
                )
            )
        mine = [p for p in placements if p.device == name]
        if mine:
            fig.add_trace(
                go.Scatter(
                    x=[p.intensity["hbm"] for p in mine],
                    y=[p.attainable_flops_per_s for p in mine],
                    mode="markers+text",
                    name="operations",
                    text=[label_of[id(p)] for p in mine],
                    textposition=[text_pos[id(p)] for p in mine],
                    textfont=dict(color=colour if len(rfs) == 1 else "#333", size=11),
                    marker=dict(
                        color=colour,
                        size=11,
                        symbol=[symbol_of[p.operation.name] for p in mine],
                        line=dict(color="white", width=1),
                    ),
                    hovertext=[_placement_hover(p) for p in mine],
                    hoverinfo="text",
                    meta=dict(kind="operations", device=name, names=[p.operation.name for p in mine]),
                    **group,
                )
            )

    peaks = [rf.peak_flops_per_s for rf in rfs]
    slowest_start = min(x_lo * c.bytes_per_s for rf in rfs for c in shown[rf.device.name]) if ridges else min(peaks)
    y_lo, _ = _decade_range([*point_y, slowest_start, *peaks], pad_lo=1.5, pad_hi=1.0)
    y_lo /= 1.4  # keep the lowest decade's label clear of the x axis
    y_hi = max(peaks) * 2.0  # room above the compute roofs for labels, without a whole empty decade
    if title is None:
        names = ", ".join(rf.device.name for rf in rfs)
        title = f"Roofline, {dtype}, {'measured achievable' if calibrated else 'datasheet'} roofs: {names}"
    fig.update_layout(
        title=dict(text=title),
        template="plotly_white",
        hovermode="closest",
        height=max(700, 180 + 130 * len(rfs)),  # room for each device's legend group; width follows the page
        legend=dict(groupclick="toggleitem", tracegroupgap=12),
        xaxis=_log_axis("arithmetic intensity (FLOP/byte)", x_lo, x_hi, ""),
        yaxis=_log_axis(f"attainable {dtype} performance (FLOP/s)", y_lo, y_hi, "FLOP/s"),
        meta=dict(kind="roofline", dtype=dtype, calibrated=calibrated, levels=list(levels)),
    )
    return fig


def _resolve_devices(devices) -> list[Device]:
    from hwmodels import get_device  # catalog names, host-cpu, what-if files

    if isinstance(devices, (Device, str, os.PathLike)):
        devices = [devices]
    out: list[Device] = []
    for d in devices:
        if isinstance(d, (str, os.PathLike)):
            d = get_device(d)
        elif not isinstance(d, Device):
            raise InvalidValueError(f"devices must be Device objects or catalog names, got {d!r}")
        if any(o.name == d.name for o in out):
            raise InvalidValueError(f"device {d.name!r} is given twice")
        out.append(d)
    if not out:
        raise InvalidValueError("roofline_figure needs at least one device")
    return out


def _check_levels(levels) -> tuple[str, ...]:
    if isinstance(levels, str):
        levels = (levels,)
    levels = tuple(lv.lower() for lv in levels)
    for lv in levels:
        if lv not in LEVELS:
            raise InvalidValueError(f"unknown memory level {lv!r}; known: {', '.join(LEVELS)}")
    if not levels:
        raise InvalidValueError(f"give at least one memory level ({', '.join(LEVELS)})")
    return levels


def _placements(ops: list, rfs: list[Roofline], dtype: str, calibrated: bool) -> list[Placement]:
    by_name = {rf.device.name: rf for rf in rfs}
    out: list[Placement] = []
    for op in ops:
        if isinstance(op, Operation):
            new = [place(op, rf) for rf in rfs]
        elif isinstance(op, Placement):
            if op.device not in by_name:
                raise InvalidValueError(
                    f"placement of {op.operation.name!r} is on {op.device}, which is not in the figure "
                    f"({', '.join(by_name)}); add the device or pass the Operation instead"
                )
            if op.dtype != dtype or op.calibrated != calibrated:
                raise InvalidValueError(
                    f"placement of {op.operation.name!r} on {op.device} is for "
                    f"{op.dtype}{', calibrated' if op.calibrated else ''} but the figure is "
                    f"{dtype}{', calibrated' if calibrated else ''}; pass the Operation instead"
                )
            new = [op]
        else:
            raise InvalidValueError(f"operations must be Operation or Placement objects, got {op!r}")
        for p in new:
            if not p.operation.flops > 0:
                raise InvalidValueError(
                    f"operation {p.operation.name!r} has no FLOPs: it has no place on a log-log roofline"
                )
        out.extend(new)
    return out


_TEXT_POSITIONS = ("top center", "bottom center")
_CLUSTER = 0.3  # decades: labels of points closer than this in x and y would overlap


def _label_layout(placements: list[Placement], several_devices: bool) -> tuple[dict[int, str], dict[int, str]]:
    """The label text and its position for each point (keyed by ``id`` of the placement).

    An operation sits at the same intensity on every device, so with several
    devices only its highest point is labelled (the others are told apart by
    colour, marker symbol and hover). Two labelled points close together get
    their names above and below; three or more get one label listing all
    their names, to the right of the first (the memory-bound region below the
    roofs is empty there).
    """
    best: dict[str, Placement] = {}
    for p in placements:
        name = p.operation.name
        if name not in best or p.attainable_flops_per_s > best[name].attainable_flops_per_s:
            best[name] = p
    shown = list(best.values()) if several_devices else placements
    clusters: list[tuple[float, float, list[Placement]]] = []
    for p in shown:
        x, y = math.log10(p.intensity["hbm"]), math.log10(p.attainable_flops_per_s)
        for cx, cy, members in clusters:
            if abs(cx - x) < _CLUSTER and abs(cy - y) < _CLUSTER:
                members.append(p)
                break
        else:
            clusters.append((x, y, [p]))
    texts = {id(p): "" for p in placements}
    positions = {id(p): _TEXT_POSITIONS[0] for p in placements}
    for _, _, members in clusters:
        if len(members) <= len(_TEXT_POSITIONS):
            for p, pos in zip(members, _TEXT_POSITIONS):
                texts[id(p)], positions[id(p)] = p.operation.name, pos
        else:
            names = list(dict.fromkeys(p.operation.name for p in members))
            texts[id(members[0])] = "<br>".join(names)
            positions[id(members[0])] = "middle right"
    return texts, positions


def _placement_hover(p: Placement) -> str:
    op = p.operation
    lines = [f"<b>{op.name}</b> on {p.device} ({p.dtype}{', calibrated' if p.calibrated else ''})"]
    lines.append(f"FLOPs: {format_si(op.flops, 'FLOP')}")
    for lv in LEVELS:
        if lv in op.bytes_by_level:
            lines.append(
                f"{LEVEL_SHORT[lv]}: {format_si(op.bytes_by_level[lv], 'B')}, "
                f"intensity {_num(p.intensity[lv])} FLOP/B"
            )
    parts = [f"compute {format_si(p.compute_time_s, 's')}"]
    parts += [f"{LEVEL_SHORT[lv]} {format_si(t, 's')}" for lv, t in p.memory_time_s.items()]
    lines.append(f"time: {format_si(p.time_s, 's')} ({'; '.join(parts)})")
    lines.append(f"attainable: {format_si(p.attainable_flops_per_s, 'FLOP/s')}")
    level = LEVEL_LABELS[p.level]
    lines.append(f"{p.bound}-bound" + (f" on {level}" if p.bound == "memory" else f"; next roof: {level}"))
    return "<br>".join(lines)


def _num(x: float) -> str:
    """Three significant figures, without exponent for everyday magnitudes: 0.5, 29.6, 295, 1,365."""
    if 1e3 <= abs(x) < 1e7:
        return f"{x:,.0f}"
    if 1e-3 <= abs(x) < 1e3:
        return f"{x:.3g}"
    return f"{x:.3g}"


def _decade_range(values, pad_lo: float, pad_hi: float, lo_at_most: float | None = None) -> tuple[float, float]:
    """Whole decades covering ``values`` with a margin: (10^a, 10^b)."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    lo = min(vals) / pad_lo
    if lo_at_most is not None:
        lo = min(lo, lo_at_most)
    hi = max(vals) * pad_hi
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return 10.0**a, 10.0 ** max(b, a + 1)


def _tick_label(v: float, unit: str) -> str:
    if unit:
        return format_si(v, unit)
    return _si_plain(v)


def _si_plain(v: float) -> str:
    for scale, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:g}{p}"
    return f"{v:g}"


def _log_axis(title: str, lo: float, hi: float, unit: str) -> dict:
    a, b = math.log10(lo), math.log10(hi)
    ticks = [10.0**e for e in range(math.ceil(a - 1e-9), math.floor(b + 1e-9) + 1)]
    return dict(
        type="log",
        title=dict(text=title),
        range=[a, b],
        tickmode="array",
        tickvals=ticks,
        ticktext=[_tick_label(t, unit) for t in ticks],
        showgrid=True,
        minor=dict(showgrid=True, gridcolor="#f2f2f2", dtick="D1", tickmode="linear"),
        zeroline=False,
    )


# ---------------------------------------------------------------------------------------------
# Export


def find_browser() -> str:
    """Path of the Chromium-based browser kaleido will drive; :class:`ExportError` if none.

    ``BROWSER_PATH`` wins when set (as in choreographer, kaleido's browser
    driver) and must then name an executable file; otherwise the first of
    :data:`BROWSER_CANDIDATES` that exists, absolute paths as given and bare
    names through ``shutil.which``. Nothing is ever downloaded.
    """
    env = os.environ.get("BROWSER_PATH")
    if env:
        if _is_executable(env):
            return env
        found = shutil.which(env)
        if found:
            return found
        raise ExportError(f"BROWSER_PATH={env!r} is not an executable file. {NO_BROWSER_MESSAGE}")
    for candidate in BROWSER_CANDIDATES:
        if os.path.isabs(candidate):
            if _is_executable(candidate):
                return candidate
        elif found := shutil.which(candidate):
            return found
    raise ExportError(f"no browser found (looked for {', '.join(BROWSER_CANDIDATES)}). {NO_BROWSER_MESSAGE}")


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def write_figure(
    fig: go.Figure,
    path: str | os.PathLike,
    *,
    include_plotlyjs: bool | str = True,
    width: int | None = None,
    height: int | None = None,
    scale: float = 1.0,
) -> Path:
    """Write ``fig`` to ``path``, the format chosen by its suffix; returns the path.

    ``.html``: always available; self-contained by default (plotly.js embedded,
    so it opens offline); pass ``include_plotlyjs="cdn"`` for a small file that
    loads plotly.js from the network. ``.png``, ``.svg``, ``.pdf``: rendered by
    kaleido (>= 1.0) in the browser :func:`find_browser` finds, at ``width`` x
    ``height`` CSS pixels (default: the figure's size) times ``scale``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ExportError(
            f"cannot write {path.name!r}: unknown suffix {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if suffix == ".html":
        fig.write_html(str(path), include_plotlyjs=include_plotlyjs, full_html=True)
        return path
    path.write_bytes(_render_image(fig, suffix[1:], width, height, scale))
    return path


def _render_image(fig: go.Figure, fmt: str, width: int | None, height: int | None, scale: float) -> bytes:
    try:
        import kaleido
    except ImportError:
        raise ExportError(
            f"{fmt.upper()} export needs the kaleido package (>= 1.0): pip install 'kaleido>=1.0' "
            f"(or the 'image' extra of kernelab) and a browser. {NO_BROWSER_MESSAGE}"
        ) from None
    if not hasattr(kaleido, "calc_fig_sync"):
        version = getattr(kaleido, "__version__", "< 1.0")
        raise ExportError(
            f"{fmt.upper()} export needs kaleido >= 1.0 (found {version}): pip install -U 'kaleido>=1.0'. "
            f"{NO_BROWSER_MESSAGE}"
        )
    browser = find_browser()
    layout = fig.layout
    opts = dict(
        format=fmt,
        width=width or layout.width or 1100,  # the figure's width follows the page; an image needs one
        height=height or layout.height or 700,
        scale=scale,
    )
    # path: the browser we found (kaleido would otherwise search on its own, including its
    # downloaded copy); mathjax=False: no MathJax from a CDN (no LaTeX in these figures);
    # plotly.js comes from the installed plotly package, so rendering needs no network.
    kopts = dict(path=browser, mathjax=False)
    try:
        return kaleido.calc_fig_sync(fig.to_dict(), opts=opts, kopts=kopts)
    except Exception as exc:  # noqa: BLE001 - any failure of the browser is reported the same way
        raise ExportError(
            f"kaleido could not render {fmt.upper()} with the browser {browser}: "
            f"{type(exc).__name__}: {exc}. Exporting .html needs no browser."
        ) from exc

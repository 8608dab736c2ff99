"""Per-SM Gantt chart of a simulated program (plotly), in the style of :mod:`hwmodels.plot`.

:func:`timeline_figure` draws one row per SM and one horizontal bar per CTA,
from its start to its end cycle (:class:`~sim.kernel.engine.KernelSimResult`
``cta_start``/``cta_end``/``cta_sm``), coloured by kernel: one trace per
kernel, so the legend toggles kernels. Several CTAs resident on one SM at once
overlap in its row (drawn semi-transparent). Hover: CTA index, kernel, SM,
start and end cycles and the duration in seconds. Write it with
:func:`hwmodels.plot.write_figure` (``.html`` always works).

A program of many CTAs would give a heavy HTML file: ``max_ctas`` keeps the
CTAs of each kernel evenly sampled so at most ``max_ctas`` bars are drawn in
all (the title says so when it happens).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from hwmodels.errors import InvalidValueError
from hwmodels.plot import DEVICE_COLOURS
from hwmodels.units import format_si

__all__ = ["timeline_figure"]


def timeline_figure(result, program=None, *, max_ctas: int = 20_000, title: str | None = None) -> go.Figure:
    """A per-SM Gantt chart of ``result`` (one trace per kernel; ``program`` is optional, for titles).

    ``max_ctas``: most bars drawn in all; kernels are sampled evenly, in
    proportion to their CTA counts, when the program has more.
    """
    if isinstance(max_ctas, bool) or not isinstance(max_ctas, (int, np.integer)) or max_ctas < 1:
        raise InvalidValueError(f"max_ctas must be a positive integer, got {max_ctas!r}")
    n = len(result.cta_sm)
    names = list(result.kernel_names)
    if program is not None and len(program.kernels) != len(names):
        raise InvalidValueError("program and result differ in their kernels")
    fig = go.Figure()
    keep_all = n <= max_ctas
    shown = 0
    for k, name in enumerate(names):
        idx = np.flatnonzero(result.cta_kernel == k)
        if not keep_all and idx.size:
            m = max(1, int(round(max_ctas * idx.size / n)))
            idx = idx[np.unique(np.linspace(0, idx.size - 1, min(m, idx.size)).round().astype(np.int64))]
        shown += idx.size
        start, end, sm = result.cta_start[idx], result.cta_end[idx], result.cta_sm[idx]
        dur = end - start
        secs = dur / result.clock_hz
        custom = np.stack([idx, start, end, secs * 1e6], axis=-1) if idx.size else np.zeros((0, 4))
        fig.add_trace(
            go.Bar(
                name=f"{k}: {name}",
                orientation="h",
                y=sm,
                x=dur,
                base=start,
                marker=dict(color=DEVICE_COLOURS[k % len(DEVICE_COLOURS)], line=dict(width=0)),
                opacity=0.75,
                customdata=custom,
                hovertemplate=(
                    f"kernel {name}<br>CTA %{{customdata[0]:.0f}} on SM %{{y}}<br>"
                    "start %{customdata[1]:,.0f} cycles<br>end %{customdata[2]:,.0f} cycles<br>"
                    "%{customdata[3]:.3g} µs<extra></extra>"
                ),
            )
        )
    for k in range(len(names)):  # kernel boundaries
        fig.add_vline(x=float(result.kernel_start[k]), line=dict(color="grey", width=1, dash="dot"))
    head = title or f"CTA timeline on {result.device}: {result.sm_count} SMs, {format_si(result.seconds, 's')}"
    if not keep_all:
        head += f" (showing {shown:,} of {n:,} CTAs)"
    fig.update_layout(
        title=head,
        barmode="overlay",
        bargap=0.1,
        xaxis=dict(title="cycles", rangemode="tozero"),
        yaxis=dict(title="SM", autorange="reversed", range=[-0.5, result.sm_count - 0.5]),
        legend=dict(title="kernel"),
        template="plotly_white",
        height=max(400, min(1600, 6 * result.sm_count + 150)),
    )
    return fig

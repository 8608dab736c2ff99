"""Plotly figures of serving experiments: latency CDFs and KV-cache memory over time."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sim.serving.metrics import ServingResult

METRICS = {"ttft_s": "TTFT", "tbt_s": "time between tokens", "e2e_s": "end-to-end latency"}


def _cdf(values: np.ndarray, weights: np.ndarray | None = None, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """An empirical CDF thinned to ``points`` steps (runs of decode iterations weigh their gaps)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(values, kind="stable")
    w = np.ones(values.size) if weights is None else np.asarray(weights, dtype=float)[order]
    cum = np.cumsum(w) / np.sum(w)
    keep = np.unique(np.searchsorted(cum, np.linspace(0, 1, points), side="left").clip(0, values.size - 1))
    return values[order][keep], cum[keep]


def latency_cdfs(results: Mapping[str, ServingResult]) -> go.Figure:
    """TTFT, TBT and end-to-end latency CDFs, one line per labelled experiment."""
    fig = make_subplots(rows=1, cols=len(METRICS), subplot_titles=list(METRICS.values()))
    for i, (label, r) in enumerate(results.items()):
        for col, key in enumerate(METRICS, start=1):
            values, weights = (r.tbt_s, r.tbt_counts) if key == "tbt_s" else (getattr(r, key), None)
            x, y = _cdf(values, weights)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label, legendgroup=label, showlegend=col == 1,
                                     line={"color": _colour(i)},
                                     hovertemplate=f"{label}<br>%{{x:.3g}} s: %{{y:.1%}}<extra></extra>"), row=1, col=col)
            fig.update_xaxes(title_text="seconds", type="log", row=1, col=col)
    fig.update_yaxes(title_text="fraction of requests (TBT: of tokens)", range=[0, 1.01], row=1, col=1)
    fig.update_layout(title="Latency distributions", height=420, hovermode="closest")
    return fig


def kv_memory(results: Mapping[str, ServingResult]) -> go.Figure:
    """Fraction of each replica's KV blocks in use over time."""
    fig = go.Figure()
    for i, (label, r) in enumerate(results.items()):
        for rep, (t, used) in enumerate(zip(r.kv_time_s, r.kv_used_fraction)):
            name = label if len(r.kv_time_s) == 1 else f"{label}, replica {rep}"
            fig.add_trace(go.Scatter(x=t, y=used, mode="lines", name=name, line={"color": _colour(i), "shape": "hv"}))
    fig.update_layout(title="KV-cache blocks in use", xaxis_title="time (s)", yaxis_title="fraction of KV blocks",
                      yaxis_range=[0, 1.01], height=380)
    return fig


def _colour(i: int) -> str:
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
    return palette[i % len(palette)]


def write_report(results: Mapping[str, ServingResult], path) -> None:
    """Both figures in one self-contained HTML file."""
    from pathlib import Path

    figs = [latency_cdfs(results), kv_memory(results)]
    html = "".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs))
    Path(path).write_text(f"<html><head><meta charset='utf-8'><title>kernelab serve</title></head><body>{html}</body></html>")

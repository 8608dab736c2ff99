"""The papers report: every predicted claim, predicted against reported on log axes (plotly)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go


def papers_figure(papers) -> go.Figure:
    fig = go.Figure()
    claims = [(p, c) for p in papers for c in p.claims if c.predicted is not None]
    metrics = sorted({c.metric for _, c in claims})
    for metric in metrics:
        rows = [(p, c) for p, c in claims if c.metric == metric]
        fig.add_trace(go.Scatter(
            x=[c.reported for _, c in rows], y=[c.predicted for _, c in rows], mode="markers", name=metric,
            text=[f"{html.escape(p.title)}<br>{c.locator}<br>{html.escape(', '.join(f'{k}={v}' for k, v in c.setting.items()))}"
                  f"<br>error {c.error:+.0%}<br>{html.escape(c.explain)}" for p, c in rows],
            hovertemplate="%{text}<br>reported %{x:.3g}, predicted %{y:.3g}<extra></extra>"))
    values = [v for _, c in claims for v in (c.reported, c.predicted) if v > 0]
    if values:
        lo, hi = min(values) / 1.5, max(values) * 1.5
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = reported", line={"dash": "dot", "color": "grey"}))
        for f, name in ((1.2, "+20%"), (1 / 1.2, "-20%")):
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * f, hi * f], mode="lines", name=name, line={"dash": "dash", "color": "lightgrey"}))
    fig.update_layout(title="Seed papers: predicted against reported", xaxis={"type": "log", "title": "reported"},
                      yaxis={"type": "log", "title": "predicted"}, height=640)
    return fig


def write_papers_report(papers, path) -> None:
    rows = []
    for p in papers:
        for c in p.claims or [None]:
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
                p.title, p.status, "" if c is None else c.metric, "" if c is None else f"{c.reported:.4g}",
                "" if c is None or c.predicted is None else f"{c.predicted:.4g}",
                "" if c is None or c.error is None else f"{c.error:+.1%}",
                p.reason if c is None or c.predicted is None else c.locator)) + "</tr>")
    errors = np.array([abs(c.error) for p in papers for c in p.claims if c.error is not None])
    head = (f"<p>{len(papers)} papers; {errors.size} claims predicted; median |error| "
            f"{np.median(errors):.1%}</p>" if errors.size else f"<p>{len(papers)} papers; no claim predicted yet</p>")
    table = ("<table border=1 cellspacing=0 cellpadding=3><tr><th>paper</th><th>status</th><th>metric</th><th>reported</th>"
             "<th>predicted</th><th>error</th><th>locator / reason</th></tr>" + "".join(rows) + "</table>")
    Path(path).write_text("<html><head><meta charset='utf-8'><title>kernelab papers</title></head><body>"
                          + papers_figure(papers).to_html(full_html=False, include_plotlyjs=True) + head + table + "</body></html>")

"""Roofline figures: structure, the data they plot, HTML export, and renders in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import sys

import numpy as np
import pytest

import hwmodels as hw
from hwmodels import plot
from hwmodels.errors import InvalidValueError, KernelabError
from hwmodels.plot import ExportError, roofline_figure, write_figure
from hwmodels.roofline import LEVELS, Operation, place, roofline

try:  # `python -m pytest` from the repo root, or tests/ made a package
    from tests._browser import chromium_path, dump_dom, png_summary, require_kaleido, screenshot  # noqa: F401
except ImportError:  # pytest's default rootdir-less import puts tests/ itself on sys.path
    from _browser import chromium_path, dump_dom, png_summary, require_kaleido, screenshot  # noqa: F401

H100 = "H100-SXM"

OPS = (
    Operation.gemm("decode GEMV b=1", 1, 4096, 4096),
    Operation.gemm("GEMM b=256", 256, 4096, 4096),
    Operation.gemm("GEMM 4096^3", 4096, 4096, 4096),
    # attention decode over a KV cache of 32 heads x 4096 tokens x 128 dims, K and V in bf16
    Operation("attention decode", 4 * 32 * 4096 * 128, {"hbm": 2 * 32 * 4096 * 128 * 2}),
)


@pytest.fixture(scope="module")
def h100():
    return hw.get_device(H100)


@pytest.fixture(scope="module")
def fast_h100(h100):
    """A second device without a second data file: a what-if H100 with twice the bandwidth."""
    return hw.derive(h100, "H100-2xHBM", scale={"hbm_bytes_per_s": 2})


def traces(fig, kind, device=None):
    return [t for t in fig.data if t.meta["kind"] == kind and (device is None or t.meta["device"] == device)]


# ---------------------------------------------------------------------------------------------
# Figure structure


def test_one_device_structure(h100):
    fig = roofline_figure([H100], OPS)
    rf = roofline(h100, "bf16")
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "FLOP/byte" in fig.layout.xaxis.title.text and "FLOP/s" in fig.layout.yaxis.title.text
    assert any("TFLOP/s" in t for t in fig.layout.yaxis.ticktext)
    ceilings = traces(fig, "ceiling")
    assert [t.meta["level"] for t in ceilings] == ["hbm", "l2", "smem"]
    assert len({t.line.dash for t in ceilings}) == 3, "one dash style per memory level"
    for t in ceilings:
        c = rf.ceiling(t.meta["level"])
        assert t.x[-1] == pytest.approx(rf.ridge_point(c.level))
        assert t.y[-1] == pytest.approx(rf.peak_flops_per_s)
        assert t.y[0] == pytest.approx(t.x[0] * c.bytes_per_s), "slanted roof is I x bandwidth"
    (compute,) = traces(fig, "compute")
    assert list(compute.y) == [rf.peak_flops_per_s] * 2, "compute roof is horizontal at the peak"
    (ridge,) = traces(fig, "ridge")
    assert list(ridge.x) == pytest.approx([rf.ridge_point(lv) for lv in ("hbm", "l2", "smem")])
    assert "ridge 295 FLOP/B" in ridge.hovertext[0]
    (ops,) = traces(fig, "operations")
    assert list(ops.text) == [op.name for op in OPS]
    assert all(t.legendgroup == h100.name for t in fig.data)
    assert fig.data[0].legendgrouptitle.text == h100.name


def test_several_devices_get_a_colour_and_legend_group_each(h100, fast_h100):
    fig = roofline_figure([h100, fast_h100], OPS)
    colours = {}
    for dev in (h100, fast_h100):
        mine = [t for t in fig.data if t.legendgroup == dev.name]
        assert {t.meta["kind"] for t in mine} == {"ceiling", "compute", "ridge", "operations"}
        assert len(traces(fig, "ceiling", dev.name)) == len(LEVELS)
        colours[dev.name] = {t.line.color for t in mine if t.mode == "lines"}
        assert len(colours[dev.name]) == 1
    assert colours[h100.name] != colours[fast_h100.name]
    # the same operation has the same marker symbol on both devices, and is labelled once
    a, b = traces(fig, "operations", h100.name)[0], traces(fig, "operations", fast_h100.name)[0]
    assert list(a.marker.symbol) == list(b.marker.symbol)
    labels = [s for t in (a, b) for s in t.text if s]
    assert sorted(labels) == sorted(op.name for op in OPS)


def test_crowded_points_share_one_label():
    crowd = [Operation.gemm(f"proj {i}", 1, 4096, 4096 + 64 * i) for i in range(4)]  # all at ~1 FLOP/B
    (t,) = traces(roofline_figure(H100, [*crowd, OPS[2]]), "operations")
    assert t.text[0] == "<br>".join(op.name for op in crowd) and t.textposition[0] == "middle right"
    assert list(t.text[1:4]) == ["", "", ""]
    assert t.text[4] == OPS[2].name
    assert all(op.name in h for op, h in zip(crowd, t.hovertext)), "every point keeps its own hover"


def test_points_are_the_placements(h100, fast_h100):
    devices = [h100, fast_h100]
    fig = roofline_figure(devices, OPS)
    for dev in devices:
        rf = roofline(dev, "bf16")
        (t,) = traces(fig, "operations", dev.name)
        assert t.meta["names"] == [op.name for op in OPS]
        for i, op in enumerate(OPS):
            p = place(op, rf)
            assert t.x[i] == pytest.approx(p.intensity["hbm"])
            assert t.y[i] == pytest.approx(p.attainable_flops_per_s)
            hover = t.hovertext[i]
            for needle in (op.name, dev.name, "FLOPs", "HBM:", "intensity", "time:", p.bound, "bound"):
                assert needle in hover, (needle, hover)


def test_hover_values(h100):
    fig = roofline_figure([h100], [OPS[0]])
    hover = traces(fig, "operations")[0].hovertext[0]
    assert "33.55 MFLOP" in hover  # 2 x 4096 x 4096
    assert "33.57 MB" in hover  # (4096 + 4096^2 + 4096) x 2 bytes
    assert "memory-bound on device memory" in hover
    assert "µs" in hover


def test_axis_ranges_cover_points_and_ridges(h100, fast_h100):
    fig = roofline_figure([h100, fast_h100], OPS)
    x0, x1 = (10**v for v in fig.layout.xaxis.range)
    y0, y1 = (10**v for v in fig.layout.yaxis.range)
    for t in fig.data:
        for x, y in zip(t.x, t.y):
            assert x0 * 0.999 <= x <= x1 * 1.001 and y0 * 0.999 <= y <= y1 * 1.001, (t.name, x, y)
    assert x0 <= 1, "the memory-bound region from 1 FLOP/B is always shown"
    tiny = Operation("elementwise", 1e3, {"hbm": 1e6})  # 0.001 FLOP/B
    fig = roofline_figure([h100], [tiny])
    assert 10 ** fig.layout.xaxis.range[0] <= 1e-3


def test_placements_are_drawn_on_their_device(h100, fast_h100):
    p = place(OPS[1], roofline(fast_h100, "bf16"))
    fig = roofline_figure([h100, fast_h100], [p, OPS[0]])
    assert traces(fig, "operations", fast_h100.name)[0].meta["names"] == [OPS[1].name, OPS[0].name]
    assert traces(fig, "operations", h100.name)[0].meta["names"] == [OPS[0].name]
    with pytest.raises(InvalidValueError, match="not in the figure"):
        roofline_figure([h100], [p])
    with pytest.raises(InvalidValueError, match="calibrated"):
        roofline_figure([fast_h100], [p], calibrated=True)


def test_levels_dtype_and_calibration(h100):
    fig = roofline_figure(H100, OPS, levels=("hbm",))
    assert [t.meta["level"] for t in traces(fig, "ceiling")] == ["hbm"]
    assert traces(fig, "compute")[0].x[0] == pytest.approx(roofline(h100).ridge_point("hbm"))

    cal = roofline(h100, "bf16", calibrated=True)
    fig = roofline_figure(H100, OPS, calibrated=True)
    assert traces(fig, "compute")[0].y[0] == pytest.approx(cal.peak_flops_per_s)
    assert traces(fig, "ceiling")[0].y[-1] == pytest.approx(cal.peak_flops_per_s)
    assert "measured" in fig.layout.title.text

    fig = roofline_figure(H100, [Operation.gemm("fp8 GEMM", 4096, 4096, 4096, dtype="fp8")], dtype="fp8", title="fp8!")
    assert traces(fig, "compute")[0].y[0] == pytest.approx(h100.peak("fp8"))
    assert fig.layout.title.text == "fp8!"


def test_bad_input_is_reported_clearly(h100):
    with pytest.raises(InvalidValueError, match="unknown memory level 'l3'"):
        roofline_figure(H100, levels=("hbm", "l3"))
    with pytest.raises(KernelabError, match="unknown device"):
        roofline_figure(["H1OO-nope"])
    with pytest.raises(InvalidValueError, match="is fp8 but the roofline is bf16"):
        roofline_figure(H100, [Operation.gemm("g", 8, 8, 8, dtype="fp8")])
    with pytest.raises(InvalidValueError, match="no FLOPs"):
        roofline_figure(H100, [Operation("copy", 0, {"hbm": 1e6})])
    with pytest.raises(InvalidValueError, match="at least one device"):
        roofline_figure([])
    with pytest.raises(InvalidValueError, match="given twice"):
        roofline_figure([H100, h100])


# ---------------------------------------------------------------------------------------------
# HTML export: the file holds the plotted data


def plotly_traces_and_layout(html: str) -> tuple[list[dict], dict]:
    """The traces and layout passed to ``Plotly.newPlot(id, traces, layout, config)`` in an HTML file."""
    start = html.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    decoder = json.JSONDecoder()
    values, pos = [], start
    for _ in range(3):  # div id, traces, layout
        while html[pos] in " \t\r\n,":
            pos += 1
        value, pos = decoder.raw_decode(html, pos)
        values.append(value)
    return _decode_typed_arrays(values[1]), values[2]


def _decode_typed_arrays(obj):
    """plotly >= 6 may write numeric arrays as {"dtype": "f8", "bdata": base64}."""
    if isinstance(obj, dict):
        if set(obj) >= {"dtype", "bdata"}:
            return np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"])).tolist()
        return {k: _decode_typed_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_typed_arrays(v) for v in obj]
    return obj


def test_html_holds_the_plotted_data(tmp_path, h100, fast_h100):
    devices = [h100, fast_h100]
    fig = roofline_figure(devices, OPS)
    path = write_figure(fig, tmp_path / "roofline.html")
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", html), "self-contained: plotly.js embedded, not loaded"
    assert len(html) > 1_000_000, "plotly.js is embedded"
    data, layout = plotly_traces_and_layout(html)
    assert layout["xaxis"]["type"] == "log" and layout["yaxis"]["type"] == "log"
    assert len(data) == len(fig.data)
    for dev in devices:
        rf = roofline(dev, "bf16")
        mine = [t for t in data if t["meta"]["device"] == dev.name]
        for t in mine:
            kind = t["meta"]["kind"]
            if kind == "ceiling":
                assert t["y"][-1] == pytest.approx(rf.peak_flops_per_s)
                assert t["x"][-1] == pytest.approx(rf.ridge_point(t["meta"]["level"]))
                assert t["meta"]["bytes_per_s"] == pytest.approx(rf.ceiling(t["meta"]["level"]).bytes_per_s)
            elif kind == "compute":
                assert t["y"] == pytest.approx([rf.peak_flops_per_s] * 2)
            elif kind == "ridge":
                assert t["x"] == pytest.approx([rf.ridge_point(lv) for lv in t["meta"]["levels"]])
                assert t["y"] == pytest.approx([rf.peak_flops_per_s] * len(t["x"]))
            elif kind == "operations":
                placements = [place(op, rf) for op in OPS]
                assert t["x"] == pytest.approx([p.intensity["hbm"] for p in placements])
                assert t["y"] == pytest.approx([p.attainable_flops_per_s for p in placements])
                assert all(p.bound in h and p.operation.name in h for p, h in zip(placements, t["hovertext"]))
        assert {t["meta"]["kind"] for t in mine} == {"ceiling", "compute", "ridge", "operations"}


def test_html_with_cdn_is_small(tmp_path):
    path = write_figure(roofline_figure(H100, OPS), tmp_path / "small.HTML", include_plotlyjs="cdn")
    assert path.stat().st_size < 200_000
    assert re.search(r"<script[^>]+src=\"https://cdn.plot.ly", path.read_text(encoding="utf-8"))


def test_unknown_suffix_lists_the_supported_ones(tmp_path):
    with pytest.raises(ExportError, match=r"unknown suffix '\.gif'.*\.html, \.png, \.svg, \.pdf"):
        write_figure(roofline_figure(H100), tmp_path / "r.gif")
    with pytest.raises(ExportError, match="unknown suffix '\\(none\\)'"):
        write_figure(roofline_figure(H100), tmp_path / "roofline")


# ---------------------------------------------------------------------------------------------
# Image export without a browser or kaleido: a clear error, and no download


@pytest.fixture
def no_browser(monkeypatch, tmp_path):
    """Nothing on PATH, no candidate paths, and kaleido's downloader booby-trapped."""
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(plot, "BROWSER_CANDIDATES", (str(tmp_path / "no-chromium"), "no-such-browser-xyz"))
    monkeypatch.setattr(plot.shutil, "which", lambda *a, **k: None)
    try:
        import kaleido
    except ImportError:
        return

    def forbidden(*args, **kwargs):
        raise AssertionError("kernelab must never download a browser")

    for name in ("get_chrome", "get_chrome_sync"):
        monkeypatch.setattr(kaleido, name, forbidden, raising=False)


def test_no_browser_is_a_clear_error(no_browser, tmp_path):
    with pytest.raises(ExportError) as info:
        plot.find_browser()
    msg = str(info.value)
    assert "apt-get install chromium" in msg and "BROWSER_PATH" in msg and "export .html" in msg
    target = tmp_path / "r.png"
    with pytest.raises(ExportError, match="needs a Chromium or Chrome browser"):
        write_figure(roofline_figure(H100), target)
    assert not target.exists()
    # .html needs no browser
    assert write_figure(roofline_figure(H100), tmp_path / "r.html").exists()


def test_browser_path_pointing_nowhere(no_browser, monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "missing" / "chromium"))
    with pytest.raises(ExportError, match=r"BROWSER_PATH='.*missing/chromium' is not an executable file.*apt-get install chromium"):
        write_figure(roofline_figure(H100), tmp_path / "r.svg")
    assert not (tmp_path / "r.svg").exists()


def test_browser_path_wins(monkeypatch, tmp_path):
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BROWSER_PATH", str(fake))
    assert plot.find_browser() == str(fake)


def test_no_kaleido_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido -> ImportError
    with pytest.raises(ExportError, match="kaleido.*needs a Chromium or Chrome browser"):
        write_figure(roofline_figure(H100), tmp_path / "r.pdf")


# ---------------------------------------------------------------------------------------------
# Renders in headless Chromium (skipped without one, failing under CI)


@pytest.mark.browser
def test_html_renders_in_headless_chromium(chromium_path, tmp_path, h100, fast_h100):
    fig = roofline_figure([h100, fast_h100], OPS)
    html = write_figure(fig, tmp_path / "roofline.html")
    dom = dump_dom(chromium_path, html, tmp_path / "profile-dom")
    # plotly drew: its SVG layers, one <g class="trace scatter ..."> per trace, and real line paths
    assert 'class="main-svg"' in dom
    assert len(re.findall(r'<g class="trace scatter\b', dom)) == len(fig.data)
    assert len(re.findall(r'<path class="js-line" d="M[0-9.]+,[0-9.]+L', dom)) >= len(traces(fig, "ceiling")) + 2
    for name in (h100.name, fast_h100.name, *(op.name for op in OPS)):
        assert f'data-unformatted="{name}"' in dom, name
    png = screenshot(chromium_path, html, tmp_path / "shot.png", tmp_path / "profile-shot")
    summary = png_summary(png)
    assert (summary["width"], summary["height"]) == (1200, 800)
    assert summary["colours"] > 20, summary
    assert summary["non_background"] > 0.01, summary


@pytest.mark.browser
def test_kaleido_exports_png_svg_pdf(chromium_path, tmp_path, monkeypatch):
    kaleido = require_kaleido()

    def forbidden(*args, **kwargs):
        raise AssertionError("kernelab must never download a browser")

    monkeypatch.setattr(kaleido, "get_chrome_sync", forbidden)
    monkeypatch.setattr(kaleido, "get_chrome", forbidden)
    fig = roofline_figure(H100, OPS)
    png = write_figure(fig, tmp_path / "r.png", width=800, height=500).read_bytes()
    summary = png_summary(png)
    assert (summary["width"], summary["height"]) == (800, 500)
    assert summary["colours"] > 20 and summary["non_background"] > 0.01, summary
    svg = write_figure(fig, tmp_path / "r.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<svg") and 'class="main-svg"' in svg
    assert all(op.name in svg for op in OPS)
    assert len(re.findall(r'class="trace scatter', svg)) == len(fig.data)
    pdf = write_figure(fig, tmp_path / "r.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000

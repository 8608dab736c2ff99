"""Headless-Chromium helpers for the tests marked ``browser``.

A test that needs a browser asks for the ``chromium_path`` fixture (import it
into the test module). Where no Chromium-based browser is found the test is
skipped locally, but FAILS when the ``CI`` environment variable is set: CI
installs Debian's ``chromium`` and must really run these checks.

The browser is found the way :func:`hwmodels.plot.find_browser` finds it for
image export (``BROWSER_PATH``, ``/usr/bin/chromium``, ``chromium``... on PATH),
so the render checks exercise the same binary kaleido will use.
"""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from hwmodels.plot import ExportError, find_browser

#: Flags for a quiet, offline, one-shot headless run (root in containers needs --no-sandbox).
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def in_ci() -> bool:
    """True where the ``CI`` variable is set to anything but an empty, 0 or false value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_chromium() -> tuple[str | None, str]:
    """(path, why-not): the browser path, or None with the reason none was found."""
    try:
        return find_browser(), ""
    except ExportError as exc:
        return None, str(exc)


def require_chromium() -> str:
    """The browser path; skip the test without one, or fail it under CI."""
    path, why = find_chromium()
    if path is None:
        msg = f"no headless Chromium: {why}"
        if in_ci():
            pytest.fail(f"CI is set, so the browser tests must run: {msg}", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture
def chromium_path() -> str:
    return require_chromium()


def require_kaleido():
    """The kaleido module (>= 1.0); skip the test without it, or fail it under CI."""
    try:
        import kaleido
    except ImportError:
        kaleido = None
    if kaleido is None or not hasattr(kaleido, "calc_fig_sync"):
        msg = "image export needs kaleido>=1.0 (pip install 'kaleido>=1.0')"
        if in_ci():
            pytest.fail(f"CI is set, so the browser tests must run: {msg}", pytrace=False)
        pytest.skip(msg)
    return kaleido


def run_headless(chromium: str, args: list[str], user_data_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one headless Chromium command; raise with its stderr if it fails."""
    cmd = [chromium, *HEADLESS_FLAGS, f"--user-data-dir={user_data_dir}", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-3000:]
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc


def dump_dom(chromium: str, html_path: Path, user_data_dir: Path, budget_ms: int = 15000) -> str:
    """The DOM of ``html_path`` after its scripts ran (up to ``budget_ms`` of virtual time)."""
    proc = run_headless(
        chromium,
        [f"--virtual-time-budget={budget_ms}", "--dump-dom", Path(html_path).resolve().as_uri()],
        user_data_dir,
    )
    return proc.stdout.decode("utf-8", errors="replace")


def screenshot(chromium: str, html_path: Path, png_path: Path, user_data_dir: Path, size=(1200, 800), budget_ms: int = 15000) -> bytes:
    """A PNG screenshot of ``html_path`` at ``size`` CSS pixels."""
    run_headless(
        chromium,
        [
            f"--virtual-time-budget={budget_ms}",
            "--hide-scrollbars",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png_path}",
            Path(html_path).resolve().as_uri(),
        ],
        user_data_dir,
    )
    return Path(png_path).read_bytes()


# ---------------------------------------------------------------------------------------------
# A minimal PNG reader (8-bit greyscale/RGB/RGBA, not interlaced), so the tests need no Pillow.


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of pixel bytes) of a PNG, unfiltered."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise AssertionError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise AssertionError(f"unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                upleft = prev[i - channels] if i >= channels else 0
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else upleft)
                line[i] = (line[i] + pred) & 0xFF
            elif kind != 0:
                raise AssertionError(f"bad PNG filter type {kind}")
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def png_summary(data: bytes) -> dict:
    """Size, number of distinct colours, and the fraction of pixels unlike the most common one."""
    width, height, rows = png_pixels(data)
    channels = len(rows[0]) // width if rows else 0
    counts: dict[bytes, int] = {}
    for row in rows:
        for x in range(0, len(row), channels):
            px = row[x : x + channels]
            counts[px] = counts.get(px, 0) + 1
    total = width * height
    background = max(counts.values()) if counts else 0
    return {
        "width": width,
        "height": height,
        "colours": len(counts),
        "non_background": (total - background) / total if total else 0.0,
    }

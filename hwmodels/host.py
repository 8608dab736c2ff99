"""The host CPU as a device: its ceilings measured by a short probe, then cached.

The probe times (median of several runs, after a warm-up):

- a memory stream: ``np.copyto(a, b)`` on arrays 4x larger than the last-level
  cache, counted as STREAM's Copy does (``2 * n * 8`` bytes: one read, one write,
  no write-allocate traffic; McCalpin, https://www.cs.virginia.edu/stream/ref.html);
- a matrix product ``C = A @ B`` with numpy's BLAS in float32 and float64,
  ``2 n^3`` FLOPs.

So predictions can later be checked against kernels run on this very machine.
Results are cached as JSON in ``$XDG_CACHE_HOME/kernelab`` (default
``~/.cache/kernelab``), keyed by CPU model, core count and numpy version.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

from hwmodels.datafile import Source, Sourced
from hwmodels.device import Device

HOST_NAME = "host-cpu"
PROBE_VERSION = 1


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0.0


def _llc_bytes() -> int:
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
            sizes.append(int(text[:-1]) * {"K": 1024, "M": 1024**2}.get(text[-1], 1))
        except (OSError, ValueError):
            continue
    return max(sizes, default=32 * 1024**2)


def _median_time_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page faults, BLAS thread start
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def probe(repeats: int = 5, matmul_n: int = 1024) -> dict:
    """Measure this machine's stream bandwidth and matmul FLOP/s (takes about a second)."""
    n = max(4 * _llc_bytes() // 8, 1 << 20)
    a, b = np.empty(n), np.random.default_rng(0).random(n)
    copy_s = _median_time_s(lambda: np.copyto(a, b), repeats)
    result = {"stream_copy_bytes_per_s": 2 * n * 8 / copy_s, "stream_array_bytes": n * 8}
    for dtype in ("float32", "float64"):
        x = np.random.default_rng(1).random((matmul_n, matmul_n)).astype(dtype)
        t = _median_time_s(lambda: x @ x, repeats)
        result[f"matmul_{dtype}_flops_per_s"] = 2 * matmul_n**3 / t
    result["matmul_n"] = matmul_n
    return result


def _identity() -> dict:
    info = _cpuinfo()
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cores": _cores(),
        "clock_mhz": float(info["cpu MHz"]) if "cpu MHz" in info else None,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "probe_version": PROBE_VERSION,
    }


def cache_path(identity: dict) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kernelab"
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return root / f"host-{key}.json"


def host_device(refresh: bool = False) -> Device:
    """The host CPU as a :class:`Device`, probing it once and caching the result."""
    identity = _identity()
    path = cache_path(identity)
    record = None
    if not refresh:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
    if record is None or record.get("identity") != identity:
        record = {"identity": identity, "measured": probe(), "date": time.strftime("%Y-%m-%d")}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
        except OSError:
            pass  # a read-only home only costs a re-probe next time
    return device_from_probe(record)


def device_from_probe(record: dict) -> Device:
    """Build the host Device from a probe record (identity + measured ceilings)."""
    ident, m = record["identity"], record["measured"]
    measured = Source("host-probe", f"file://{cache_path(ident)}", "measured", f"kernelab host probe of {record.get('date', '?')}")
    system = Source("host-system", "file:///proc/cpuinfo", "documentation", "operating-system report")
    clock_known = ident.get("clock_mhz") is not None
    clock_hz = ident["clock_mhz"] * 1e6 if clock_known else 1e9
    provenance = {
        "sm_count": Sourced(ident["cores"], system, "cores available to this process"),
        "clock_hz": Sourced(clock_hz, system, "cpu MHz" if clock_known else "unknown: 1 GHz placeholder, cycle counts are not meaningful"),
        "memory_bytes": Sourced(_memory_bytes(), system, "physical memory"),
        "hbm_bytes_per_s": Sourced(m["stream_copy_bytes_per_s"], measured, f"np.copyto over {m['stream_array_bytes'] / 2**20:.0f} MiB, STREAM Copy counting"),
        "peak_flops_per_s.fp32": Sourced(m["matmul_float32_flops_per_s"], measured, f"numpy float32 matmul n={m['matmul_n']}"),
        "peak_flops_per_s.fp64": Sourced(m["matmul_float64_flops_per_s"], measured, f"numpy float64 matmul n={m['matmul_n']}"),
    }
    return Device(
        name=HOST_NAME,
        vendor=ident["cpu_model"].split()[0] if ident["cpu_model"] else "unknown",
        architecture=ident["machine"],
        kind="cpu",
        sm_count=ident["cores"],
        clock_hz=clock_hz,
        peak_flops_per_s={"fp32": m["matmul_float32_flops_per_s"], "fp64": m["matmul_float64_flops_per_s"]},
        memory_bytes=_memory_bytes() or 1.0,
        hbm_bytes_per_s=m["stream_copy_bytes_per_s"],
        memory_type="DRAM",
        aliases=("host", "cpu"),
        description=f"{ident['cpu_model']}, {ident['cores']} cores (measured by the host probe)",
        provenance=provenance,
    )

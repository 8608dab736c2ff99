"""Unit conversions for data files, whose keys name their units (``_mhz``, ``_gb_per_s``, ...).

Decimal prefixes for rates and vendor capacities (1 GB/s = 1e9 B/s, as datasheets
use them); binary prefixes where the key says so (``_kib``, ``_mib``), as cache
and shared-memory sizes are quoted.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3

# file-key suffix -> (SI unit, factor to SI)
SUFFIXES: dict[str, tuple[str, float]] = {
    "_mhz": ("Hz", 1e6),
    "_ghz": ("Hz", 1e9),
    "_tflops": ("FLOP/s", 1e12),
    "_gb_per_s": ("B/s", 1e9),
    "_tb_per_s": ("B/s", 1e12),
    "_gb": ("B", 1e9),
    "_kib": ("B", KIB),
    "_mib": ("B", MIB),
    "_gib": ("B", GIB),
    "_us": ("s", 1e-6),
    "_w": ("W", 1.0),
    "_cycles": ("cycles", 1.0),
}


def to_si(key: str, value: float) -> tuple[float, str]:
    """The value of a data-file quantity in SI units, from the suffix of its key."""
    for suffix, (unit, factor) in SUFFIXES.items():
        if key.endswith(suffix):
            return value * factor, unit
    return value, ""


def format_si(value: float, unit: str) -> str:
    """``3.35e12, 'B/s'`` -> ``'3.35 TB/s'``: engineering prefixes for display."""
    if unit in ("", "cycles", "count") or value == 0:
        return f"{value:g}" + (f" {unit}" if unit else "")
    prefixes = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")]
    for scale, p in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.4g} {p}{unit}"
    return f"{value:.3g} {unit}"

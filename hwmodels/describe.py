"""Plain-dict views of devices and calibrations, for JSON output and tables."""

from __future__ import annotations

from hwmodels.calibration import Calibration, calibration
from hwmodels.catalog import FIELD_UNITS
from hwmodels.datafile import Sourced
from hwmodels.device import Device

_SUMMARY_FIELDS = ("sm_count", "clock_hz", "memory_bytes", "hbm_bytes_per_s", "l2_bytes", "link_bytes_per_s", "tdp_w")


def device_summary(d: Device) -> dict:
    """The headline numbers of a device (SI units), as in ``kernelab devices --json``."""
    out = {"name": d.name, "vendor": d.vendor, "architecture": d.architecture, "kind": d.kind}
    out.update({f: getattr(d, f) for f in _SUMMARY_FIELDS})
    out["memory_type"] = d.memory_type
    out["peak_flops_per_s"] = dict(d.peak_flops_per_s)
    out["aliases"] = list(d.aliases)
    if d.derived_from:
        out["derived_from"] = d.derived_from
    return out


def _sourced(value, unit: str, s: Sourced | None) -> dict:
    rec = {"value": value, "unit": unit}
    if s is not None:
        rec.update(source=s.source.url, source_kind=s.source.kind, source_title=s.source.title, note=s.note)
    return rec


def device_detail(d: Device, with_calibration: bool = True) -> dict:
    """Every field of a device with its unit and source, as in ``kernelab device NAME --json``."""
    fields = {}
    for name, unit in FIELD_UNITS.items():
        if name.startswith("peak_flops_per_s."):
            dtype = name.split(".", 1)[1]
            if dtype in d.peak_flops_per_s:
                fields[name] = _sourced(d.peak_flops_per_s[dtype], unit, d.provenance.get(name))
        elif getattr(d, name) is not None:
            fields[name] = _sourced(getattr(d, name), unit, d.provenance.get(name))
    if d.smem_bytes_per_s is not None:
        fields["smem_bytes_per_s"] = {
            "value": d.smem_bytes_per_s,
            "unit": "B/s",
            "source_kind": "derived",
            "note": "sm_count x smem_bytes_per_clock_per_sm x clock_hz",
        }
    out = {
        "name": d.name,
        "vendor": d.vendor,
        "architecture": d.architecture,
        "kind": d.kind,
        "compute_capability": d.compute_capability,
        "memory_type": d.memory_type,
        "link_name": d.link_name,
        "aliases": list(d.aliases),
        "description": d.description,
        "derived_from": d.derived_from,
        "fields": fields,
    }
    if with_calibration:
        out["calibration"] = calibration_detail(calibration(d))
    return out


_CAL_UNITS = {
    "hbm_fraction": "fraction",
    "hbm_read_fraction": "fraction",
    "gemv_fraction": "fraction",
    "grouped_gemm_fraction": "fraction",
    "mma_sync_fraction": "fraction",
    "l2_bytes_per_s": "B/s",
    "l2_latency_cycles": "cycles",
    "dram_latency_cycles": "cycles",
    "kernel_launch_s": "s",
    "graph_launch_s": "s",
}


def calibration_detail(c: Calibration) -> dict:
    """Each achievable figure with its unit and the measurement (or fallback) it comes from."""
    out = {}
    for name, unit in _CAL_UNITS.items():
        value = getattr(c, name)
        if value is not None:
            out[name] = _sourced(value, unit, c.provenance.get(name))
    for dtype, frac in c.gemm_fraction.items():
        out[f"gemm_fraction.{dtype}"] = _sourced(frac, "fraction", c.provenance.get(f"gemm_fraction.{dtype}"))
    return out

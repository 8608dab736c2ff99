"""The device catalog: one TOML file per device in ``hwmodels/data/devices``.

A device file looks like this (every number cites a ``[sources]`` entry)::

    name = "H100-SXM"
    aliases = ["H100", "H100-SXM5-80GB"]
    vendor = "NVIDIA"
    architecture = "Hopper"
    kind = "gpu"
    compute_capability = "9.0"

    [sources]
    whitepaper = { url = "https://...", kind = "datasheet" }

    [compute]
    sm_count = { value = 132, source = "whitepaper" }
    boost_clock_mhz = { value = 1980, source = "whitepaper" }
    [compute.peak_dense_tflops]
    bf16 = { value = 989.4, source = "whitepaper" }

    [memory]
    type = "HBM3"
    capacity_gb = ...; bandwidth_gb_per_s = ...; l2_cache_mib = ...
    smem_per_sm_kib = ...; smem_bytes_per_clock_per_sm = ...

    [limits]
    registers_per_sm, max_registers_per_thread, max_threads_per_sm, max_ctas_per_sm, warp_size

    [interconnect]
    link = "nvlink4"; link_count = ...; link_bandwidth_gb_per_s = ... (bidirectional); pcie_gen; pcie_lanes

    [power]
    tdp_w = ...
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from hwmodels.datafile import Sourced, load_toml, read_sourced, read_sources
from hwmodels.device import DTYPES, Device
from hwmodels.errors import DataFileError, InvalidValueError
from hwmodels.registry import Registry
from hwmodels.units import to_si

# (section, file key, Device field, integer?, required for a GPU?)
_SCALARS: tuple[tuple[str, str, str, bool, bool], ...] = (
    ("compute", "sm_count", "sm_count", True, True),
    ("compute", "boost_clock_mhz", "clock_hz", False, True),
    ("compute", "sfu_ops_per_clock_per_sm", "sfu_ops_per_clock_per_sm", False, False),
    ("memory", "capacity_gb", "memory_bytes", False, True),
    ("memory", "bandwidth_gb_per_s", "hbm_bytes_per_s", False, True),
    ("memory", "l2_cache_mib", "l2_bytes", False, True),
    ("memory", "smem_per_sm_kib", "smem_per_sm_bytes", False, True),
    ("memory", "smem_bytes_per_clock_per_sm", "smem_bytes_per_clock_per_sm", False, True),
    ("limits", "registers_per_sm", "registers_per_sm", True, True),
    ("limits", "max_registers_per_thread", "max_registers_per_thread", True, False),
    ("limits", "max_threads_per_sm", "max_threads_per_sm", True, True),
    ("limits", "max_ctas_per_sm", "max_ctas_per_sm", True, True),
    ("limits", "warp_size", "warp_size", True, True),
    ("interconnect", "link_count", "link_count", True, False),
    ("interconnect", "link_bandwidth_gb_per_s", "link_bytes_per_s", False, False),
    ("interconnect", "pcie_gen", "pcie_gen", True, False),
    ("interconnect", "pcie_lanes", "pcie_lanes", True, False),
    ("power", "tdp_w", "tdp_w", False, False),
)
_ALWAYS_REQUIRED = {"sm_count", "clock_hz", "memory_bytes", "hbm_bytes_per_s"}

#: Unit of each Device field, for display and JSON.
FIELD_UNITS: dict[str, str] = {
    "sm_count": "count",
    "clock_hz": "Hz",
    "memory_bytes": "B",
    "hbm_bytes_per_s": "B/s",
    "l2_bytes": "B",
    "smem_per_sm_bytes": "B",
    "smem_bytes_per_clock_per_sm": "B/cycle",
    "sfu_ops_per_clock_per_sm": "ops/cycle",
    "registers_per_sm": "count",
    "max_registers_per_thread": "count",
    "max_threads_per_sm": "count",
    "max_ctas_per_sm": "count",
    "warp_size": "count",
    "link_count": "count",
    "link_bytes_per_s": "B/s",
    "pcie_gen": "",
    "pcie_lanes": "count",
    "tdp_w": "W",
    **{f"peak_flops_per_s.{d}": "FLOP/s" for d in DTYPES},
}

DATA_DIR = resources.files("hwmodels") / "data" / "devices"


def parse_device(doc: dict[str, Any], path: Path | str) -> Device:
    """Build a :class:`Device` from a parsed device file, reporting problems by file and field."""
    sources = read_sources(doc, path)
    for key in ("name", "vendor", "architecture", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise DataFileError(path, key, "missing or not a non-empty string")
    kind = doc["kind"]
    values: dict[str, Any] = {}
    provenance: dict[str, Sourced] = {}
    for section, key, attr, integer, gpu_required in _SCALARS:
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise DataFileError(path, section, "must be a table")
        required = attr in _ALWAYS_REQUIRED or (gpu_required and kind == "gpu")
        sourced = read_sourced(table, key, path, sources, prefix=f"{section}.", required=required, integer=integer)
        if sourced is not None:
            values[attr] = sourced.value if integer else to_si(key, sourced.value)[0]
            provenance[attr] = sourced

    peaks_table = doc.get("compute", {}).get("peak_dense_tflops")
    if not isinstance(peaks_table, dict) or not peaks_table:
        raise DataFileError(path, "compute.peak_dense_tflops", "missing: give at least one dense peak")
    peaks = {}
    for dtype in peaks_table:
        if dtype not in DTYPES:
            raise DataFileError(path, f"compute.peak_dense_tflops.{dtype}", f"unknown dtype; known: {', '.join(DTYPES)}")
        sourced = read_sourced(peaks_table, dtype, path, sources, prefix="compute.peak_dense_tflops.")
        peaks[dtype] = sourced.value * 1e12
        provenance[f"peak_flops_per_s.{dtype}"] = sourced

    memory = doc.get("memory", {})
    link = doc.get("interconnect", {}).get("link")
    if link is not None and not isinstance(link, str):
        raise DataFileError(path, "interconnect.link", "must be a link name such as 'nvlink4'")
    aliases = doc.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise DataFileError(path, "aliases", "must be a list of strings")
    try:
        return Device(
            name=doc["name"],
            vendor=doc["vendor"],
            architecture=doc["architecture"],
            kind=kind,
            compute_capability=str(doc.get("compute_capability", "")),
            memory_type=str(memory.get("type", "")),
            peak_flops_per_s=peaks,
            link_name=link,
            aliases=tuple(aliases),
            description=str(doc.get("description", "")),
            derived_from=doc.get("derived_from"),
            provenance=provenance,
            **values,
        )
    except InvalidValueError as exc:
        raise DataFileError(path, "<device>", str(exc)) from None


def load_device_toml(path: Path | str) -> Device:
    return parse_device(load_toml(path), path)


def _load_catalog() -> dict[str, tuple[Device, tuple[str, ...]]]:
    out: dict[str, tuple[Device, tuple[str, ...]]] = {}
    for entry in sorted(DATA_DIR.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                device = load_device_toml(path)
            out[device.name] = (device, device.aliases)
    return out


CATALOG: Registry[Device] = Registry("device", _load_catalog)

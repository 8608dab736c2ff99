"""Measured achievable fractions of each device, kept apart from its datasheet peaks.

A calibration file ``hwmodels/data/calibration/<device>.toml`` holds published
measurements (stream bandwidth, best GEMM, L2 bandwidth and latency, DRAM
latency, launch overhead), each with its source and exact setting. The cost
models read them as device-global parameters through :func:`calibration`.

Where a device has no measurement of some quantity, the value falls back to the
*median over the measured devices of the same vendor* of a hardware-normalised
form of it (a fraction of peak, bytes per clock per SM, cycles, seconds); where
no device of that vendor has it, over all devices, except for L2 bandwidth, whose
per-SM form means nothing across vendors (an AMD CU is not an NVIDIA SM): that one
stays unknown (None) and the roofline has no L2 roof. The fallback is marked as
``derived`` in the provenance and names the devices it came from, so a user sees
which numbers are guesses.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Callable, Mapping

from hwmodels.datafile import Source, Sourced, load_toml, read_sourced, read_sources
from hwmodels.device import DTYPES, Device
from hwmodels.errors import DataFileError

DATA_DIR = resources.files("hwmodels") / "data" / "calibration"

# (section, file key, Measurement field)
_SCALARS = (
    ("memory", "stream_gb_per_s", "stream_bytes_per_s"),
    ("memory", "l2_bandwidth_gb_per_s", "l2_bytes_per_s"),
    ("memory", "l2_latency_cycles", "l2_latency_cycles"),
    ("memory", "dram_latency_cycles", "dram_latency_cycles"),
    ("launch", "kernel_launch_us", "kernel_launch_s"),
    ("launch", "graph_launch_us", "graph_launch_s"),
)
# Quantities with no cross-device median fallback (see Calibration): read-only stream bandwidth
# falls back to the device's own stream figure, mma.sync's fraction to 1 or to its architecture's.
_OPTIONAL = (
    ("memory", "read_stream_gb_per_s", "read_stream_bytes_per_s"),
    ("memory", "gemv_gb_per_s", "gemv_bytes_per_s"),
    ("memory", "grouped_gemm_gb_per_s", "grouped_gemm_bytes_per_s"),
    ("compute", "mma_sync_fraction", "mma_sync_fraction"),
)
_SI = {"stream_gb_per_s": 1e9, "read_stream_gb_per_s": 1e9, "gemv_gb_per_s": 1e9, "grouped_gemm_gb_per_s": 1e9,
       "l2_bandwidth_gb_per_s": 1e9, "kernel_launch_us": 1e-6, "graph_launch_us": 1e-6}


@dataclass(frozen=True)
class Measurement:
    """What a calibration file says about one device, in SI units; absent values are None."""

    device: str
    values: Mapping[str, float]
    provenance: Mapping[str, Sourced]


@dataclass(frozen=True)
class Calibration:
    """Device-global achievable figures used by every cost model.

    ``hbm_fraction`` = measured stream bandwidth / datasheet bandwidth;
    ``gemm_fraction[dtype]`` = best measured dense GEMM / datasheet peak.

    ``hbm_read_fraction`` = measured *read-only* stream bandwidth (BabelStream
    Dot: two arrays read, no array written) / datasheet bandwidth, the rate of
    kernels that stream reads (attention over a KV cache, GEMM operands). A
    device without that measurement gets its ``hbm_fraction`` (no read advantage
    is assumed; the provenance says so).

    ``gemv_fraction`` = measured weight-streaming rate of a memory-bound
    (matrix-vector-like) cuBLAS GEMM / datasheet bandwidth: the rate decode
    GEMMs read their weights at, below the triad figure on the devices measured
    (0.81 of peak on H100, 0.83 on H200). A device without the measurement gets
    its stream fraction times the same-vendor median ratio of the two.

    ``grouped_gemm_fraction`` = measured weight-streaming rate of a grouped
    GEMM (one launch over several experts' weights, each with few rows, as a
    mixture-of-experts layer runs them) / datasheet bandwidth, measured on
    PyTorch's CUTLASS grouped GEMM (``torch._grouped_mm``) and used for every
    engine's MoE layer (their own MoE kernels were not measured). It is not the
    GEMV rate: on the H200 the grouped kernel streams 2.8 TB/s where cuBLAS
    streams 4.0 on a 1 GB GEMV and 3.4 on one 235 MB expert, and its time
    barely moves with the card's bandwidth; so a what-if device, which inherits
    the fraction, scales it with its bandwidth (an assumption). A device
    without the measurement gets its ``gemv_fraction`` (no grouped penalty
    assumed; the provenance says so).

    ``mma_sync_fraction``: the fraction of the datasheet tensor-core peak that
    the warp-level ``mma.sync`` instruction (the only one before Hopper) can
    reach. 1.0 where ``mma.sync`` is the native instruction (Volta..Ada, CDNA);
    on Hopper, where the datasheet peak needs ``wgmma``, a sourced architectural
    figure, shared by every device of that architecture. A kernel written with
    ``mma.sync`` (FlashAttention-2) then runs at ``mma_sync_fraction x
    gemm_fraction x peak``.
    """

    device: str
    hbm_fraction: float
    gemm_fraction: Mapping[str, float]
    l2_bytes_per_s: float | None
    l2_latency_cycles: float | None
    dram_latency_cycles: float | None
    kernel_launch_s: float | None
    graph_launch_s: float | None
    provenance: Mapping[str, Sourced] = field(default_factory=dict, compare=False, repr=False)
    hbm_read_fraction: float | None = None
    mma_sync_fraction: float = 1.0
    gemv_fraction: float | None = None
    grouped_gemm_fraction: float | None = None

    def achievable_hbm_bytes_per_s(self, device: Device) -> float:
        return self.hbm_fraction * device.hbm_bytes_per_s

    def achievable_hbm_read_bytes_per_s(self, device: Device) -> float:
        """Read-only streaming bandwidth; the stream (triad) figure where no read-only one is measured."""
        return (self.hbm_read_fraction if self.hbm_read_fraction is not None else self.hbm_fraction) * device.hbm_bytes_per_s

    def achievable_gemv_bytes_per_s(self, device: Device) -> float:
        """Weight-streaming rate of a memory-bound GEMM; the stream figure where nothing better is known."""
        return (self.gemv_fraction if self.gemv_fraction is not None else self.hbm_fraction) * device.hbm_bytes_per_s

    def achievable_grouped_gemm_bytes_per_s(self, device: Device) -> float:
        """Weight-streaming rate of a memory-bound grouped (mixture-of-experts) GEMM; the GEMV rate where unmeasured."""
        if self.grouped_gemm_fraction is None:
            return self.achievable_gemv_bytes_per_s(device)
        return self.grouped_gemm_fraction * device.hbm_bytes_per_s

    def achievable_flops_per_s(self, device: Device, dtype: str) -> float:
        return self.gemm_fraction[dtype] * device.peak(dtype)


def parse_measurement(doc: dict[str, Any], path) -> Measurement:
    sources = read_sources(doc, path)
    if not isinstance(doc.get("device"), str):
        raise DataFileError(path, "device", "missing: name the catalog device these measurements are of")
    values: dict[str, float] = {}
    provenance: dict[str, Sourced] = {}
    for section, key, attr in _SCALARS:
        table = doc.get(section, {})
        s = read_sourced(table, key, path, sources, prefix=f"{section}.", required=False)
        if s is not None:
            values[attr] = s.value * _SI.get(key, 1.0)
            provenance[attr] = s
    gemm = doc.get("compute", {}).get("gemm_tflops", {})
    for dtype in gemm:
        if dtype not in DTYPES:
            raise DataFileError(path, f"compute.gemm_tflops.{dtype}", f"unknown dtype; known: {', '.join(DTYPES)}")
        s = read_sourced(gemm, dtype, path, sources, prefix="compute.gemm_tflops.")
        values[f"gemm_flops_per_s.{dtype}"] = s.value * 1e12
        provenance[f"gemm_flops_per_s.{dtype}"] = s
    for section, key, attr in _OPTIONAL:
        s = read_sourced(doc.get(section, {}), key, path, sources, prefix=f"{section}.", required=False)
        if s is not None:
            values[attr] = s.value * _SI.get(key, 1.0)
            provenance[attr] = s
    return Measurement(device=doc["device"], values=MappingProxyType(values), provenance=MappingProxyType(provenance))


@lru_cache(maxsize=1)
def measurements() -> Mapping[str, Measurement]:
    """Every calibration file, keyed by the (canonical) device name it describes."""
    from hwmodels.catalog import CATALOG

    out = {}
    for entry in sorted(DATA_DIR.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                m = parse_measurement(load_toml(path), path)
                if m.device not in CATALOG:
                    raise DataFileError(path, "device", f"{m.device!r} is not in the device catalog")
                out[CATALOG.get(m.device).name] = m
    return MappingProxyType(out)


# How each quantity is normalised by the hardware before taking a median across devices,
# and how it is turned back into a value for a given device.
_Normalise = Callable[[float, Device], float]
_NORMALISED: dict[str, tuple[_Normalise, _Normalise, str]] = {  # quantity: (normalise, denormalise, unit)
    "hbm_fraction": (lambda v, d: v / d.hbm_bytes_per_s, lambda f, d: f, "stream bandwidth / datasheet bandwidth"),
    "l2_bytes_per_s": (
        lambda v, d: v / (d.sm_count * d.clock_hz),
        lambda f, d: f * d.sm_count * d.clock_hz,
        "L2 bytes per clock per SM",
    ),
    "l2_latency_cycles": (lambda v, d: v, lambda f, d: f, "cycles"),
    "dram_latency_cycles": (lambda v, d: v, lambda f, d: f, "cycles"),
    "kernel_launch_s": (lambda v, d: v, lambda f, d: f, "seconds"),
    "graph_launch_s": (lambda v, d: v, lambda f, d: f, "seconds"),
}
_RAW = {"hbm_fraction": "stream_bytes_per_s"}
_SAME_VENDOR_ONLY = {"l2_bytes_per_s"}


def calibration(device: Device) -> Calibration:
    """Achievable figures for ``device``: its own measurements, else same-vendor medians.

    A what-if device derived from a catalog device inherits the base device's
    measured *fractions* (its peaks may differ; see :mod:`hwmodels.whatif`).
    """
    from hwmodels.catalog import CATALOG

    return _calibration(device, CATALOG.get(device.derived_from) if device.derived_from in CATALOG else None)


def _calibration(device: Device, base: Device | None) -> Calibration:
    if device.kind == "cpu":
        return _host_calibration(device)
    table = measurements()
    own_name = device.name if device.name in table else (base.name if base is not None else None)
    own = table.get(own_name) if own_name else None
    catalog_of = _catalog_devices()
    out: dict[str, Any] = {}
    provenance: dict[str, Sourced] = {}

    for quantity, (normalise, denormalise, unit) in _NORMALISED.items():
        raw_key = _RAW.get(quantity, quantity)
        if own is not None and raw_key in own.values:
            ref = catalog_of[own.device]
            out[quantity] = denormalise(normalise(own.values[raw_key], ref), device)
            provenance[quantity] = own.provenance[raw_key]
        else:
            found = _fallback(device, raw_key, normalise, denormalise, unit, catalog_of, same_vendor_only=quantity in _SAME_VENDOR_ONLY)
            out[quantity] = found[0] if found else None
            if found:
                provenance[quantity] = found[1]

    gemm: dict[str, float] = {}
    unmeasured = []
    for dtype in device.dtypes:
        key = f"gemm_flops_per_s.{dtype}"
        if own is not None and key in own.values:
            gemm[dtype] = own.values[key] / catalog_of[own.device].peak(dtype)
            provenance[f"gemm_fraction.{dtype}"] = own.provenance[key]
        elif _measured_anywhere(key):
            gemm[dtype], provenance[f"gemm_fraction.{dtype}"] = _fallback(
                device, key, lambda v, d, dtype=dtype: v / d.peak(dtype), lambda f, d: f,
                f"fraction of {dtype} peak", catalog_of, dtype=dtype,
            )
        else:
            unmeasured.append(dtype)
    for dtype in unmeasured:
        gemm[dtype], provenance[f"gemm_fraction.{dtype}"] = _sibling_fraction(device, dtype, gemm)
    if own is not None and "read_stream_bytes_per_s" in own.values:
        out["hbm_read_fraction"] = own.values["read_stream_bytes_per_s"] / catalog_of[own.device].hbm_bytes_per_s
        provenance["hbm_read_fraction"] = own.provenance["read_stream_bytes_per_s"]
    elif out.get("hbm_fraction") is not None:
        out["hbm_read_fraction"] = out["hbm_fraction"]
        provenance["hbm_read_fraction"] = provenance["hbm_fraction"]  # no read-only measurement: the stream figure
    if out.get("hbm_fraction") is not None:
        out["gemv_fraction"], provenance["gemv_fraction"] = _gemv_fraction(device, own, catalog_of, out["hbm_fraction"],
                                                                             provenance["hbm_fraction"])
        if own is not None and "grouped_gemm_bytes_per_s" in own.values:
            out["grouped_gemm_fraction"] = own.values["grouped_gemm_bytes_per_s"] / catalog_of[own.device].hbm_bytes_per_s
            provenance["grouped_gemm_fraction"] = own.provenance["grouped_gemm_bytes_per_s"]
        else:  # unmeasured: the GEMV rate, no grouped penalty assumed
            out["grouped_gemm_fraction"] = out["gemv_fraction"]
            provenance["grouped_gemm_fraction"] = provenance["gemv_fraction"]
    out["mma_sync_fraction"], mma_source = _mma_sync_fraction(device, own, catalog_of)
    if mma_source is not None:
        provenance["mma_sync_fraction"] = mma_source
    return Calibration(device=device.name, gemm_fraction=MappingProxyType(gemm), provenance=MappingProxyType(provenance), **out)


def _gemv_fraction(device: Device, own, catalog_of, hbm_fraction: float, stream_source: Sourced) -> tuple[float, Sourced]:
    """This device's measured GEMV streaming rate, else its stream fraction times the same-vendor median of
    (GEMV rate / stream rate) over devices that have both, else its stream fraction (no GEMV penalty assumed)."""
    if own is not None and "gemv_bytes_per_s" in own.values:
        return own.values["gemv_bytes_per_s"] / catalog_of[own.device].hbm_bytes_per_s, own.provenance["gemv_bytes_per_s"]
    ratios = {name: m.values["gemv_bytes_per_s"] / m.values["stream_bytes_per_s"]
              for name, m in sorted(measurements().items())
              if "gemv_bytes_per_s" in m.values and "stream_bytes_per_s" in m.values
              and catalog_of[name].vendor == device.vendor}
    if not ratios:
        return hbm_fraction, stream_source
    ratio = statistics.median(ratios.values())
    source = Source(key="fallback", url="kernelab:hwmodels/calibration.py", kind="derived",
                    title=f"stream fraction x median GEMV/stream ratio of {device.vendor} devices: {', '.join(ratios)}")
    return hbm_fraction * ratio, Sourced(value=hbm_fraction * ratio, source=source,
                                         note=f"ratio {ratio:.3f}: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))


def _mma_sync_fraction(device: Device, own, catalog_of) -> tuple[float, Sourced | None]:
    """This device's sourced figure, else one of a device of the same architecture, else 1 with no source
    (mma.sync is the native tensor-core instruction before Hopper; no figure is known for Blackwell)."""
    if own is not None and "mma_sync_fraction" in own.values:
        return own.values["mma_sync_fraction"], own.provenance["mma_sync_fraction"]
    for name, m in sorted(measurements().items()):
        if "mma_sync_fraction" in m.values and catalog_of[name].architecture == device.architecture:
            s = m.provenance["mma_sync_fraction"]
            return s.value, Sourced(value=s.value, source=s.source, note=f"architectural figure of {device.architecture}, recorded for {name}")
    return 1.0, None


# A dtype that no device has a GEMM measurement of borrows the fraction of the dtype
# that runs on the same datapath at the same operand width (int8 and fp8 share the
# Hopper/Ada tensor-core rate; fp4 is the next step of the same pipe).
_SIBLING_DTYPE = {"int8": "fp8", "fp4": "fp8", "fp8": "bf16", "fp16": "bf16", "bf16": "fp16", "tf32": "bf16", "fp64": "fp32"}


def _measured_anywhere(key: str) -> bool:
    return any(key in m.values for m in measurements().values())


def _sibling_fraction(device: Device, dtype: str, known: dict[str, float]) -> tuple[float, Sourced]:
    sibling = _SIBLING_DTYPE.get(dtype)
    while sibling is not None and sibling not in known:
        sibling = _SIBLING_DTYPE.get(sibling) if sibling != dtype else None
    if sibling is not None:
        value, how = known[sibling], f"this device's {sibling} GEMM fraction (same tensor-core datapath)"
    elif known:
        value, how = statistics.median(known.values()), f"median of this device's fractions ({', '.join(known)})"
    else:
        raise DataFileError(DATA_DIR, f"gemm_flops_per_s.{dtype}", "no device has a GEMM measurement of any dtype")
    source = Source(key="sibling-dtype", url="kernelab:hwmodels/calibration.py", kind="derived", title=f"no measured {dtype} GEMM on any device: {how}")
    return value, Sourced(value=value, source=source, note=f"no measurement of {dtype} GEMM")


def _catalog_devices() -> dict[str, Device]:
    from hwmodels.catalog import CATALOG

    return {d.name: d for d in CATALOG}


def _fallback(
    device, raw_key, normalise, denormalise, unit, catalog_of, dtype=None, same_vendor_only=False
) -> tuple[float, Sourced] | None:
    """Median of the normalised measurements of same-vendor devices (all devices if none and allowed)."""
    rows = []
    for name, m in measurements().items():
        ref = catalog_of[name]
        if raw_key in m.values and (dtype is None or dtype in ref.peak_flops_per_s):
            if ref.kind == device.kind:
                rows.append((ref.vendor == device.vendor, name, normalise(m.values[raw_key], ref)))
    same_vendor = [r for r in rows if r[0]]
    used = same_vendor if same_vendor_only else (same_vendor or rows)
    if not used:
        if same_vendor_only:
            return None
        raise DataFileError(DATA_DIR, raw_key, "no device has this measurement; a fallback needs at least one")
    value = statistics.median(r[2] for r in used)
    names = ", ".join(r[1] for r in used)
    scope = f"{device.vendor} devices" if same_vendor else "all devices"
    source = Source(
        key="fallback",
        url="kernelab:hwmodels/calibration.py",
        kind="derived",
        title=f"median {unit} over measured {scope}: {names}",
    )
    return denormalise(value, device), Sourced(value=value, source=source, note=f"no measurement of {device.name}")


def _host_calibration(device: Device) -> Calibration:
    """The host's ceilings are themselves measured by its probe, so they are achievable as they stand."""
    probe = Source(key="host-probe", url="kernelab:hwmodels/host.py", kind="measured", title="host ceilings are probe measurements")
    ones = {d: 1.0 for d in device.dtypes}
    provenance = {"hbm_fraction": Sourced(1.0, probe), **{f"gemm_fraction.{d}": Sourced(1.0, probe) for d in ones}}
    return Calibration(
        device=device.name,
        hbm_fraction=1.0,
        gemm_fraction=MappingProxyType(ones),
        l2_bytes_per_s=None,
        l2_latency_cycles=None,
        dram_latency_cycles=None,
        kernel_launch_s=None,
        graph_launch_s=None,
        provenance=MappingProxyType(provenance),
    )

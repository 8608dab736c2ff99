"""What a device is: the frozen description every cost model reads.

All values are SI (bytes, bytes/s, FLOP/s, Hz, W); peaks are *dense* (no 2:4
sparsity). ``provenance`` maps each field to the sourced number it came from,
so any figure can be traced to its datasheet or measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Mapping

from hwmodels.datafile import Sourced
from hwmodels.errors import InvalidValueError

#: Data types a peak may be given for, widest first.
DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")

#: Bytes per element of each dtype, for byte counts of operations.
DTYPE_BYTES = MappingProxyType(
    {"fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "fp4": 0.5}
)

KINDS = ("gpu", "cpu")


@dataclass(frozen=True)
class Device:
    """One accelerator (or the host CPU) as the cost models see it.

    ``sm_count`` counts streaming multiprocessors (NVIDIA), compute units (AMD)
    or cores (CPU). ``hbm_bytes_per_s`` is the device-memory bandwidth whatever
    the technology (``memory_type`` says HBM3, GDDR6X, DDR5...). Shared-memory
    bandwidth is ``sm_count * smem_bytes_per_clock_per_sm * clock_hz``.
    """

    name: str
    vendor: str
    architecture: str
    kind: str
    sm_count: int
    clock_hz: float
    peak_flops_per_s: Mapping[str, float]
    memory_bytes: float
    hbm_bytes_per_s: float
    memory_type: str = ""
    compute_capability: str = ""
    l2_bytes: float | None = None
    smem_per_sm_bytes: float | None = None
    smem_bytes_per_clock_per_sm: float | None = None
    sfu_ops_per_clock_per_sm: float | None = None
    registers_per_sm: int | None = None
    max_registers_per_thread: int | None = None
    max_threads_per_sm: int | None = None
    max_ctas_per_sm: int | None = None
    warp_size: int | None = None
    link_name: str | None = None
    link_count: int | None = None
    link_bytes_per_s: float | None = None
    pcie_gen: int | None = None
    pcie_lanes: int | None = None
    tdp_w: float | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    derived_from: str | None = None
    provenance: Mapping[str, Sourced] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Freeze the mappings so a catalog entry cannot be edited in place.
        object.__setattr__(self, "peak_flops_per_s", MappingProxyType(dict(self.peak_flops_per_s)))
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        _validate(self)

    def __reduce__(self):
        # The read-only mappings do not pickle; rebuild from plain dicts (Dask workers, multiprocessing).
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["peak_flops_per_s"] = dict(self.peak_flops_per_s)
        state["provenance"] = dict(self.provenance)
        return (_rebuild_device, (state,))

    @property
    def dtypes(self) -> tuple[str, ...]:
        """Dtypes with a published peak, widest first."""
        return tuple(d for d in DTYPES if d in self.peak_flops_per_s)

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s (or OP/s for int8) of ``dtype``."""
        try:
            return self.peak_flops_per_s[dtype.lower()]
        except KeyError:
            raise InvalidValueError(
                f"{self.name} has no published {dtype!r} peak; it has: {', '.join(self.dtypes)}"
            ) from None

    @property
    def smem_bytes_per_s(self) -> float | None:
        """Aggregate shared-memory bandwidth: SMs x bytes per clock per SM x clock."""
        if self.smem_bytes_per_clock_per_sm is None:
            return None
        return self.sm_count * self.smem_bytes_per_clock_per_sm * self.clock_hz

    @property
    def sfu_ops_per_s(self) -> float | None:
        """Special-function (exp2, log2, reciprocal) results per second: SMs x per-clock rate x clock."""
        if self.sfu_ops_per_clock_per_sm is None:
            return None
        return self.sm_count * self.sfu_ops_per_clock_per_sm * self.clock_hz

    @property
    def max_warps_per_sm(self) -> int | None:
        if self.max_threads_per_sm is None or self.warp_size is None:
            return None
        return self.max_threads_per_sm // self.warp_size

    def ridge_point(self, dtype: str, bytes_per_s: float | None = None) -> float:
        """Arithmetic intensity (FLOP/byte) where compute and memory time are equal."""
        return self.peak(dtype) / (bytes_per_s if bytes_per_s is not None else self.hbm_bytes_per_s)


def _rebuild_device(state: dict) -> "Device":
    return Device(**state)


# Fields every GPU must have; a CPU needs only the common ones.
_GPU_REQUIRED = (
    "l2_bytes",
    "smem_per_sm_bytes",
    "smem_bytes_per_clock_per_sm",
    "registers_per_sm",
    "max_threads_per_sm",
    "max_ctas_per_sm",
    "warp_size",
)


def _validate(d: Device) -> None:
    where = f"device {d.name!r}"
    if not d.name:
        raise InvalidValueError("a device needs a non-empty name")
    if d.kind not in KINDS:
        raise InvalidValueError(f"{where}: kind must be one of {KINDS}, got {d.kind!r}")
    if not d.peak_flops_per_s:
        raise InvalidValueError(f"{where}: needs at least one peak FLOP/s")
    for dtype, value in d.peak_flops_per_s.items():
        if dtype not in DTYPES:
            raise InvalidValueError(f"{where}: unknown dtype {dtype!r} in peaks; known: {', '.join(DTYPES)}")
        _positive(where, f"peak_flops_per_s[{dtype}]", value)
    for name in ("sm_count", "clock_hz", "memory_bytes", "hbm_bytes_per_s"):
        _positive(where, name, getattr(d, name))
    for name in (
        *_GPU_REQUIRED,
        "max_registers_per_thread",
        "sfu_ops_per_clock_per_sm",
        "link_count",
        "link_bytes_per_s",
        "pcie_gen",
        "pcie_lanes",
        "tdp_w",
    ):
        value = getattr(d, name)
        if value is None:
            if d.kind == "gpu" and name in _GPU_REQUIRED:
                raise InvalidValueError(f"{where}: a GPU needs {name}")
            continue
        _positive(where, name, value)
    if d.warp_size is not None and d.max_threads_per_sm is not None and d.max_threads_per_sm % d.warp_size:
        raise InvalidValueError(f"{where}: max_threads_per_sm must be a multiple of warp_size")


def _positive(where: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise InvalidValueError(f"{where}: {name} must be a positive number, got {value!r}")

"""Roofline math: attainable FLOP/s per memory level, ridge points, and where an operation sits.

The roofline model (Williams, Waterman & Patterson, CACM 52(4), 2009,
https://doi.org/10.1145/1498765.1498785), hierarchical form (Yang et al.,
"Hierarchical Roofline Analysis for GPUs", arXiv:2009.02449): for each memory
level ``l`` with bandwidth ``B_l`` and an operation moving ``Q_l`` bytes there,

    time_s = max(flops / P, max_l Q_l / B_l)
    attainable FLOP/s at intensity I_l = flops / Q_l:  min(P, I_l * B_l)
    ridge point of level l:  P / B_l  (FLOP/byte)

``P`` is the dense peak of the operation's dtype. With ``calibrated=True`` the
ceilings are the *achievable* ones (measured stream bandwidth, best measured
GEMM) from :mod:`hwmodels.calibration` instead of the datasheet peaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from hwmodels.calibration import calibration
from hwmodels.device import DTYPE_BYTES, Device
from hwmodels.errors import InvalidValueError

#: Memory levels, outermost first.
LEVELS = ("hbm", "l2", "smem")
LEVEL_LABELS = MappingProxyType({"hbm": "device memory", "l2": "L2", "smem": "shared memory"})


@dataclass(frozen=True)
class Ceiling:
    """A memory-bandwidth roof: the slanted line ``I * bytes_per_s``."""

    level: str
    bytes_per_s: float
    source_kind: str  # "datasheet", "measured" or "derived"


@dataclass(frozen=True)
class Roofline:
    """The roofs of one device for one dtype."""

    device: Device
    dtype: str
    peak_flops_per_s: float
    ceilings: tuple[Ceiling, ...]
    calibrated: bool

    def ceiling(self, level: str) -> Ceiling:
        for c in self.ceilings:
            if c.level == level:
                return c
        have = ", ".join(c.level for c in self.ceilings)
        raise InvalidValueError(f"{self.device.name} has no {level!r} roof; it has: {have}")

    def ridge_point(self, level: str = "hbm") -> float:
        """FLOP/byte where the ``level`` roof meets the compute roof."""
        return self.peak_flops_per_s / self.ceiling(level).bytes_per_s

    def attainable_flops_per_s(self, intensity, level: str = "hbm"):
        """``min(P, I * B_level)``, elementwise over an array of intensities (FLOP/byte)."""
        intensity = np.asarray(intensity, dtype=float)
        if np.any(intensity < 0):
            raise InvalidValueError("arithmetic intensity must be non-negative")
        return np.minimum(self.peak_flops_per_s, intensity * self.ceiling(level).bytes_per_s)


def roofline(device: Device, dtype: str = "bf16", calibrated: bool = False) -> Roofline:
    """The roofs of ``device`` for ``dtype``: HBM, L2 (where known) and shared memory.

    Datasheets give no L2 bandwidth, so the L2 roof is always the measured one
    (or its same-vendor fallback, marked ``derived``; none where no device of the
    vendor has a measurement); the shared-memory roof is derived from banks x
    clock x SMs.
    """
    cal = calibration(device)
    peak = device.peak(dtype)
    hbm = device.hbm_bytes_per_s
    hbm_kind = device.provenance["hbm_bytes_per_s"].source.kind if "hbm_bytes_per_s" in device.provenance else "user"
    if calibrated:
        peak *= cal.gemm_fraction[dtype.lower()]
        hbm *= cal.hbm_fraction
        hbm_kind = cal.provenance["hbm_fraction"].source.kind
    ceilings = [Ceiling("hbm", hbm, hbm_kind)]
    if cal.l2_bytes_per_s is not None:
        ceilings.append(Ceiling("l2", cal.l2_bytes_per_s, cal.provenance["l2_bytes_per_s"].source.kind))
    if device.smem_bytes_per_s is not None:
        ceilings.append(Ceiling("smem", device.smem_bytes_per_s, "derived"))
    return Roofline(device=device, dtype=dtype.lower(), peak_flops_per_s=peak, ceilings=tuple(ceilings), calibrated=calibrated)


@dataclass(frozen=True)
class Operation:
    """An operation's cost record: FLOPs and the bytes it moves at each memory level.

    Only ``hbm`` bytes are required; a level left out is not counted (an
    operation whose L2 or shared-memory traffic is unknown is placed on the
    device-memory roof alone).
    """

    name: str
    flops: float
    bytes_by_level: Mapping[str, float]
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bytes_by_level", MappingProxyType(dict(self.bytes_by_level)))
        if not self.flops >= 0:
            raise InvalidValueError(f"operation {self.name!r}: flops must be non-negative, got {self.flops!r}")
        if "hbm" not in self.bytes_by_level:
            raise InvalidValueError(f"operation {self.name!r}: needs its device-memory ('hbm') bytes")
        for level, n in self.bytes_by_level.items():
            if level not in LEVELS:
                raise InvalidValueError(f"operation {self.name!r}: unknown level {level!r}; known: {', '.join(LEVELS)}")
            if not n > 0:
                raise InvalidValueError(f"operation {self.name!r}: {level} bytes must be positive, got {n!r}")

    @property
    def hbm_bytes(self) -> float:
        return self.bytes_by_level["hbm"]

    @classmethod
    def gemm(cls, name: str, m: int, n: int, k: int, dtype: str = "bf16", out_dtype: str | None = None) -> "Operation":
        """``C[m,n] = A[m,k] @ B[k,n]``: 2mnk FLOPs; each operand read once from device memory.

        The single-pass byte count is the minimum traffic (perfect reuse in
        on-chip memory), the usual roofline convention for a GEMM.
        """
        for dim, v in (("m", m), ("n", n), ("k", k)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise InvalidValueError(f"gemm {name!r}: {dim} must be a positive integer, got {v!r}")
        e_in, e_out = DTYPE_BYTES[dtype], DTYPE_BYTES[out_dtype or dtype]
        return cls(name, 2.0 * m * n * k, {"hbm": (m * k + k * n) * e_in + m * n * e_out}, dtype)


@dataclass(frozen=True)
class Placement:
    """Where an operation sits on a roofline, and why it takes the time it does."""

    operation: Operation
    device: str
    dtype: str
    calibrated: bool
    compute_time_s: float
    memory_time_s: Mapping[str, float]
    intensity: Mapping[str, float] = field(default_factory=dict)

    @property
    def time_s(self) -> float:
        return max(self.compute_time_s, *self.memory_time_s.values())

    @property
    def level(self) -> str:
        """The memory level with the largest time: the binding roof if memory-bound,
        else the next roof the operation would hit."""
        return max(self.memory_time_s, key=self.memory_time_s.get)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_time_s >= self.memory_time_s[self.level] else "memory"

    @property
    def attainable_flops_per_s(self) -> float:
        return self.operation.flops / self.time_s if self.time_s > 0 else 0.0

    def as_dict(self) -> dict:
        op = self.operation
        return {
            "name": op.name,
            "device": self.device,
            "dtype": self.dtype,
            "calibrated": self.calibrated,
            "flops": op.flops,
            "bytes": dict(op.bytes_by_level),
            "intensity_flops_per_byte": dict(self.intensity),
            "time_s": self.time_s,
            "compute_time_s": self.compute_time_s,
            "memory_time_s": dict(self.memory_time_s),
            "bound": self.bound,
            "level": self.level,
            "attainable_flops_per_s": self.attainable_flops_per_s,
        }


def place(op: Operation, rf: Roofline) -> Placement:
    """Place ``op`` on roofline ``rf``: time per roof, the binding one, and intensities.

    The roofline's dtype must match the operation's, since the compute roof is per dtype.
    """
    if op.dtype.lower() != rf.dtype:
        raise InvalidValueError(f"operation {op.name!r} is {op.dtype} but the roofline is {rf.dtype}")
    available = {c.level: c.bytes_per_s for c in rf.ceilings}
    memory_time = {lvl: n / available[lvl] for lvl, n in op.bytes_by_level.items() if lvl in available}
    return Placement(
        operation=op,
        device=rf.device.name,
        dtype=rf.dtype,
        calibrated=rf.calibrated,
        compute_time_s=op.flops / rf.peak_flops_per_s,
        memory_time_s=MappingProxyType(memory_time),
        intensity=MappingProxyType({lvl: op.flops / n for lvl, n in op.bytes_by_level.items()}),
    )

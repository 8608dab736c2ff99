"""Weight-only quantized GEMMs (W4A16): the dequantization a kernel issues, in series with its loads.

A weight-only GEMM reads narrow weights and widens them to the activations'
16 bits on the CUDA cores before its tensor-core MMAs. At decode sizes the
kernel is neither memory- nor issue-bound: our H100 run profiled tinygemm
(gpt-fast's int4 kernel) at DRAM 49% and issue slots 52% busy, with a time
equal to the *sum* of its load time and its issue time (17.7 us of loads
at the read-stream rate + 18.6 us of issue against 35.7-36.2 us measured,
Llama-2-7B gate_up at one token): it does not overlap the two. So, per op:

    memory_s  = (bytes + group scales and zeros) / read-stream bandwidth
    dequant_s = weights x ceil(rows / rows_per_tile) x warp_instructions_per_weight
                / (4 x sm_count x clock_hz)
    time_s    = max(compute_s, memory_s + dequant_s) + overhead_s

with ``warp_instructions_per_weight`` measured once (Nsight Compute) and the
issue rate of four warp instructions per clock per SM (four schedulers per SM
on every NVIDIA architecture since Volta, one instruction each per clock; the
CUDA C++ Programming Guide's compute-capability tables), so the same kernel on
another device costs what that device's SMs and clock allow. The group
scales and zeros (two bf16 per ``group_size`` weights) are read too.

Only 4-bit weights have a measured kernel (``sim/data/kernels/weight_only.toml``).
Other weight-only widths are costed by their bytes alone and the op's note says
that their dequantization is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from hwmodels.datafile import Sourced, load_toml, read_sourced, read_sources
from hwmodels.device import Device
from hwmodels.errors import DataFileError

DATA = resources.files("sim") / "data" / "kernels" / "weight_only.toml"
WARP_ISSUE_PER_CLOCK_PER_SM = 4


@dataclass(frozen=True)
class DequantKernel:
    """A weight-only GEMM kernel's measured dequantization work."""

    weight_bits: int
    kernel: str
    group_size: int
    rows_per_tile: int
    warp_instructions_per_weight: float
    provenance: tuple[Sourced, ...]

    @property
    def scale_bytes_per_weight(self) -> float:
        """A bf16 scale and a bf16 zero per group."""
        return 4.0 / self.group_size


@lru_cache(maxsize=1)
def kernels() -> dict[int, DequantKernel]:
    with resources.as_file(DATA) as path:
        doc = load_toml(path)
        sources = read_sources(doc, path)
        out = {}
        for section, bits in (("int4", 4),):
            table = doc.get(section)
            if table is None:
                continue
            if not isinstance(table.get("kernel"), str):
                raise DataFileError(path, f"{section}.kernel", "missing: name the kernel these figures are of")
            values = {key: read_sourced(table, key, path, sources, prefix=f"{section}.", integer=key != "warp_instructions_per_weight")
                      for key in ("group_size", "rows_per_tile", "warp_instructions_per_weight")}
            out[bits] = DequantKernel(
                weight_bits=bits, kernel=table["kernel"], group_size=int(values["group_size"].value),
                rows_per_tile=int(values["rows_per_tile"].value),
                warp_instructions_per_weight=float(values["warp_instructions_per_weight"].value),
                provenance=tuple(values.values()),
            )
    return out


def dequant_kernel(weight_bits: int) -> DequantKernel | None:
    return kernels().get(weight_bits)


def dequant_s(weights, rows, kernel: DequantKernel, device: Device) -> np.ndarray:
    """Issue time of the dequantization: every weight once per ``rows_per_tile`` token rows."""
    tiles = np.ceil(np.maximum(np.asarray(rows, dtype=float), 1.0) / kernel.rows_per_tile)
    instructions = np.asarray(weights, dtype=float) * tiles * kernel.warp_instructions_per_weight
    return instructions / (WARP_ISSUE_PER_CLOCK_PER_SM * device.sm_count * device.clock_hz)

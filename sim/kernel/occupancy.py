"""How many CTAs of a kernel fit on one SM at once, as the CUDA occupancy calculator computes it.

With ``W = ceil(threads / warp_size)`` warps per CTA::

    by_threads = floor(max_warps_per_sm / W)                       (max_warps = max_threads_per_sm / warp_size)
    regs_warp  = ceil(regs * warp_size / 256) * 256                 (register allocation unit: 256 per warp)
    by_regs    = floor(floor(registers_per_sm / regs_warp) / 4) * 4 // W
                                                                    (warps allocated 4 at a time: one per SM sub-partition)
    smem_cta   = ceil((smem + reserved) / unit) * unit              (reserved: 1 KiB per CTA from cc 8.0; unit 128 B
                                                                     from cc 8.0, 256 B before)
    by_smem    = floor(smem_per_sm / smem_cta)
    ctas       = min(by_threads, by_regs, by_smem, max_ctas_per_sm)

Sources: the CUDA Occupancy Calculator spreadsheet and ``cudaOccupancyMaxActiveBlocksPerMultiprocessor``
(register allocation unit 256, warp allocation granularity 4, shared-memory allocation unit and the
runtime's 1 KiB per-block reservation), and the CUDA C++ Programming Guide, "Compute Capabilities",
table "Technical Specifications per Compute Capability" (1024 threads per block at most; the
per-block shared-memory maximum is the per-SM capacity less the 1 KiB reservation, e.g. 163 KiB of
164 KiB on cc 8.0, 227 KiB of 228 KiB on cc 9.0). ``smem_per_sm_bytes`` is the device's largest
shared-memory carve-out, so the limit assumes the kernel asks for it (``cudaFuncAttributePreferredSharedMemoryCarveout``).
AMD devices follow the same formula with their own warp (wavefront) size: a first approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwmodels.device import Device
from hwmodels.errors import InvalidValueError

MAX_THREADS_PER_CTA = 1024  # every compute capability since 2.0 (CUDA guide, technical specifications)
REG_ALLOC_UNIT = 256  # registers allocated per warp in units of 256 (occupancy calculator, cc >= 5.0)
WARP_ALLOC_GRANULARITY = 4  # register-limited warps per SM counted in fours (one per sub-partition)


@dataclass(frozen=True)
class Occupancy:
    """CTAs per SM and which limit set it, with each limit's value."""

    ctas_per_sm: int
    limited_by: str
    by_threads: int
    by_regs: int
    by_smem: int
    by_ctas: int


def _cc(device: Device) -> float:
    try:
        return float(device.compute_capability)
    except ValueError:
        return 0.0


def smem_reserved_bytes(device: Device) -> int:
    """Shared memory the CUDA runtime keeps per CTA: 1 KiB from compute capability 8.0."""
    return 1024 if device.vendor.lower() == "nvidia" and _cc(device) >= 8.0 else 0


def smem_alloc_unit_bytes(device: Device) -> int:
    """Shared-memory allocation granularity: 128 B from compute capability 8.0, 256 B before."""
    return 128 if _cc(device) >= 8.0 else 256


def occupancy(device: Device, threads: int, regs: int, smem_bytes: int = 0, name: str = "kernel") -> Occupancy:
    """CTAs of (``threads``, ``regs`` per thread, ``smem_bytes``) resident per SM of ``device``.

    Raises InvalidValueError, naming the limit, when one CTA cannot fit on an SM at all.
    """
    where = f"{name} on {device.name}"
    for field in ("warp_size", "max_threads_per_sm", "registers_per_sm", "smem_per_sm_bytes", "max_ctas_per_sm"):
        if getattr(device, field) is None:
            raise InvalidValueError(f"{where}: the device has no {field}, so occupancy is unknown")
    if threads < 1 or regs < 1 or smem_bytes < 0:
        raise InvalidValueError(f"{where}: threads and regs must be >= 1 and smem >= 0, got {threads}, {regs}, {smem_bytes}")
    if threads > min(MAX_THREADS_PER_CTA, device.max_threads_per_sm):
        raise InvalidValueError(
            f"{where}: {threads} threads per CTA exceed the limit of {min(MAX_THREADS_PER_CTA, device.max_threads_per_sm)}"
        )
    max_regs = device.max_registers_per_thread or 255
    if regs > max_regs:
        raise InvalidValueError(f"{where}: {regs} registers per thread exceed the limit of {max_regs}")
    ws = device.warp_size
    warps = -(-threads // ws)
    by_threads = (device.max_threads_per_sm // ws) // warps
    regs_warp = -(-regs * ws // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    reg_warps = (device.registers_per_sm // regs_warp) // WARP_ALLOC_GRANULARITY * WARP_ALLOC_GRANULARITY
    by_regs = reg_warps // warps
    if by_regs == 0:
        raise InvalidValueError(
            f"{where}: {threads} threads x {regs} registers ({warps * regs_warp} allocated) exceed the "
            f"{device.registers_per_sm} registers per SM"
        )
    unit = smem_alloc_unit_bytes(device)
    smem_cta = -(-(smem_bytes + smem_reserved_bytes(device)) // unit) * unit
    by_smem = int(device.smem_per_sm_bytes // smem_cta)
    if by_smem == 0:
        limit = int(device.smem_per_sm_bytes) - smem_reserved_bytes(device)
        raise InvalidValueError(
            f"{where}: {smem_bytes} bytes of shared memory per CTA exceed the {limit}-byte limit per CTA "
            f"({int(device.smem_per_sm_bytes)} per SM less {smem_reserved_bytes(device)} reserved)"
        )
    limits = {"threads": by_threads, "registers": by_regs, "shared memory": by_smem, "CTAs per SM": device.max_ctas_per_sm}
    ctas = min(limits.values())
    limited_by = next(k for k, v in limits.items() if v == ctas)
    return Occupancy(ctas, limited_by, by_threads, by_regs, by_smem, device.max_ctas_per_sm)

"""Cycle-level kernel simulation: CTAs, occupancy, a block scheduler and shared bandwidth.

What exists:

- :mod:`sim.kernel.program`: a stream of kernels as flat struct-of-arrays CTA
  phase lists (load from HBM/L2, tensor-core or CUDA-core math, store,
  signal/wait on a flag), written with :class:`ProgramBuilder`; ``ctas(n, ...)``
  builds many CTAs at once, with per-CTA arrays for heterogeneous grids.
- :mod:`sim.kernel.occupancy`: CTAs per SM from threads, registers and shared
  memory, as the CUDA occupancy calculator computes it.
- :mod:`sim.kernel.engine`: :func:`simulate`, the fluid discrete-event model
  (numba-compiled event loop in :mod:`sim.kernel._core`) returning cycles,
  seconds, per-CTA placement and times, achieved bytes/s and FLOP/s, SM
  utilisation over time and the tail fraction.

Planned, not here yet: schedules for FlashDecoding (split-KV + combine), Lean
attention / stream-K and FlashAttention-2 written as programs; wiring the
engine into :mod:`sim.attention` / :mod:`sim.cost` as further kernel models; a
fixed-latency phase (first-byte latency, barriers); overlap inside one CTA
(asynchronous copies, warp specialisation); L2 hit rates derived from
footprints instead of given per load; overlapping kernels (programmatic
dependent launch) and several streams.
"""

from sim.kernel.engine import DeadlockError, KernelSimResult, rates, simulate
from sim.kernel.occupancy import Occupancy, occupancy
from sim.kernel.program import (
    KernelLaunch,
    Phase,
    Program,
    ProgramBuilder,
    fma,
    load,
    load_l2,
    mma,
    signal,
    store,
    wait,
)

__all__ = [
    "DeadlockError",
    "KernelLaunch",
    "KernelSimResult",
    "Occupancy",
    "Phase",
    "Program",
    "ProgramBuilder",
    "fma",
    "load",
    "load_l2",
    "mma",
    "occupancy",
    "rates",
    "signal",
    "simulate",
    "store",
    "wait",
]

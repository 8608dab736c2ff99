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
- :mod:`sim.kernel.schedules`: FlashAttention-2, split-KV (FlashDecoding),
  LeanAttention, tree, cascade, ring-step and GEMM written as programs, with
  load/compute overlap inside a CTA (``stages=2``) and fixed latencies
  (``delay`` phases).
- :mod:`sim.kernel.validation`: the schedules against kernelab's own H100 run.

Planned, not here yet: a pipelined CTA's delay phases; warp specialisation;
L2 hit rates derived from footprints instead of given per load; overlapping
kernels (programmatic dependent launch) and several streams.
"""

from sim.kernel.engine import DeadlockError, KernelSimResult, rates, simulate
from sim.kernel.occupancy import Occupancy, occupancy
from sim.kernel.program import (
    KernelLaunch,
    Phase,
    Program,
    ProgramBuilder,
    delay,
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
    "delay",
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

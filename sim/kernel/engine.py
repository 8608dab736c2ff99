"""Cycle-level simulation of a stream of kernels: a fluid (processor-sharing) discrete-event model.

Time is kept in SM clock cycles (``device.clock_hz``). The semantics:

- **Occupancy.** Kernel ``k`` holds at most ``occ_k`` CTAs per SM
  (:func:`sim.kernel.occupancy.occupancy`, CUDA occupancy calculator).
- **Block scheduler.** CTAs are dispatched in launch order whenever a slot is
  free, each to the SM with the fewest resident CTAs (lowest SM index on ties),
  so the first wave is spread breadth-first (CTA ``i`` on SM ``i``) and later
  CTAs take the slot that freed.
- **Phases.** A resident CTA of a kernel with ``stages = 1`` (the default)
  runs its phases in order, one at a time (no overlap inside the CTA; overlap
  comes from the other CTAs on the SM).
- **Stages** (``KernelLaunch.stages = s >= 2``: ``s`` shared-memory buffers,
  cp.async multistage / TMA pipelines). A CTA's phase list is cut by its
  *fences* (STORE, SIGNAL, WAIT) into *segments*; inside a segment, each LOAD
  ``L_g`` opens *group* ``g``: ``L_g`` and the MMA/FMA phases after it up to
  the next LOAD (``C_g``); the MMA/FMA phases before the segment's first LOAD
  are group 0 (compute on data already in shared memory, as if loaded by a
  ``L_0`` that took no time). The dependencies, nothing else:

  * ``L_g`` starts when ``L_{g-1}`` has finished (one load in flight per CTA,
    in order) and every phase of group ``g - s`` has finished (its buffer is
    free): at most ``s - 1`` loads run ahead of the compute that consumes
    them;
  * a compute phase of ``C_g`` starts when ``L_g`` and the phase before it
    have finished (compute in order, one at a time);
  * a fence starts when every earlier phase has finished, and every later
    phase starts after it.

  So ``s = 1`` is the serial CTA above, and a CTA alone on the GPU running
  ``(L_1, M_1), ..., (L_n, M_n)`` with ``s = 2`` takes ``l_1 + sum_{i=2..n}
  max(l_i, m_{i-1}) + m_n`` (tested). Loads and compute of one CTA run
  beside each other on different resources (HBM/L2 and the SM's pipes), each
  as one flow, shared with the other CTAs' flows as below.
- **HBM.** Loads (the ``1 - l2_hit`` part) and stores are flows that share the
  achievable HBM bandwidth ``B = hbm_bytes_per_s * hbm_read_fraction / clock_hz``
  bytes/cycle equally: with ``n`` flows each gets ``min(cap, B / n)``.
  ``hbm_read_fraction`` is the calibration's read-only stream figure
  (BabelStream Dot on H100 SXM: 3.18 TB/s, against Triad 2.97), since the
  kernels simulated here stream reads (K/V, GEMM operands) and write little;
  a device without it uses its stream (triad) fraction. Stores are charged at
  the same rate, which is optimistic for write-heavy kernels by up to the
  read/triad ratio (7% on H100 SXM).
- **L2.** The ``l2_hit`` part of a load shares ``l2_bytes_per_s / clock_hz``
  the same way, at the same time as its HBM part; the load ends when both do.
- **Per-load cap.** ``cap`` is infinite by default (one CTA alone can draw the
  whole bandwidth). With ``load_bytes_in_flight=X`` it is set by Little's law,
  ``cap = X / latency``: ``dram_latency_cycles`` for HBM and
  ``l2_latency_cycles`` for L2 flows (calibration measurements); ``X`` is the
  bytes a CTA keeps in flight (its pipeline stages' tile bytes), which the
  schedule, not the device, knows. The cap is per flow (per CTA), not per SM.
- **Tensor cores.** An MMA phase of ``F`` FLOPs in ``dtype`` is
  ``F / R_dtype`` cycles of its SM's tensor pipe, ``R_dtype =
  peak(dtype) * gemm_fraction[dtype] / sm_count / clock_hz`` FLOP/cycle; the
  phases resident on one SM share the pipe equally (``n`` phases: each at
  ``1/n``), dtypes mixed freely. A kernel marked ``mma_sync``
  (:class:`~sim.kernel.program.KernelLaunch`) issues Ampere-style ``mma.sync``
  and runs at ``R_dtype * mma_sync_fraction`` (calibration: 2/3 on Hopper,
  1 before it). A kernel marked ``one_math_pipe`` puts its CUDA-core phases on
  the tensor pipe's server (their time still computed at the CUDA-core rate),
  so the math of all its CTAs on an SM runs one at a time: FlashAttention-2's
  softmax and matmuls add up instead of overlapping across co-resident CTAs,
  which needs the explicit warpgroup ping-pong of FlashAttention-3 (Shah et
  al., 2024, section 3.1).
- **CUDA cores.** An FMA phase is ``F / (peak(fp32) / sm_count / clock_hz)``
  cycles of the SM's CUDA-core pipe, shared the same way (datasheet peak, no
  calibration fraction: there is no measured non-GEMM fp32 figure).
- **Delays.** A DELAY phase of ``c`` cycles ends ``c`` cycles after it starts
  and uses no resource (a dependent round trip such as a loop of loads that
  each wait for the last, a barrier); kernels with ``stages = 1`` only.
- **Flags.** SIGNAL adds to a program-wide counter at once; WAIT blocks,
  holding its slot, until the counter reaches its count.
- **Stream.** Kernel ``k`` starts ``launch`` after kernel ``k-1`` ends (the
  first ``launch`` after 0): ``launch="kernel"`` uses calibration
  ``kernel_launch_s``, ``"graph"`` ``graph_launch_s``, a number is seconds.
  Kernels never overlap.
- **Order.** Flows finishing at the same time (within 1e-12 relative) complete
  together; the CTAs they free are advanced in (SM index, CTA index) order, so
  the same program gives the same result bit for bit.
- **Deadlock.** When CTAs are left but no flow is active (every resident CTA
  waits, and the CTAs that would signal cannot become resident or do not
  exist) :class:`DeadlockError` names a waiting CTA, its flag and counts; a
  wait for more than the program ever signals is refused before running.

No phase finishes faster than its resource allows and resources never exceed
their capacity, so the result respects the roofline bound
``cycles >= max(HBM bytes / B, L2 bytes / B_L2, tensor cycles / sm_count, CUDA cycles / sm_count)``.
More SMs or more bandwidth never slow down a grid of identical CTAs (tested);
grids of uneven CTAs can show list-scheduling anomalies (Graham, 1969) of a
few percent, as greedy in-order dispatch does on real GPUs too.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass

import numpy as np

from hwmodels.calibration import Calibration, calibration as _calibration
from hwmodels.device import DTYPES, Device
from hwmodels.errors import InvalidValueError, KernelabError
from sim.kernel import _core
from sim.kernel.occupancy import occupancy
from sim.kernel.program import FMA, LOAD, MMA, SIGNAL, STORE, WAIT, Program


class DeadlockError(KernelabError, RuntimeError):
    """A program whose CTAs wait on flags that can never be signalled."""


@dataclass(frozen=True)
class Rates:
    """Per-cycle capacities the engine uses for one device (see the module docstring)."""

    clock_hz: float
    hbm_bytes_per_cycle: float
    l2_bytes_per_cycle: float | None
    tensor_flops_per_cycle_per_sm: dict  # dtype -> FLOP/cycle on one SM
    mma_sync_fraction: float  # of the tensor rate, for kernels that issue mma.sync
    cuda_flops_per_cycle_per_sm: float
    hbm_flow_cap: float  # bytes/cycle per load, inf when uncapped
    l2_flow_cap: float
    launch_cycles: float


def rates(device: Device, cal: Calibration | None = None, launch="kernel", load_bytes_in_flight: float | None = None) -> Rates:
    cal = cal or _calibration(device)
    clk = device.clock_hz
    tensor = {d: device.peak(d) * cal.gemm_fraction[d] / device.sm_count / clk for d in device.dtypes if d in cal.gemm_fraction}
    if "fp32" not in device.peak_flops_per_s:
        raise InvalidValueError(f"{device.name} has no fp32 peak, so CUDA-core phases have no rate")
    if launch == "kernel":
        launch_s = cal.kernel_launch_s
    elif launch == "graph":
        launch_s = cal.graph_launch_s
    elif isinstance(launch, (int, float)) and not isinstance(launch, bool) and launch >= 0:
        launch_s = float(launch)
    else:
        raise InvalidValueError(f"launch must be 'kernel', 'graph' or seconds >= 0, got {launch!r}")
    if launch_s is None:
        raise InvalidValueError(f"{device.name} has no measured {launch} launch cost; pass launch=<seconds>")
    hbm_flow = l2_flow = np.inf
    if load_bytes_in_flight is not None:
        if not load_bytes_in_flight > 0:
            raise InvalidValueError(f"load_bytes_in_flight must be positive, got {load_bytes_in_flight!r}")
        if cal.dram_latency_cycles is None:
            raise InvalidValueError(f"{device.name} has no DRAM latency, so a Little's-law load cap cannot be set")
        hbm_flow = load_bytes_in_flight / cal.dram_latency_cycles
        l2_flow = load_bytes_in_flight / cal.l2_latency_cycles if cal.l2_latency_cycles else np.inf
    return Rates(
        clock_hz=clk,
        hbm_bytes_per_cycle=cal.achievable_hbm_read_bytes_per_s(device) / clk,
        l2_bytes_per_cycle=cal.l2_bytes_per_s / clk if cal.l2_bytes_per_s else None,
        tensor_flops_per_cycle_per_sm=tensor,
        mma_sync_fraction=cal.mma_sync_fraction,
        cuda_flops_per_cycle_per_sm=device.peak("fp32") / device.sm_count / clk,
        hbm_flow_cap=hbm_flow,
        l2_flow_cap=l2_flow,
        launch_cycles=launch_s * clk,
    )


@dataclass(frozen=True, eq=False)
class KernelSimResult:
    """What a simulated stream did. Times in cycles unless the name says seconds.

    ``tail_fraction``: for a kernel of ``N`` CTAs with ``W = sm_count * occupancy``
    slots, the *last partial wave* is the CTAs from launch index ``floor(N / W) * W``
    on, when ``N > W`` and ``N mod W != 0`` (otherwise there is none: a grid that
    fits in one wave, or a whole number of waves, has no tail). Its tail time is
    ``kernel end - dispatch time of the first CTA of that wave``; the program's
    tail fraction is the sum of its kernels' tail times over the total cycles.
    """

    device: str
    clock_hz: float
    sm_count: int
    cycles: float
    kernel_names: tuple[str, ...]
    kernel_occupancy: np.ndarray
    kernel_start: np.ndarray
    kernel_end: np.ndarray
    kernel_tail_cycles: np.ndarray
    cta_kernel: np.ndarray
    cta_sm: np.ndarray
    cta_start: np.ndarray
    cta_end: np.ndarray
    hbm_bytes: float
    l2_bytes: float
    mma_flops: float
    fma_flops: float
    events: int
    wall_s: float

    @property
    def seconds(self) -> float:
        return self.cycles / self.clock_hz

    @property
    def flops(self) -> float:
        return self.mma_flops + self.fma_flops

    def _per_s(self, amount: float) -> float:
        return amount / self.seconds if self.cycles > 0 else 0.0

    @property
    def achieved_hbm_bytes_per_s(self) -> float:
        return self._per_s(self.hbm_bytes)

    @property
    def achieved_l2_bytes_per_s(self) -> float:
        return self._per_s(self.l2_bytes)

    @property
    def achieved_flops_per_s(self) -> float:
        return self._per_s(self.flops)

    @property
    def tail_fraction(self) -> float:
        return float(self.kernel_tail_cycles.sum() / self.cycles) if self.cycles > 0 else 0.0

    def utilisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Busy SMs (at least one resident CTA) as a step function: ``busy[i]`` holds from ``times[i]``."""
        return sm_utilisation(self.cta_sm, self.cta_start, self.cta_end)

    @property
    def mean_sm_utilisation(self) -> float:
        """Time-average of busy SMs / ``sm_count`` over the whole stream (launch gaps count as idle)."""
        t, busy = self.utilisation()
        if self.cycles <= 0 or len(t) == 0:
            return 0.0
        widths = np.diff(np.append(t, self.cycles))
        return float(np.sum(widths * busy) / (self.sm_count * self.cycles))


def sm_utilisation(cta_sm, cta_start, cta_end) -> tuple[np.ndarray, np.ndarray]:
    """Step function of busy SMs from CTA residency intervals (a CTA replaced at once keeps its SM busy)."""
    n = len(cta_sm)
    if n == 0:
        return np.zeros(1), np.zeros(1, np.int64)
    t = np.concatenate([cta_start, cta_end])
    d = np.concatenate([np.ones(n, np.int64), -np.ones(n, np.int64)])
    sm = np.concatenate([cta_sm, cta_sm])
    order = np.lexsort((-d, t, sm))
    t, d = t[order], d[order]
    count = np.cumsum(d)  # each SM's events sum to 0, so a global cumsum is per SM
    prev = count - d
    up = (prev == 0) & (count > 0)
    down = (prev > 0) & (count == 0)
    tt = np.concatenate([t[up], t[down]])
    dd = np.concatenate([np.ones(up.sum(), np.int64), -np.ones(down.sum(), np.int64)])
    o = np.argsort(tt, kind="stable")
    tt, busy = tt[o], np.cumsum(dd[o])
    last = np.r_[np.flatnonzero(np.diff(tt)), len(tt) - 1]
    times, busy = tt[last], busy[last]
    if times[0] > 0:
        times, busy = np.r_[0.0, times], np.r_[0, busy]
    return times, busy


def _check_flags(program: Program) -> None:
    """Refuse a wait for more than all the program's signals add to its flag."""
    if program.n_flags == 0:
        return
    sig = program.kind == SIGNAL
    total = np.bincount(program.flag[sig], weights=program.amount[sig], minlength=program.n_flags)
    waits = np.flatnonzero(program.kind == WAIT)
    bad = waits[program.amount[waits] > total[program.flag[waits]]]
    if bad.size:
        ph = bad[0]
        cta = int(np.searchsorted(program.cta_ptr, ph, side="right") - 1)
        f = int(program.flag[ph])
        raise DeadlockError(
            f"CTA {cta} waits for flag {f} to reach {int(program.amount[ph])}, but the program signals it "
            f"only {int(total[f])} time(s) in all"
        )


def simulate(
    program: Program,
    device: Device,
    *,
    cal: Calibration | None = None,
    launch="kernel",
    load_bytes_in_flight: float | None = None,
) -> KernelSimResult:
    """Run ``program`` on ``device``; see the module docstring for the model."""
    r = rates(device, cal, launch, load_bytes_in_flight)
    occ = np.array(
        [occupancy(device, k.threads, k.regs, k.smem_bytes, name=f"kernel {k.name!r}").ctas_per_sm for k in program.kernels],
        np.int64,
    )
    kind, amount, hit = program.kind, program.amount, program.l2_hit
    a = amount.copy()
    b = np.zeros_like(amount)
    loads = kind == LOAD
    a[loads] = amount[loads] * (1.0 - hit[loads])
    b[loads] = amount[loads] * hit[loads]
    if r.l2_bytes_per_cycle is None and np.any(b > 0):
        raise InvalidValueError(f"{device.name} has no L2 bandwidth measurement, so loads with L2 hits have no rate")
    mma_ph = np.flatnonzero(kind == MMA)
    if mma_ph.size:
        per_dtype = np.full(len(DTYPES), np.nan)
        for d, v in r.tensor_flops_per_cycle_per_sm.items():
            per_dtype[DTYPES.index(d)] = v
        rate = per_dtype[program.dtype[mma_ph]]
        if np.any(np.isnan(rate)):
            missing = sorted({DTYPES[i] for i in program.dtype[mma_ph][np.isnan(rate)]})
            raise InvalidValueError(f"{device.name} has no tensor-core peak for {', '.join(missing)}")
        a[mma_ph] = amount[mma_ph] / rate
    fma_ph = kind == FMA
    a[fma_ph] = amount[fma_ph] / r.cuda_flops_per_cycle_per_sm
    if any(k.mma_sync or k.one_math_pipe for k in program.kernels):
        phase_kernel = np.repeat(np.repeat(np.arange(len(program.kernels)), np.diff(program.kernel_ptr)), np.diff(program.cta_ptr))
    if any(k.mma_sync for k in program.kernels) and r.mma_sync_fraction != 1.0:
        slow = np.array([k.mma_sync for k in program.kernels])[phase_kernel] & (kind == MMA)
        a[slow] /= r.mma_sync_fraction
    if any(k.one_math_pipe for k in program.kernels):
        kind = kind.copy()  # amounts are already pipe cycles: an FMA phase on the tensor pipe's server keeps its time
        kind[np.array([k.one_math_pipe for k in program.kernels])[phase_kernel] & fma_ph] = MMA
    _check_flags(program)

    t0 = _time.perf_counter()
    status, info, cta_sm, cta_start, cta_end, k_start, k_end, events = _core.run_core(
        kind, a, b, program.flag, program.cta_ptr, program.kernel_ptr, occ,
        np.array([k.stages for k in program.kernels], np.int64), r.launch_cycles,
        device.sm_count, r.hbm_bytes_per_cycle, r.l2_bytes_per_cycle or 0.0, r.hbm_flow_cap, r.l2_flow_cap,
        program.n_flags,
    )
    wall = _time.perf_counter() - t0
    if status == _core.DEADLOCK:
        c, f, want, have = (int(x) for x in info)
        kern = int(np.searchsorted(program.kernel_ptr, c, side="right") - 1)
        name = program.kernels[kern].name
        if f >= 0:
            raise DeadlockError(
                f"deadlock in kernel {name!r}: CTA {c} waits for flag {f} to reach {want} (it is at {have}) and no "
                f"running CTA can signal it; the signalling CTAs cannot become resident "
                f"({occ[kern]} CTAs per SM x {device.sm_count} SMs are all waiting) or run in a later kernel"
            )
        raise DeadlockError(f"deadlock in kernel {name!r}: CTA {c} could not be scheduled")

    cost = program.cost()
    cta_kernel = np.repeat(np.arange(len(program.kernels)), np.diff(program.kernel_ptr))
    tails = np.zeros(len(program.kernels))
    for k in range(len(program.kernels)):
        n, w = program.kernels[k].ctas, device.sm_count * occ[k]
        if n > w and n % w:
            first = program.kernel_ptr[k] + (n // w) * w
            tails[k] = k_end[k] - cta_start[first]
    total = float(k_end[-1]) if len(k_end) else 0.0
    return KernelSimResult(
        device=device.name,
        clock_hz=device.clock_hz,
        sm_count=device.sm_count,
        cycles=total,
        kernel_names=tuple(k.name for k in program.kernels),
        kernel_occupancy=occ,
        kernel_start=k_start,
        kernel_end=k_end,
        kernel_tail_cycles=tails,
        cta_kernel=cta_kernel,
        cta_sm=cta_sm,
        cta_start=cta_start,
        cta_end=cta_end,
        hbm_bytes=cost["hbm_load_bytes"] + cost["store_bytes"],
        l2_bytes=cost["l2_load_bytes"],
        mma_flops=cost["mma_flops"],
        fma_flops=cost["fma_flops"],
        events=int(events),
        wall_s=wall,
    )

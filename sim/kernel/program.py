"""What a stream of kernels does, as flat arrays the engine reads.

A :class:`Program` is the kernels of one stream, in launch order. Each
:class:`KernelLaunch` is a grid of CTAs with the resources that set its
occupancy (threads, registers per thread, shared memory per CTA). Every CTA
runs a list of *phases* in order; the phases of all CTAs of the program are
stored flat, struct-of-arrays, with a CSR offset per CTA:

==========  ===================  ============================================
kind        ``amount``           meaning
==========  ===================  ============================================
``LOAD``    bytes                read from memory; ``l2_hit`` of the bytes come
                                 from L2, the rest from HBM (both at once)
``MMA``     FLOPs                tensor-core math in ``dtype``
``FMA``     FLOPs                CUDA-core (fp32 pipe) math
``STORE``   bytes                write to HBM
``SIGNAL``  increment            add ``amount`` to counter ``flag``
``WAIT``    count                block until counter ``flag`` >= ``amount``
``DELAY``   cycles               a fixed latency (a dependent round trip, a
                                 barrier) that uses no shared resource
==========  ===================  ============================================

Flags are program-wide counters, all starting at 0 (the split-K / stream-K
reduction pattern: each partial CTA signals, the reducing CTA waits for all).

Build with :class:`ProgramBuilder`; many identical CTAs in one call::

    b = ProgramBuilder()
    k = b.kernel("main", threads=128, regs=128, smem=64 * 1024)
    k.ctas(50_000, [load(1 << 20), mma(2 << 20, "bf16"), store(64 << 10)])
    red = b.kernel("reduce", threads=128, regs=32, smem=0)
    cta = red.cta()
    cta.wait(flag=0, count=4).load_hbm(4096).store(1024)
    program = b.build()

Any phase field may be an array of one value per CTA (``load(np.array([...]))``),
so heterogeneous grids are built without a Python loop per CTA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np

from hwmodels.device import DTYPES
from hwmodels.errors import InvalidValueError

LOAD, MMA, FMA, STORE, SIGNAL, WAIT, DELAY = 0, 1, 2, 3, 4, 5, 6
PHASE_KINDS = ("load", "mma", "fma", "store", "signal", "wait", "delay")
NO_DTYPE = -1  # dtype index of phases that are not tensor-core math


class Phase(NamedTuple):
    """One phase for a group of CTAs; each field a scalar or one value per CTA."""

    kind: int
    amount: float | np.ndarray
    flag: int | np.ndarray = -1
    l2_hit: float | np.ndarray = 0.0
    dtype: int = NO_DTYPE


def load(nbytes, l2_hit_fraction=0.0) -> Phase:
    """Read ``nbytes``; ``l2_hit_fraction`` of them hit in L2 (data another CTA already read)."""
    return Phase(LOAD, nbytes, -1, l2_hit_fraction)


def load_l2(nbytes) -> Phase:
    """Read ``nbytes`` that are all resident in L2."""
    return Phase(LOAD, nbytes, -1, 1.0)


def mma(flops, dtype: str = "bf16") -> Phase:
    """Tensor-core math: ``flops`` (2 per multiply-add) in ``dtype``."""
    dtype = dtype.lower()
    if dtype not in DTYPES:
        raise InvalidValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return Phase(MMA, flops, -1, 0.0, DTYPES.index(dtype))


def fma(flops) -> Phase:
    """CUDA-core math (softmax, scaling, reductions) at the fp32 pipe's rate."""
    return Phase(FMA, flops)


def store(nbytes) -> Phase:
    """Write ``nbytes`` to HBM."""
    return Phase(STORE, nbytes)


def signal(flag, increment=1) -> Phase:
    """Add ``increment`` to counter ``flag`` (instantaneous)."""
    return Phase(SIGNAL, increment, flag)


def delay(cycles) -> Phase:
    """A fixed latency of ``cycles`` SM cycles that holds the CTA's slot and no resource (kernels with ``stages=1`` only)."""
    return Phase(DELAY, cycles)


def wait(flag, count=1) -> Phase:
    """Block (holding the CTA's slot) until counter ``flag`` reaches ``count``."""
    return Phase(WAIT, count, flag)


@dataclass(frozen=True)
class KernelLaunch:
    """One kernel of the stream: its grid size, the per-CTA resources that set occupancy, and its pipeline depth.

    ``stages`` is the number of shared-memory buffers the CTA's loads rotate
    through (cp.async multistage / TMA pipeline). ``1`` (the default): a CTA
    runs its phases strictly in series. ``s >= 2``: a LOAD may run ahead of the
    compute phases of the same CTA, at most ``s - 1`` loads ahead of the
    compute that consumes them; the exact dependencies are in
    :mod:`sim.kernel.engine`'s docstring ("Stages").

    ``mma_sync``: the kernel's tensor-core math is issued as warp-level
    ``mma.sync`` (Ampere-style, e.g. FlashAttention-2), which on Hopper reaches
    only the calibration's ``mma_sync_fraction`` of the ``wgmma`` rate.
    ``one_math_pipe``: the kernel's MMA and CUDA-core phases share one pipe per
    SM, so one CTA's softmax never runs beside another CTA's matmuls (see the
    engine docstring, "Tensor cores").
    """

    name: str
    ctas: int
    threads: int
    regs: int
    smem_bytes: int
    stages: int = 1
    mma_sync: bool = False
    one_math_pipe: bool = False


@dataclass(frozen=True, eq=False)
class Program:
    """Kernels of one stream, in order, with every CTA's phases stored flat.

    ``cta_ptr[c]:cta_ptr[c+1]`` are CTA ``c``'s phases (CTAs numbered across the
    whole program, kernel by kernel); ``kernel_ptr[k]:kernel_ptr[k+1]`` are
    kernel ``k``'s CTAs.
    """

    kernels: tuple[KernelLaunch, ...]
    kernel_ptr: np.ndarray  # int64 [K+1]
    cta_ptr: np.ndarray  # int64 [N+1]
    kind: np.ndarray  # int8 [P]
    amount: np.ndarray  # float64 [P]: bytes, FLOPs, or flag count
    flag: np.ndarray  # int64 [P], -1 if not a flag phase
    l2_hit: np.ndarray  # float64 [P], in [0, 1]
    dtype: np.ndarray  # int8 [P], index into hwmodels.device.DTYPES, -1 if not MMA
    n_flags: int = field(default=0)

    def __post_init__(self) -> None:
        for name in ("kernel_ptr", "cta_ptr", "kind", "amount", "flag", "l2_hit", "dtype"):
            getattr(self, name).setflags(write=False)

    @property
    def n_ctas(self) -> int:
        return len(self.cta_ptr) - 1

    @property
    def n_phases(self) -> int:
        return len(self.kind)

    def cost(self) -> dict[str, float]:
        """Totals: bytes loaded from HBM and L2, stored, tensor-core and CUDA-core FLOPs."""
        loads = self.kind == LOAD
        return {
            "hbm_load_bytes": float(np.sum(self.amount[loads] * (1.0 - self.l2_hit[loads]))),
            "l2_load_bytes": float(np.sum(self.amount[loads] * self.l2_hit[loads])),
            "store_bytes": float(np.sum(self.amount[self.kind == STORE])),
            "mma_flops": float(np.sum(self.amount[self.kind == MMA])),
            "fma_flops": float(np.sum(self.amount[self.kind == FMA])),
        }


class CtaBuilder:
    """Phases of one CTA, appended in order; each method returns the builder for chaining."""

    def __init__(self) -> None:
        self.phases: list[Phase] = []

    def _add(self, phase: Phase) -> "CtaBuilder":
        self.phases.append(phase)
        return self

    def load_hbm(self, nbytes, l2_hit_fraction=0.0):
        return self._add(load(nbytes, l2_hit_fraction))

    def load_l2(self, nbytes):
        return self._add(load_l2(nbytes))

    def mma(self, flops, dtype="bf16"):
        return self._add(mma(flops, dtype))

    def fma(self, flops):
        return self._add(fma(flops))

    def store(self, nbytes):
        return self._add(store(nbytes))

    def signal(self, flag, increment=1):
        return self._add(signal(flag, increment))

    def wait(self, flag, count=1):
        return self._add(wait(flag, count))

    def delay(self, cycles):
        return self._add(delay(cycles))


class KernelBuilder:
    """CTAs of one kernel, in launch order: single ones (:meth:`cta`) or groups (:meth:`ctas`)."""

    def __init__(self, name: str, threads: int, regs: int, smem: int, stages: int = 1, mma_sync: bool = False,
                 one_math_pipe: bool = False) -> None:
        for what, value in (("threads", threads), ("regs", regs), ("smem", smem), ("stages", stages)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if what == "smem" else 1):
                raise InvalidValueError(f"kernel {name!r}: {what} must be a {'non-negative' if what == 'smem' else 'positive'} integer, got {value!r}")
        self.name, self.threads, self.regs, self.smem = name, int(threads), int(regs), int(smem)
        self.stages = int(stages)
        self.mma_sync, self.one_math_pipe = bool(mma_sync), bool(one_math_pipe)
        self.groups: list[tuple[int, Sequence[Phase] | CtaBuilder]] = []

    def cta(self) -> CtaBuilder:
        """One more CTA; append its phases to the returned builder."""
        c = CtaBuilder()
        self.groups.append((1, c))
        return c

    def ctas(self, n: int, phases: Sequence[Phase]) -> "KernelBuilder":
        """``n`` more CTAs running ``phases``; a phase field may be an array of ``n`` values."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InvalidValueError(f"kernel {self.name!r}: CTA count must be a non-negative integer, got {n!r}")
        self.groups.append((int(n), tuple(phases)))
        return self

    @property
    def n_ctas(self) -> int:
        return sum(n for n, _ in self.groups)


class ProgramBuilder:
    """Kernels of one stream, in launch order; :meth:`build` freezes them into a :class:`Program`."""

    def __init__(self) -> None:
        self._kernels: list[KernelBuilder] = []
        self._next_flag = 0

    def kernel(self, name: str, *, threads: int, regs: int, smem: int = 0, stages: int = 1, mma_sync: bool = False,
               one_math_pipe: bool = False) -> KernelBuilder:
        """A new kernel; ``stages`` >= 2 lets its CTAs' loads run ahead of their compute; ``mma_sync`` and
        ``one_math_pipe`` as in :class:`KernelLaunch`."""
        k = KernelBuilder(name, threads, regs, smem, stages, mma_sync, one_math_pipe)
        self._kernels.append(k)
        return k

    def flags(self, n: int = 1) -> np.ndarray:
        """``n`` fresh flag ids, never handed out before by this builder."""
        out = np.arange(self._next_flag, self._next_flag + n, dtype=np.int64)
        self._next_flag += n
        return out

    def build(self) -> Program:
        launches, kernel_sizes = [], []
        kinds, amounts, flags, hits, dtypes, counts = [], [], [], [], [], []
        for k in self._kernels:
            for n, spec in k.groups:
                phases = spec.phases if isinstance(spec, CtaBuilder) else spec
                if k.stages > 1 and any(isinstance(ph, Phase) and ph.kind == DELAY for ph in phases):
                    raise InvalidValueError(f"kernel {k.name!r}: delay phases need stages=1 (a pipelined CTA has no place for them yet)")
                _group_arrays(k.name, n, phases, kinds, amounts, flags, hits, dtypes, counts)
            launches.append(KernelLaunch(k.name, k.n_ctas, k.threads, k.regs, k.smem, k.stages, k.mma_sync, k.one_math_pipe))
            kernel_sizes.append(k.n_ctas)
        if not launches:
            raise InvalidValueError("a program needs at least one kernel")
        cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
        counts_arr = cat(counts, np.int64)
        kind = cat(kinds, np.int8)
        amount = cat(amounts, np.float64)
        flag = cat(flags, np.int64)
        l2_hit = cat(hits, np.float64)
        _check_values(kind, amount, flag, l2_hit)
        cta_ptr = np.zeros(len(counts_arr) + 1, np.int64)
        np.cumsum(counts_arr, out=cta_ptr[1:])
        kernel_ptr = np.zeros(len(launches) + 1, np.int64)
        np.cumsum(kernel_sizes, out=kernel_ptr[1:])
        used = flag[flag >= 0]
        n_flags = int(max(self._next_flag, used.max() + 1 if used.size else 0))
        return Program(tuple(launches), kernel_ptr, cta_ptr, kind, amount, flag, l2_hit, cat(dtypes, np.int8), n_flags)


def _group_arrays(kname, n, phases, kinds, amounts, flags, hits, dtypes, counts) -> None:
    """Append the flat arrays of ``n`` CTAs that share the phase list ``phases``."""
    m = len(phases)
    counts.append(np.full(n, m, np.int64))
    if n == 0 or m == 0:
        return

    def column(values, what):
        out = np.empty((n, m), np.float64)
        for j, v in enumerate(values):
            a = np.asarray(v, dtype=np.float64)
            if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != n):
                raise InvalidValueError(f"kernel {kname!r}: phase {j} {what} must be a scalar or {n} values, got shape {a.shape}")
            out[:, j] = a
        return out.ravel()

    for p in phases:
        if not isinstance(p, Phase):
            raise InvalidValueError(f"kernel {kname!r}: a phase must be made by load/mma/fma/store/signal/wait/delay, got {p!r}")
    kinds.append(np.tile(np.array([p.kind for p in phases], np.int8), n))
    dtypes.append(np.tile(np.array([p.dtype for p in phases], np.int8), n))
    amounts.append(column([p.amount for p in phases], "amount"))
    hits.append(column([p.l2_hit for p in phases], "l2_hit_fraction"))
    f = column([p.flag for p in phases], "flag")
    if np.any(f != np.round(f)):
        raise InvalidValueError(f"kernel {kname!r}: flags must be integers")
    flags.append(f.astype(np.int64))


def _check_values(kind, amount, flag, l2_hit) -> None:
    if not np.all(np.isfinite(amount)) or np.any(amount < 0):
        raise InvalidValueError("phase amounts (bytes, FLOPs, counts) must be finite and non-negative")
    if np.any((l2_hit < 0) | (l2_hit > 1)) or not np.all(np.isfinite(l2_hit)):
        raise InvalidValueError("l2_hit_fraction must lie in [0, 1]")
    flagged = (kind == SIGNAL) | (kind == WAIT)
    if np.any(flag[flagged] < 0):
        raise InvalidValueError("signal and wait phases need a flag id >= 0")
    if np.any(amount[flagged] != np.round(amount[flagged])):
        raise InvalidValueError("signal increments and wait counts must be integers")

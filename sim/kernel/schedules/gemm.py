"""GEMM schedules: output tiles, split-K (partials + a reduction kernel) and stream-K.

All three run the same CTA, a CUTLASS-style ``tile_m x tile_n`` output tile
(256 threads, 128 registers, two shared-memory stages of ``(tile_m + tile_n)
x tile_k`` operands) whose MAC loop is a series of ``load A,B k-slab -> mma``
phases, grouped into at most :data:`MAX_CHUNKS` load/mma pairs per tile
(the fluid engine only needs the totals; chunking keeps the phase count small).

**Overlap.** The kernels run with ``stages = 2`` (:class:`~sim.kernel.program.KernelLaunch`):
the double-buffered mainloop loads the next k-slab chunk while the tensor
cores work on the current one, inside each CTA; the two CTAs co-resident per
SM (the register file holds two 256-thread CTAs of 128 registers) share the
SM's tensor pipe and the HBM as usual. The per-CTA Little's-law cap uses one
stage, ``(tile_m + tile_n) tile_k`` elements: the bytes one CTA has in flight.

**Tensor-core work** is on the padded tile (``2 tile_m tile_n`` per unit of K):
edge tiles compute their zero-padded rows, as the MMA instructions do.
**Bytes** are the real rows/columns.

**L2 reuse of A and B** (the same formula for every mode). CTAs are launched
tile-row-major (tile ``(i, j)`` is CTA ``i * grid_n + j``), and ``W =
min(tiles, resident CTAs)`` tiles are in flight at once. They touch ``rows_w =
min(grid_m, ceil(W / grid_n))`` row-blocks of A and ``cols_w = min(grid_n, W)``
column-blocks of B; the first reader of a block misses, the other readers hit::

    l2_hit = 1 - (rows_w * r + cols_w * c) / (W * (r + c)),   r = m / grid_m, c = n / grid_n

(``r``, ``c``: the mean real rows and columns of a tile, the bytes it loads)

(assumes the in-flight blocks stay in L2 while their readers go through K,
i.e. ``(rows_w tile_m + cols_w tile_n) K e`` fits the L2; reuse across waves is
not counted, so HBM bytes are an upper bound for large L2s).

**Split-K** follows CUTLASS's *parallel* split-K
(``cutlass/gemm/device/gemm_splitk_parallel.h``): grid ``tiles x splits``
(splits slowest), each CTA runs ``K / splits`` of the MAC loop and writes an
fp32 partial tile to a workspace; a second kernel
(``cutlass/reduction/kernel/reduce_split_k.h``) reads the ``splits`` partials
of each tile (L2 hits while the workspace fits the L2), adds them on the CUDA
cores and writes C. ``split_k=1`` in split-k mode picks ``floor(resident CTAs
/ tiles)`` splits (at most one per k-iteration): the most that fit in one wave.

**Stream-K** (Osama, Merrill, Cecka, Garland, Owens, arXiv:2301.03598, Alg. 5):
``g = min(resident CTAs, tiles * k_iters)`` CTAs, one wave; CTA ``c`` takes the
global MAC iterations ``[floor(c T / g), floor((c + 1) T / g))`` of ``T =
tiles * k_iters``, tile after tile. A segment that does not start at its
tile's first iteration writes an fp32 partial and signals the tile's flag; the
CTA that holds the tile's first iteration waits for the other contributors,
reads their partials (L2: just written), adds them and writes C.
"""

from __future__ import annotations

import math

import numpy as np

from hwmodels.device import Device
from sim.kernel.occupancy import occupancy
from sim.kernel.program import ProgramBuilder, fma, load, mma, store
from sim.kernel.schedules.problem import GemmProblem
from sim.kernel.schedules.registry import Schedule, register

MAX_CHUNKS = 32  # load/mma phase pairs per full tile
THREADS, REGS, STAGES = 256, 128, 2
ACC_BYTES = 4.0  # fp32 partial tiles


def _grid(p: GemmProblem):
    gm, gn = math.ceil(p.m / p.tile_m), math.ceil(p.n / p.tile_n)
    return gm, gn, math.ceil(p.k / p.tile_k)


def smem_bytes(p: GemmProblem) -> int:
    return int(STAGES * (p.tile_m + p.tile_n) * p.tile_k * p.elem_bytes)


def l2_hit_fraction(p: GemmProblem, in_flight: int) -> float:
    """The module docstring's wave formula for the A/B loads."""
    gm, gn, _ = _grid(p)
    w = max(1, min(gm * gn, in_flight))
    rows_w, cols_w = min(gm, math.ceil(w / gn)), min(gn, w)
    mr, mc = p.m / gm, p.n / gn  # mean real rows / columns of a tile
    return float(max(0.0, 1.0 - (rows_w * mr + cols_w * mc) / (w * (mr + mc))))


def _tile_dims(p: GemmProblem):
    """Real rows and columns of every tile, tile-row-major."""
    gm, gn, _ = _grid(p)
    rows = np.minimum(p.tile_m, p.m - p.tile_m * np.arange(gm))
    cols = np.minimum(p.tile_n, p.n - p.tile_n * np.arange(gn))
    return np.repeat(rows, gn).astype(float), np.tile(cols, gm).astype(float)


def _mainloop(p: GemmProblem, iters, rows, cols, hit, n_chunks: int):
    """``n_chunks`` equal load/mma pairs covering ``iters`` MAC iterations (scalars or per-CTA arrays)."""
    _, _, k_iters = _grid(p)
    k_per_iter = p.k / k_iters
    e = p.elem_bytes
    per = np.asarray(iters, float) / n_chunks
    out = []
    for _ in range(n_chunks):
        out.append(load((rows + cols) * k_per_iter * e * per, hit))
        out.append(mma(2.0 * p.tile_m * p.tile_n * k_per_iter * per, p.dtype))
    return out


def stage_bytes(p: GemmProblem) -> float:
    """Bytes of one pipeline stage (A and B k-slabs): what one CTA keeps in flight."""
    return float((p.tile_m + p.tile_n) * p.tile_k * p.elem_bytes)


def _kernel(b: ProgramBuilder, name: str, p: GemmProblem):
    return b.kernel(name, threads=THREADS, regs=REGS, smem=smem_bytes(p), stages=STAGES)


def _slots(p: GemmProblem, device: Device) -> int:
    return device.sm_count * occupancy(device, THREADS, REGS, smem_bytes(p)).ctas_per_sm


def _tiles(p: GemmProblem, device: Device) -> Schedule:
    gm, gn, k_iters = _grid(p)
    tiles = gm * gn
    hit = l2_hit_fraction(p, _slots(p, device))
    rows, cols = _tile_dims(p)
    n_chunks = min(MAX_CHUNKS, k_iters)
    b = ProgramBuilder()
    _kernel(b, "gemm_tiles", p).ctas(tiles, _mainloop(p, k_iters, rows, cols, hit, n_chunks) + [store(rows * cols * p.elem_bytes)])
    return Schedule(b.build(), stage_bytes(p), {"grid_m": gm, "grid_n": gn, "k_iters": k_iters, "ctas": tiles, "l2_hit": hit})


def _split_k(p: GemmProblem, device: Device) -> Schedule:
    gm, gn, k_iters = _grid(p)
    tiles = gm * gn
    slots = _slots(p, device)
    s = p.split_k if p.split_k > 1 else max(1, slots // tiles)
    s = min(s, k_iters)
    if s == 1:
        sched = _tiles(p, device)
        return Schedule(sched.program, sched.load_bytes_in_flight, {**sched.info, "splits": 1})
    hit = l2_hit_fraction(p, slots)
    rows, cols = _tile_dims(p)
    # split z gets iterations [floor(z k_iters / s), floor((z + 1) k_iters / s)); z is the slowest grid index
    bounds = (np.arange(s + 1) * k_iters) // s
    iters = np.repeat(np.diff(bounds), tiles).astype(float)
    r, c = np.tile(rows, s), np.tile(cols, s)
    n_chunks = min(MAX_CHUNKS, int(np.min(np.diff(bounds))))
    b = ProgramBuilder()
    _kernel(b, "gemm_splitk_partial", p).ctas(tiles * s, _mainloop(p, iters, r, c, hit, n_chunks) + [store(r * c * ACC_BYTES)])
    workspace = tiles * s * p.tile_m * p.tile_n * ACC_BYTES
    ws_hit = float(min(1.0, device.l2_bytes / workspace)) if getattr(device, "l2_bytes", None) else 0.0
    b.kernel("reduce_split_k", threads=256, regs=32).ctas(tiles, [
        load(s * rows * cols * ACC_BYTES, ws_hit),
        fma(s * rows * cols),
        store(rows * cols * p.elem_bytes),
    ])
    return Schedule(b.build(), stage_bytes(p), {"grid_m": gm, "grid_n": gn, "k_iters": k_iters, "splits": s,
                                              "ctas": tiles * s, "l2_hit": hit, "workspace_l2_hit": ws_hit})


def _stream_k(p: GemmProblem, device: Device) -> Schedule:
    gm, gn, k_iters = _grid(p)
    tiles = gm * gn
    total = tiles * k_iters
    g = min(_slots(p, device), total)
    hit = l2_hit_fraction(p, g)
    rows, cols = _tile_dims(p)
    e = p.elem_bytes
    chunk = max(1, math.ceil(k_iters / MAX_CHUNKS))
    starts = (np.arange(g + 1) * total) // g
    # contributors per tile: CTAs whose range meets the tile
    first_tile, last_tile = starts[:-1] // k_iters, (starts[1:] - 1) // k_iters
    contributors = np.zeros(tiles, np.int64)
    for c in range(g):
        contributors[first_tile[c]:last_tile[c] + 1] += 1
    b = ProgramBuilder()
    flags = b.flags(tiles)
    k = _kernel(b, "gemm_stream_k", p)
    for c in range(g):
        cta = k.cta()
        it = int(starts[c])
        end = int(starts[c + 1])
        while it < end:
            t, a = divmod(it, k_iters)
            seg = min(end, (t + 1) * k_iters) - it
            for ph in _mainloop(p, seg, rows[t], cols[t], hit, math.ceil(seg / chunk)):
                cta._add(ph)
            partial = rows[t] * cols[t] * ACC_BYTES
            if a != 0:
                cta.store(partial).signal(int(flags[t]))
            else:
                others = int(contributors[t]) - 1
                if others:
                    cta.wait(int(flags[t]), others).load_hbm(others * partial, 1.0).fma(others * rows[t] * cols[t])
                cta.store(rows[t] * cols[t] * e)
            it += seg
    return Schedule(b.build(), stage_bytes(p), {"grid_m": gm, "grid_n": gn, "k_iters": k_iters, "ctas": g,
                                              "iters_per_cta": total / g, "l2_hit": hit,
                                              "split_tiles": int(np.sum(contributors > 1))})


@register("gemm")
def build(problem: GemmProblem, device: Device) -> Schedule:
    """The GEMM in ``problem.mode``: ``tiles``, ``split-k`` or ``stream-k``."""
    return {"tiles": _tiles, "split-k": _split_k, "stream-k": _stream_k}[problem.mode](problem, device)

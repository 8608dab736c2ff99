"""LeanAttention decode: stream-K over the flattened (batch x KV-head x KV-tile) space.

Sanovar, Bharadwaj, St. Amant, Rühle, Rajmohan, "Lean Attention: Hardware-Aware
Scalable Attention Mechanism for the Decode-Phase of Transformers",
arXiv:2405.10480. What is modelled, after the paper's sections:

- *Softmax re-scaling as a reduction* (sec. 3, "LeanAttention" / the
  associativity of the softmax re-scaling): a (query, key-range) partial result
  ``(O_i, m_i, l_i)`` (un-normalised output, running max, running sum; here
  written as the output and its log-sum-exp) can be merged in any order, so
  the key range of one output tile can be cut anywhere.
- *LeanTile and the stream-K partition* (sec. 4): the unit of work is a
  *LeanTile*, one key block (the split-KV kernel's ``BLOCK_N``: 128 keys at head_dim 128) of one
  (sequence, KV head) against all the query rows of that KV head (the query
  heads of a GQA group packed into the tile rows, as the split-KV kernel
  does). All ``sum over (b, h_kv) of ceil(context / 128)`` LeanTiles are laid
  end to end and cut into ``G`` equal contiguous shares, ``G = sm_count x
  occupancy`` (a one-wave grid: every CTA resident at once, so spinning on a
  flag can never deadlock). CTA ``c`` takes tiles ``[floor(c T / G),
  floor((c+1) T / G))``.
- *Host and finishing CTAs, fixup* (sec. 4): a share that spans an output
  tile's boundary yields partial results. The *host* CTA of an output tile
  (the one holding its LeanTile 0, as kernelab's CUDA kernel and CPU twin do:
  ``kernels_cuda/include/kernelab/attention_schedule.h``) waits until every
  other CTA that touched that output tile has written its partial ``(O,
  LSE)`` (fp32) and signalled a flag, then reads them, merges with its own
  and writes ``O``. An output tile a CTA holds whole is written at once, with
  no partial.

Order inside a CTA (a choice of this model): the non-host partials (the rest
of an output tile begun by an earlier CTA) first, so they are signalled
early; then the whole output tiles; then the host part and its fixup, so the
host rarely waits (all shares are equal, so all CTAs finish together).

The per-tile costs are :mod:`sim.kernel.schedules.split_kv`'s (same K/V bytes,
same padded tile rows, same softmax work, the same FlashAttention-2 kernel
model: two stages, ``mma.sync``, softmax not overlapped with the matmuls, one
``BLOCK_N x d`` tile in flight per CTA; LeanAttention is written on
FlashAttention-2's code), so Lean and FlashDecoding differ only in how the
work is cut and in the separate combine kernel.
"""

from __future__ import annotations

import math

import numpy as np

from hwmodels.calibration import calibration
from hwmodels.device import Device
from hwmodels.errors import InvalidValueError
from sim.kernel.occupancy import occupancy
from sim.kernel.program import ProgramBuilder, fma, load, mma
from sim.kernel.schedules.flash import MAX_CHUNKS, STAGES, exp_fma_flops, softmax_fma_flops
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.registry import Schedule, register
from sim.kernel.schedules.split_kv import BLOCK_M, REGS, THREADS, block_n

ROW_BLOCK = BLOCK_M  # tile rows (kBlockM = 64 of the split-KV kernel)
PARTIAL_BYTES = 4.0  # partial O and LSE in fp32
MERGE_FLOPS_PER_ELEMENT = 4.0  # two exp-scalings, an add and the final divide, per output element and partial


def softmax_flops_per_score(device: Device) -> float:
    """CUDA-core FLOPs standing for one softmax exponential on the SFUs (as :mod:`.flash` counts it)."""
    return exp_fma_flops(device)[0]


def tile_rows(problem: AttentionProblem, query_tokens: int | None = None) -> tuple[int, int]:
    """(packed query rows per KV head, rows computed: padded to whole ``ROW_BLOCK`` tiles)."""
    q = problem.query_tokens if query_tokens is None else query_tokens
    rows = q * problem.group
    return rows, int(math.ceil(rows / ROW_BLOCK) * ROW_BLOCK)


def smem_bytes(problem: AttentionProblem) -> int:
    """Q tile plus one K and one V block in shared memory (as the split-KV kernel)."""
    return int((ROW_BLOCK + 2 * block_n(problem.head_dim)) * problem.head_dim * problem.elem_bytes)


def segment_phases(problem: AttentionProblem, device: Device, keys: float, rows: int, padded: int, outputs: int = 1):
    """Phases for ``keys`` keys (whole key blocks computed) of ``outputs`` output tiles.

    Q loaded once per output tile, then up to ``MAX_CHUNKS`` (load K/V, tensor
    math, exponentials) triples, as :mod:`.split_kv` chunks a CTA's key range.
    """
    d = problem.head_dim
    kb = block_n(d)
    blocks = math.ceil(keys / kb)
    n = max(1, min(MAX_CHUNKS, blocks))
    per_score = softmax_fma_flops(device, d, kb)[0]
    phases = [load(outputs * rows * d * problem.elem_bytes)]
    for _ in range(n):
        phases += [
            load(2.0 * keys * d * problem.kv_elem_bytes / n),
            mma(4.0 * padded * kb * d * blocks / n, problem.dtype),
            fma(per_score * padded * kb * blocks / n),
        ]
    return phases


def lean_partition(n_outputs: int, tiles_per_output: int, grid: int) -> list[list[tuple[int, int, int]]]:
    """Each CTA's segments ``(output, first tile, end tile)`` (tile indices within the output)."""
    total = n_outputs * tiles_per_output
    bounds = [c * total // grid for c in range(grid + 1)]
    shares = []
    for c in range(grid):
        lo, hi, segs = bounds[c], bounds[c + 1], []
        t = lo
        while t < hi:
            o = t // tiles_per_output
            end = min(hi, (o + 1) * tiles_per_output)
            segs.append((o, t - o * tiles_per_output, end - o * tiles_per_output))
            t = end
        shares.append(segs)
    return shares


def build_lean(problem: AttentionProblem, device: Device, b: ProgramBuilder | None = None, name: str = "lean") -> tuple[ProgramBuilder, dict]:
    """Add the LeanAttention kernel to ``b`` (a new builder if ``None``); returns it and what was chosen."""
    b = b or ProgramBuilder()
    d, L = problem.head_dim, problem.context
    rows, padded = tile_rows(problem)
    smem = smem_bytes(problem)
    occ = occupancy(device, THREADS, REGS, smem, name=f"kernel {name!r}").ctas_per_sm
    n_out = problem.batch * problem.kv_heads
    kb = block_n(d)
    n_tiles = math.ceil(L / kb)
    total = n_out * n_tiles
    grid = min(device.sm_count * occ, total)  # never an empty CTA
    shares = lean_partition(n_out, n_tiles, grid)
    last_keys = L - (n_tiles - 1) * kb

    def keys_of(t0, t1):
        return (t1 - t0) * kb - (kb - last_keys if t1 == n_tiles else 0)

    # CTAs touching each output tile, and one flag per output tile that is split
    touching = np.zeros(n_out, np.int64)
    for segs in shares:
        for o, _, _ in segs:
            touching[o] += 1
    flags = b.flags(n_out)
    partial = rows * (d + 1) * PARTIAL_BYTES
    out_bytes = rows * d * problem.elem_bytes
    hit = 1.0 if calibration(device).l2_bytes_per_s else 0.0  # partials just written: read back from L2
    k = b.kernel(name, threads=THREADS, regs=REGS, smem=smem, stages=STAGES, mma_sync=True, one_math_pipe=True)
    n_partials = n_hosts = 0
    for segs in shares:
        cta = k.cta()
        whole = [s for s in segs if s[1] == 0 and s[2] == n_tiles]
        hosts = [s for s in segs if s[1] == 0 and s[2] < n_tiles]  # host: holds tile 0, the rest is in later CTAs
        rests = [s for s in segs if s[1] > 0]  # the rest of an output begun by an earlier CTA: a partial
        for o, t0, t1 in rests:
            cta.phases.extend(segment_phases(problem, device, keys_of(t0, t1), rows, padded))
            cta.store(partial).signal(int(flags[o]))
            n_partials += 1
        if whole:
            cta.phases.extend(segment_phases(problem, device, sum(keys_of(*s[1:]) for s in whole), rows, padded, len(whole)))
            cta.store(out_bytes * len(whole))
        for o, t0, t1 in hosts:
            cta.phases.extend(segment_phases(problem, device, keys_of(t0, t1), rows, padded))
            others = int(touching[o] - 1)
            cta.wait(int(flags[o]), others)
            cta.load_hbm(others * partial, hit)
            cta.fma(others * rows * d * MERGE_FLOPS_PER_ELEMENT)
            cta.store(out_bytes)
            n_hosts += 1
    info = {
        "grid": grid,
        "occupancy": occ,
        "lean_tiles": total,
        "tiles_per_cta": total / grid,
        "output_tiles": n_out,
        "partials": n_partials,
        "host_fixups": n_hosts,
        "rows_per_tile": rows,
        "padded_rows": padded,
        "key_block": kb,
    }
    return b, info


def in_flight_bytes(problem: AttentionProblem) -> float:
    """Bytes a CTA keeps in flight: one K or V block (FlashAttention-2 waits for each before issuing the next)."""
    return float(block_n(problem.head_dim) * problem.head_dim * problem.kv_elem_bytes)


def check_decode(problem: AttentionProblem, what: str) -> None:
    if problem.query_tokens != 1 or problem.tree_tokens or problem.prefix:
        raise InvalidValueError(f"{what} is a decode schedule: query_tokens must be 1 and tree_tokens/prefix 0, got {problem!r}")


@register("lean")
def build(problem: AttentionProblem, device: Device) -> Schedule:
    """LeanAttention decode (stream-K, one wave, host-CTA fixup): one kernel, no combine kernel."""
    check_decode(problem, "lean")
    b, info = build_lean(problem, device)
    return Schedule(b.build(), in_flight_bytes(problem), info)

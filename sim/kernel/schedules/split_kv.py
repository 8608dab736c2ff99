"""Split-KV decoding as FlashDecoding does it (FlashAttention-2's ``flash_fwd_splitkv`` + combine).

Sources: Dao, Haziza, Massa, Sizov, "Flash-Decoding for long-context
inference" (2023); ``csrc/flash_attn/flash_api.cpp`` and
``flash_fwd_launch_template.h`` (FlashAttention >= 2.2).

**GQA packing** (``seqlenq_ngroups_swapped``): with one query token, the
``heads / kv_heads`` query heads of a KV head become the rows of one query
tile, so the grid runs over KV heads; otherwise over query heads with the
sequence's query rows. Tile ``BLOCK_M = 64`` rows, key block ``BLOCK_N`` =
256 / 128 / 64 for head_dim <= 64 / <= 128 / above (flash_api.cpp).

**Splits**: FA2's ``num_splits_heuristic`` (:func:`num_splits`, as
``set_params_splitkv`` calls it: ``2 x SMs`` "to hard-code the fact that we're
using 128 threads per block", at most 128 splits, only split counts that change
``ceil(blocks / splits)``) over ``batch x grid heads x m blocks`` CTAs and
``ceil(s / BLOCK_N)`` key blocks; ``splits=`` overrides it. With one split FA2
runs its plain forward kernel (``flash_fwd_kernel``, the ``128 x BLOCK_N`` tile
of :mod:`.flash`) and no combine; so does this schedule. Split ``z`` takes key
blocks ``[z nps, (z + 1) nps)``, ``nps = ceil(blocks / splits)`` (a split left
empty still writes its LSE).

**Grid** ``grid(m_blocks, splits, batch x heads)``. Each CTA: load Q rows,
per key block (chunked) load K and V, ``4 BLOCK_M BLOCK_N d`` tensor FLOPs on the
padded tile, the softmax of ``BLOCK_M BLOCK_N`` scores; the pipeline (two
stages, one ``BLOCK_N x d`` tile in flight per CTA), ``mma.sync`` and the
unoverlapped softmax are as in :mod:`.flash`; then
write O in ``dtype`` (no split) or the fp32 partial O and LSE, ``rows (d + 1)
4`` bytes. K and V of different splits are different bytes, so they hit L2
only where several m blocks share a split (:func:`.flash.window_l2_hit`).

**Combine** (``flash_fwd_splitkv_combine_kernel``): ``kBlockM`` = 4 / 8 / 16
output rows per CTA (head_dim multiple of 128 / of 64 / other), grid
``ceil(batch x heads x q / kBlockM)``, 128 threads; each CTA reads the
``splits`` partials of its rows (L2 hits while the partials fit in L2: just
written), does ``splits x rows x (2 d + 4)`` CUDA-core FLOPs plus ``splits x
rows`` exponentials, and writes O. Its loads are a chain of round trips
(``combine_attn_seqk_parallel``: the LSEs, then ``for split: load O_accum;
accumulate``, each load issued after the last one's use), so the CTA also
waits ``(splits + 1)`` memory latencies (a ``delay``): the calibration's L2
latency for the L2-hit part, its DRAM latency for the rest.
"""

from __future__ import annotations

import math

import numpy as np

from hwmodels.device import Device
from hwmodels.errors import InvalidValueError
from hwmodels.calibration import calibration
from sim.kernel.program import ProgramBuilder, delay, fma, load, mma, store
from sim.kernel.schedules import flash
from sim.kernel.schedules.flash import MAX_CHUNKS, STAGES, exp_fma_flops, key_limits, resident, softmax_fma_flops, window_l2_hit
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.registry import Schedule, register

BLOCK_M = 64
THREADS, REGS = 128, 255
ACC_BYTES = 4.0
MAX_SPLITS = 128  # flash_api.cpp


def num_splits(ctas, n_blocks, slots, max_splits: int = MAX_SPLITS):
    """FlashAttention-2's ``num_splits_heuristic`` (``flash_api.cpp``), ``slots`` = ``2 x SMs``; vectorized.

    No split when ``ctas >= 0.8 slots``; else, over ``s <= min(max_splits, slots,
    n_blocks)`` whose ``ceil(n_blocks / s)`` differs from ``s - 1``'s, the wave
    efficiency ``e(s) = w / ceil(w)``, ``w = ctas s / slots``; the smallest ``s``
    with ``e(s) >= 0.85 max e``. Scalars in, an int out; arrays in, a float array
    out (the step model's sweeps).
    """
    c = np.asarray(ctas, dtype=float)[..., None]
    n = np.maximum(np.asarray(n_blocks, dtype=float), 1.0)[..., None]
    sl = np.asarray(slots, dtype=float)[..., None]
    s = np.arange(1, max_splits + 1, dtype=float)
    eligible = (s <= np.minimum(sl, n)) & ((s == 1) | (np.ceil(n / s) != np.ceil(n / np.maximum(s - 1, 1))))
    w = c * s / sl
    eff = np.where(eligible, w / np.ceil(w), 0.0)
    first_good = np.argmax(eff >= 0.85 * eff.max(axis=-1, keepdims=True), axis=-1) + 1.0
    out = np.where(c[..., 0] >= 0.8 * sl[..., 0], 1.0, first_good)
    return int(out) if out.ndim == 0 else out


def block_n(head_dim: int) -> int:
    return 256 if head_dim <= 64 else (128 if head_dim <= 128 else 64)


def combine_rows(head_dim: int) -> int:
    return 4 if head_dim % 128 == 0 else (8 if head_dim % 64 == 0 else 16)


def plan(p: AttentionProblem, device: Device, splits: int | None = None) -> dict:
    """Grid heads, packed rows, m blocks, key blocks and splits."""
    packed = p.query_tokens == 1 and p.group > 1
    grid_heads = p.kv_heads if packed else p.heads
    rows = p.group if packed else p.query_tokens
    mb = math.ceil(rows / BLOCK_M)
    bn = block_n(p.head_dim)
    n_blocks = math.ceil(p.context / bn)
    if splits is None:
        splits = num_splits(p.batch * grid_heads * mb, n_blocks, 2 * device.sm_count)
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise InvalidValueError(f"splits must be a positive integer, got {splits!r}")
    block_m = BLOCK_M
    if splits == 1:  # FA2's plain forward kernel and tile
        block_m, bn = flash.BLOCK_M, flash.block_n(p.head_dim)
        mb, n_blocks = math.ceil(rows / block_m), math.ceil(p.context / bn)
    return {"packed": packed, "grid_heads": grid_heads, "rows": rows, "m_blocks": mb, "block_m": block_m, "block_n": bn,
            "key_blocks": n_blocks, "splits": int(splits), "blocks_per_split": math.ceil(n_blocks / splits)}


@register("split-kv")
def build(problem: AttentionProblem, device: Device, splits: int | None = None) -> Schedule:
    p = problem
    d, e, kv_e = p.head_dim, p.elem_bytes, p.kv_elem_bytes
    pl = plan(p, device, splits)
    s, mb, bn, nps, bm = pl["splits"], pl["m_blocks"], pl["block_n"], pl["blocks_per_split"], pl["block_m"]
    bh = p.batch * pl["grid_heads"]
    smem = int((bm + 2 * bn) * d * e)
    # launch order: m fastest, then split, then (batch, head)
    m_idx = np.tile(np.arange(mb), s * bh)
    z_idx = np.tile(np.repeat(np.arange(s), mb), bh)
    bh_idx = np.repeat(np.arange(bh), mb * s)
    r0 = m_idx * bm
    r1 = np.minimum(r0 + bm, pl["rows"])
    rows = (r1 - r0).astype(float)
    # keys this m block may see (causal applies to unpacked query rows only)
    limit = key_limits(p, r0, r1) if not pl["packed"] else np.full(len(m_idx), float(p.context))
    k0 = z_idx * nps * bn
    k1 = np.minimum(np.minimum((z_idx + 1) * nps * bn, limit), p.context)
    keys = np.maximum(k1 - k0, 0.0)
    blocks = np.ceil(keys / bn)
    heads_per_cta = p.group if pl["packed"] else 1  # query rows of the tile are heads when packed
    q_rows_bytes = rows * d * e
    kv_head = bh_idx % pl["grid_heads"] // (1 if pl["packed"] else p.group)
    stream = ((bh_idx // pl["grid_heads"]) * p.kv_heads + kv_head) * s + z_idx
    hit = window_l2_hit(stream, resident(device, THREADS, REGS, smem))
    per_exp, _ = exp_fma_flops(device)
    per_score, softmax = softmax_fma_flops(device, d, bn)
    n_chunks = int(max(1, min(MAX_CHUNKS, nps)))
    phases = [load(q_rows_bytes)]
    for _ in range(n_chunks):
        phases += [
            load(2.0 * keys * d * kv_e / n_chunks, hit),
            mma(4.0 * bm * bn * d * blocks / n_chunks, p.dtype),
            fma(per_score * bm * bn * blocks / n_chunks),
        ]
    out_rows = rows  # rows of this tile = query rows (x heads when packed)
    phases.append(store(out_rows * (d + 1) * ACC_BYTES if s > 1 else out_rows * d * e))
    b = ProgramBuilder()
    b.kernel("flash_fwd_splitkv" if s > 1 else "flash_fwd", threads=THREADS, regs=REGS, smem=smem, stages=STAGES,
             mma_sync=True, one_math_pipe=True).ctas(len(m_idx), phases)
    info = {**pl, "ctas": int(len(m_idx)), "kv_l2_hit": float(np.mean(hit)), "softmax": softmax,
            "heads_per_cta": heads_per_cta}
    if s > 1:
        total_rows = p.batch * p.heads * p.query_tokens
        cr = combine_rows(d)
        n_c = math.ceil(total_rows / cr)
        crow = np.minimum(cr, total_rows - cr * np.arange(n_c)).astype(float)
        ws = total_rows * s * (d + 1) * ACC_BYTES
        ws_hit = float(min(1.0, device.l2_bytes / ws)) if getattr(device, "l2_bytes", None) else 0.0
        cal = calibration(device)
        lat = ws_hit * (cal.l2_latency_cycles or 0.0) + (1.0 - ws_hit) * (cal.dram_latency_cycles or 0.0)
        b.kernel("flash_fwd_splitkv_combine", threads=128, regs=64).ctas(n_c, [
            delay((s + 1) * lat),
            load(s * crow * (d + 1) * ACC_BYTES, ws_hit),
            fma(s * crow * (2.0 * d + 4.0) + per_exp * s * crow),
            store(crow * d * e),
        ])
        info.update({"combine_ctas": n_c, "workspace_bytes": ws, "workspace_l2_hit": ws_hit, "combine_latency_cycles": (s + 1) * lat})
    return Schedule(b.build(), float(bn * d * kv_e), info)

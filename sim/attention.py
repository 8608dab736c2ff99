"""Attention kernel models, pluggable by name.

Each model turns the attention :class:`~sim.graph.Op` of a step into compute
and memory time on a device, with the parallelism the kernel's grid exposes:
a kernel whose CTAs cover only a fraction ``u`` of the SMs gets that fraction
of the device's throughput (one CTA per SM at a time, the others idle).

- ``flash``: FlashAttention-2 (Dao, arXiv:2307.08691): one CTA per (sequence,
  query head, query block of 128 rows, or 64 on sm86/sm89 when causal:
  :func:`fa2_tile`); K and V streamed through shared memory.
  The grid is list-scheduled in launch order (:func:`fa2_grid`): a causal
  prefill's query blocks grow down the triangle, its diagonal tiles are
  computed whole, and its last, largest CTAs run after the rest; for decode
  the grid is ``batch x heads`` CTAs, which under-fills a large GPU at small
  batch, and each computes a whole 128-row tile for its one query row.
- ``split-kv``: FlashDecoding (Dao, Haziza, Massa, Sizov, 2023,
  https://crfm.stanford.edu/2023/10/12/flashdecoding.html): the KV length is
  split so that ``batch x kv_heads x splits`` CTAs fill the SMs, followed by a
  combine kernel over the fp32 partial outputs. The split count is
  FlashAttention-2's ``num_splits_heuristic`` (csrc/flash_attn/flash_api.cpp),
  the kernel simulator's :func:`sim.kernel.schedules.split_kv.num_splits`;
  with one split FA2 runs its plain forward kernel (128-row tiles).

Both issue ``mma.sync`` (Ampere-style warp MMAs), which on Hopper reach only
the calibration's ``mma_sync_fraction`` of the ``wgmma`` peak (2/3, Shah et
al., FlashAttention-3, arXiv:2407.08608, sec. 2.2), so their matmul rate is
``peak x gemm_fraction x mma_sync_fraction``; they stream K and V at the
read-only bandwidth (``Calibration.achievable_hbm_read_bytes_per_s``).

Both pay for the online softmax *in series* with the tensor-core matmuls: the
FlashAttention-2 schedule overlaps neither (FlashAttention-3, sec. 3.1: the
H100 has 989 TFLOP/s of FP16 matmul but only 3.9 TFLOP/s of special
functions). Per (query, key) pair and head: one exponential on the
special-function units (the catalog's ``sfu_ops_per_s``; where it is unknown
the term is left out and the note says so) and ``SOFTMAX_FP32_OPS + d /
BLOCK_N`` fp32 instructions (scale-and-subtract FFMA, row max, row sum, and the
output rescale per key block) on the CUDA cores. These constants are the
kernel simulator's (:mod:`sim.kernel.schedules.flash`), so both models count
the same work.

Split-KV's combine kernel reads each split's partial result in a chain of
dependent loads (``combine_attn_seqk_parallel``), so it waits ``splits + 1``
memory round trips (the calibration's L2 latency for the part of the fp32
workspace that fits in L2, DRAM latency for the rest); that wait is reported
as overhead.

The cycle-level kernel simulator plugs in here as ``engine-flash``,
``engine-split-kv``, ``engine-lean`` and ``engine-tree`` (:mod:`sim.attention_engine`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit

from hwmodels.calibration import Calibration
from hwmodels.device import Device
from hwmodels.errors import InvalidValueError, UnknownNameError

QUERY_BLOCK = 128  # FlashAttention-2 forward tile rows (kBlockM) for head_dim 128 on sm80
QUERY_BLOCK_SPLIT = 64  # rows of the split-KV kernel's tile (flash_fwd_splitkv, kBlockM = 64)
KEY_BLOCK_DECODE = 128  # key block of the split-KV kernel for head_dim 128 (flash_api.cpp)


@dataclass(frozen=True, eq=False)
class AttentionTime:
    compute_s: np.ndarray
    memory_s: np.ndarray
    kernels: np.ndarray
    sm_fraction: np.ndarray
    extra_bytes: np.ndarray
    note: str
    #: fixed waits that use no resource (the combine kernel's dependent loads), reported as overhead
    latency_s: np.ndarray | float = 0.0


def _rates(dtype: str, device: Device, cal: Calibration) -> tuple[float, float]:
    """Matmul FLOP/s of an ``mma.sync`` kernel and read-only streaming bytes/s."""
    flops_per_s = device.peak(dtype) * cal.gemm_fraction[dtype] * cal.mma_sync_fraction
    return flops_per_s, cal.achievable_hbm_read_bytes_per_s(device)


def _compute_s(op, step, heads: int, head_dim: int, key_block: int, device: Device, flops_per_s: float,
               padding) -> tuple[np.ndarray, str]:
    """Tensor-core time plus the online softmax on the SFUs and CUDA cores, in series.

    ``padding`` is the ratio of tile rows computed to query rows needed: a
    kernel computes whole ``kBlockM``-row tiles, so one decoding query in a
    128-row tile costs as much as 128.
    """
    per_score_s, note = _softmax_s_per_score(head_dim, key_block, device)
    return (op.flops / flops_per_s + step.attention_pairs * heads * per_score_s) * padding, note


def _softmax_s_per_score(head_dim: int, key_block: int, device: Device) -> tuple[float, str]:
    """Seconds of online softmax per score: one SFU exponential and ``SOFTMAX_FP32_OPS + d / key_block`` fp32
    issues, in series with the matmuls."""
    from sim.kernel.schedules.flash import SOFTMAX_FP32_OPS

    fp32_s = (SOFTMAX_FP32_OPS + head_dim / key_block) / device.peak("fp32")
    if device.sfu_ops_per_s is None:
        return fp32_s, "; softmax fp32 work counted, exponentials not (no SFU rate for this device)"
    return fp32_s + 1.0 / device.sfu_ops_per_s, "; softmax (SFU exponentials, fp32 max/sum/rescale) not overlapped"


def _padding(rows, block):
    rows = np.asarray(rows, dtype=float)
    return np.ceil(rows / block) * block / rows


def fa2_grid(step, heads: int, head_dim: int, device: Device) -> tuple[np.ndarray, np.ndarray]:
    """FlashAttention-2's forward grid as list scheduling: ``(efficiency, padded pairs / pairs)``.

    The grid is ``(query blocks, seqs, heads)``, the query block fastest
    (``flash_fwd_launch_template.h``); CTA ``i`` of a sequence computes
    ``ceil(keys_i / BLOCK_N)`` whole ``128 x BLOCK_N`` tiles, where ``keys_i``
    is the prefix plus ``min((i + 1) 128, q)`` under the causal mask
    (bottom-right aligned, as the kernel simulator's ``key_limits``) and all
    keys without it. The padding is that tile count over the pairs it covers,
    for a sequence of the batch's mean length; the work ``W`` is the step's
    own pairs times it (so a batch of unequal sequences is charged its pairs,
    not its mean's). ``R`` resident CTAs (``r`` per SM from the occupancy of
    the kernel simulator's FA2 program, fewer when the grid is smaller) each
    get ``1/r`` of an SM; the largest CTA ``w`` is the longest sequence's last
    query block (``Step.max_kv_tokens`` keys). CTAs start in grid order as
    slots free. Equal CTAs (sequences of one length, and no mask or one query
    block each) run in whole waves, ``ceil(CTAs / R) w``; otherwise the
    makespan is Graham's list-scheduling bound ``(W - w) / R + w`` (the
    largest CTA starting once the rest is spread over the slots), or ``w``
    when the whole grid is resident at once. That bound is an upper bound on
    the greedy schedule: for one 32-head 2048-token causal sequence the exact
    greedy makespan is about 17% shorter. ``efficiency = W / (R x makespan)``.
    """
    seqs, new, kv, pairs, longest = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (
        step.seqs, step.new_tokens, step.kv_read_tokens, step.attention_pairs, step.max_kv_tokens)))
    efficiency, padding = _fa2_grid(seqs.ravel(), new.ravel(), kv.ravel(), pairs.ravel(), longest.ravel(),
                                    bool(step.causal), float(heads), *_fa2_shape(head_dim, device, bool(step.causal)))
    return efficiency.reshape(seqs.shape), padding.reshape(seqs.shape)


def fa2_tile(head_dim: int, device: Device, causal: bool = True) -> tuple[int, int]:
    """FlashAttention-2's forward tile ``(kBlockM, kBlockN)`` as ``run_mha_fwd_hdim*`` in
    ``flash_fwd_launch_template.h`` picks it: on sm86/sm89 (``is_sm8x``) at head dims 96 and 128, 64 x 64 when
    causal ("64 x 64 is the fastest for causal (because it's square)") and 128 x 32 without the mask at 128
    ("128 x 32 (48 KB smem) is the fastest for non-causal since we get 2 CTAs per SM"), 128 x 64 at 96;
    elsewhere 128 rows and the kernel simulator's ``block_n``."""
    from sim.kernel.schedules import flash as schedule

    major, _, minor = device.compute_capability.partition(".")
    if major == "8" and minor not in ("", "0") and 64 < head_dim <= 128:
        return (64, 64) if causal else ((128, 32) if head_dim > 96 else (128, 64))
    return QUERY_BLOCK, schedule.block_n(head_dim)


def _fa2_shape(head_dim: int, device: Device, causal: bool = True) -> tuple[float, float, float, float]:
    """FlashAttention-2's key block, query block (:func:`fa2_tile`), resident CTAs per SM (its occupancy; one
    where its tile does not fit the SM's shared memory, a device FA2 was not written for) and the SMs."""
    from sim.kernel.occupancy import occupancy
    from sim.kernel.schedules import flash as schedule

    bm, bn = fa2_tile(head_dim, device, causal)
    try:
        per_sm = occupancy(device, schedule.THREADS, schedule.REGS, (bm + 2 * bn) * head_dim * 2).ctas_per_sm
    except InvalidValueError:
        per_sm = 1
    return float(bn), float(bm), float(per_sm), float(device.sm_count)


def flash_constants(head_dim: int, dtype: str, device: Device, cal: Calibration,
                    causal: bool = True) -> tuple[tuple[float, ...], str]:
    """The constants of :func:`flash` on a device: ``(key block, query block, CTAs per SM, SMs, matmul FLOP/s,
    softmax seconds per score, read bytes/s)``, and the softmax note."""
    shape = _fa2_shape(head_dim, device, causal)
    per_score_s, note = _softmax_s_per_score(head_dim, int(shape[0]), device)
    flops_per_s, bytes_per_s = _rates(dtype, device, cal)
    return (*shape, flops_per_s, per_score_s, bytes_per_s), note


@njit(cache=True)
def flash_one(flops, bytes_, seqs, new, kv_read, pairs, longest, causal, heads, constants):  # pragma: no cover - compiled
    """:func:`flash` of one step from its attention op's FLOPs and bytes, its aggregates (``longest``: the
    longest sequence's KV tokens) and :func:`flash_constants`: ``(compute_s, memory_s, efficiency)``. Matmuls
    and softmax in series on the padded tiles, over the grid's efficiency; K and V at the read-only bandwidth."""
    bn, block_m, per_sm, sms, flops_per_s, per_score_s, bytes_per_s = constants
    efficiency, padding = _fa2_grid_one(seqs, new, kv_read, pairs, longest, causal, heads, bn, block_m, per_sm, sms)
    compute_s = (flops / flops_per_s + pairs * heads * per_score_s) * padding / efficiency
    return compute_s, bytes_ / (bytes_per_s * efficiency), efficiency


@njit(cache=True)
def _flash_many(flops, bytes_, seqs, new, kv_read, pairs, longest, causal, heads, constants):  # pragma: no cover
    compute_s, memory_s, efficiency = np.empty(seqs.size), np.empty(seqs.size), np.empty(seqs.size)
    for e in range(seqs.size):
        compute_s[e], memory_s[e], efficiency[e] = flash_one(flops[e], bytes_[e], seqs[e], new[e], kv_read[e],
                                                             pairs[e], longest[e], causal, heads, constants)
    return compute_s, memory_s, efficiency


@njit(cache=True)
def _fa2_grid_one(seqs, new, kv_read, pairs, longest, causal, heads, bn, block_m, per_sm,
                  sms):  # pragma: no cover - compiled
    """:func:`fa2_grid` of one step: ``(efficiency, padding)`` (one loop over a mean sequence's query blocks)."""
    if seqs <= 0.0 or new <= 0.0 or pairs <= 0.0:
        return 1.0, 1.0  # nothing to attend: no time whatever the grid
    q, kv = new / seqs, kv_read / seqs
    m_blocks = math.ceil(q / block_m)
    tiles = 0.0
    for i in range(m_blocks):
        keys = kv - q + min((i + 1) * block_m, q) if causal else kv
        tiles += math.ceil(keys / bn)
    covered = q * (kv - q) + q * (q + 1) / 2 if causal else q * kv
    padding = max(1.0, tiles * block_m * bn / covered)
    work = pairs * heads * padding / (block_m * bn)
    equal = (not causal or m_blocks == 1) and longest <= kv + 0.5
    return _listed(work, math.ceil(max(longest, kv) / bn), seqs * heads * m_blocks, equal, per_sm, sms), padding


@njit(cache=True)
def _listed(work, largest, ctas, equal, per_sm, sms):  # pragma: no cover - compiled
    """Efficiency of ``ctas`` CTAs doing ``work`` tile-times in all, the largest ``largest``, list-scheduled on
    the resident slots: whole waves of ``work / ctas`` each when the CTAs are ``equal``, else Graham's bound
    (see :func:`fa2_grid`)."""
    slots = sms * min(per_sm, math.ceil(ctas / sms))
    if equal:
        makespan = math.ceil(ctas / slots) * work / ctas
    elif ctas <= slots:
        makespan = largest
    else:
        makespan = (work - largest) / slots + largest
    return work / (slots * max(makespan, work / slots))


@njit(cache=True)
def flash_chunks(tokens, prefixes, heads, per_pair, per_row, per_kv, constants):  # pragma: no cover - compiled
    """:func:`flash` of a batch of causal prefill chunks known one by one (``tokens[j]`` new tokens over
    ``prefixes[j]`` cached ones), as the serving simulator has them: each chunk's CTAs and tiles counted on
    their own rather than from the batch's mean, FLOPs and bytes from the attention op's coefficients (per
    (query, key) pair, per new token, per KV token). ``(compute_s, memory_s)``."""
    bn, block_m, per_sm, sms, flops_per_s, per_score_s, bytes_per_s = constants
    tiles = ctas = largest = pairs = new = kv = 0.0
    for j in range(tokens.size):
        t, p = tokens[j], prefixes[j]
        m_blocks = math.ceil(t / block_m)
        for i in range(m_blocks):
            tiles += math.ceil((p + min((i + 1) * block_m, t)) / bn)
        ctas += m_blocks
        largest = max(largest, math.ceil((p + t) / bn))
        pairs += t * p + t * (t + 1) / 2
        new += t
        kv += p + t
    if pairs <= 0.0:
        return 0.0, 0.0
    work = tiles * heads
    equal = tokens.size == 1 and math.ceil(tokens[0] / block_m) == 1
    efficiency = _listed(work, largest, ctas * heads, equal, per_sm, sms)
    padding = work * block_m * bn / (pairs * heads)
    compute_s = (per_pair * pairs / flops_per_s + pairs * heads * per_score_s) * padding / efficiency
    return compute_s, (per_row * new + per_kv * kv) / (bytes_per_s * efficiency)


@njit(cache=True)
def _fa2_grid(seqs, new, kv_read, pairs, longest, causal, heads, bn, block_m, per_sm, sms):  # pragma: no cover
    efficiency = np.empty(seqs.size)
    padding = np.empty(seqs.size)
    for e in range(seqs.size):
        efficiency[e], padding[e] = _fa2_grid_one(seqs[e], new[e], kv_read[e], pairs[e], longest[e], causal, heads,
                                                  bn, block_m, per_sm, sms)
    return efficiency, padding


def flash(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """FlashAttention-2 forward: grid of ``seqs x heads x ceil(T/128)`` CTAs, list-scheduled (:func:`fa2_grid`)."""
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (
        op.flops, op.bytes, step.seqs, step.new_tokens, step.kv_read_tokens, step.attention_pairs,
        step.max_kv_tokens)))
    constants, softmax = flash_constants(head_dim, op.dtype, device, cal, bool(step.causal))
    compute_s, memory_s, efficiency = (x.reshape(arrays[0].shape) for x in _flash_many(
        *(a.ravel() for a in arrays), bool(step.causal), float(heads), constants))
    return AttentionTime(
        compute_s=compute_s,
        memory_s=memory_s,
        kernels=np.ones_like(efficiency),
        sm_fraction=efficiency,
        extra_bytes=np.zeros_like(efficiency),
        note=f"FlashAttention-2 grid: seqs x {heads} heads x query blocks of {int(constants[1])}, list-scheduled, "
             "whole tiles on the causal diagonal, mma.sync" + softmax,
    )


def split_kv(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """FlashDecoding: split the KV length to fill the SMs, then combine partial results."""
    from sim.kernel.schedules import split_kv as schedule

    from sim.kernel.schedules import flash as plain

    flops_per_s, bytes_per_s = _rates(op.dtype, device, cal)
    # the query heads sharing a KV head are packed into the rows of one tile (GQA packing)
    packed_rows = step.new_tokens / step.seqs * heads / kv_heads
    ctas1 = step.seqs * kv_heads * np.ceil(packed_rows / QUERY_BLOCK_SPLIT)
    # FlashAttention-2's num_splits_heuristic, the kernel simulator's (one definition for both)
    splits = schedule.num_splits(ctas1, np.ceil(step.max_kv_tokens / schedule.block_n(head_dim)), 2 * device.sm_count)
    # with one split FA2 runs its plain forward kernel: 128-row tiles, its own key block
    rows_block = np.where(splits > 1, QUERY_BLOCK_SPLIT, QUERY_BLOCK)
    key_block = np.where(splits > 1, schedule.block_n(head_dim), plain.block_n(head_dim))
    ctas = step.seqs * kv_heads * np.ceil(packed_rows / rows_block) * splits
    waves = np.ceil(ctas / device.sm_count)
    u = ctas / (waves * device.sm_count)
    # partial outputs and log-sum-exps in fp32, written by the main kernel and read by the combine
    workspace = step.new_tokens * heads * (head_dim + 1) * 4.0 * splits
    extra = np.where(splits > 1, 2.0 * workspace, 0.0)
    # the combine's chain of splits + 1 dependent loads, from L2 where the workspace fits
    l2_hit = np.minimum(1.0, device.l2_bytes / workspace) if device.l2_bytes else 0.0
    round_trip = l2_hit * (cal.l2_latency_cycles or 0.0) + (1.0 - l2_hit) * (cal.dram_latency_cycles or 0.0)
    latency_s = np.where(splits > 1, (splits + 1) * round_trip / device.clock_hz, 0.0)
    compute_s, softmax = _compute_s(op, step, heads, head_dim, key_block, device, flops_per_s,
                                    _padding(packed_rows, rows_block))
    return AttentionTime(
        compute_s=compute_s / u,
        memory_s=(op.bytes + extra) / (bytes_per_s * u),
        kernels=np.where(splits > 1, 2.0, 1.0),
        sm_fraction=u,
        extra_bytes=extra,
        note="split-KV (FlashDecoding) with FlashAttention-2's split heuristic, mma.sync, and a combine kernel" + softmax,
        latency_s=latency_s,
    )


PAGED_PARTITION = 512  # tokens per thread block of vLLM's paged_attention_v2 (PARTITION_SIZE)


def paged(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """A CUDA-core decode kernel: vLLM's PagedAttention v2 (``csrc/attention/attention_kernels.cu``).

    One thread block per (sequence, head, 512-token partition) reads its keys
    and values and does the dot products on the CUDA cores in fp32, with no
    tensor-core tile to pad, then a reduce kernel merges the partitions. Per
    (query, key) pair and head: ``2d`` FMAs for the scores and ``2d`` for the
    weighted values (``4d`` flops on the fp32 pipes), one exponential, and the
    softmax's fp32 work; the KV cache streams at the read-only bandwidth. It is
    the kernel low-bit KV caches (KIVI, GEAR, RotateKV) extend with a
    dequantization, since their bytes, not their math, are what shrinks.
    """
    from sim.kernel.schedules.flash import SOFTMAX_FP32_OPS

    _, bytes_per_s = _rates(op.dtype, device, cal)
    q_per_seq = step.new_tokens / step.seqs
    partitions = np.ceil(step.max_kv_tokens / PAGED_PARTITION)
    ctas = step.seqs * heads * q_per_seq * partitions
    u = np.minimum(1.0, ctas / device.sm_count)
    scores = step.attention_pairs * heads
    fp32_s = scores * (4.0 * head_dim + SOFTMAX_FP32_OPS) / device.peak("fp32")
    sfu_s = scores / device.sfu_ops_per_s if device.sfu_ops_per_s else 0.0
    return AttentionTime(
        compute_s=(fp32_s + sfu_s) / u,
        memory_s=op.bytes / (bytes_per_s * u),
        kernels=np.where(partitions > 1, 2.0, 1.0),
        sm_fraction=u,
        extra_bytes=np.zeros_like(u),
        note=f"PagedAttention v2: CUDA cores, {PAGED_PARTITION}-token partitions, a reduce kernel",
    )


AttentionModel = Callable[..., AttentionTime]
ATTENTION_KERNELS: dict[str, AttentionModel] = {"flash": flash, "split-kv": split_kv, "paged": paged}
#: models backed by the cycle-level kernel simulator (sim.attention_engine), imported on first use
ENGINE_KERNEL_NAMES = ("engine-flash", "engine-split-kv", "engine-lean", "engine-tree")


def get_attention_kernel(name: str) -> AttentionModel:
    key = name.strip().lower()
    if key in ENGINE_KERNEL_NAMES:
        from sim.attention_engine import ENGINE_KERNELS

        return ENGINE_KERNELS[key]
    if key not in ATTENTION_KERNELS:
        raise UnknownNameError("attention kernel", name, (*ATTENTION_KERNELS, *ENGINE_KERNEL_NAMES))
    return ATTENTION_KERNELS[key]


def default_kernel(step_kind: str) -> str:
    """Decode steps use split-KV (as vLLM and FlashInfer do); the rest use FlashAttention."""
    return "split-kv" if step_kind == "decode" else "flash"

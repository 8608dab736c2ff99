"""Attention kernel models, pluggable by name.

Each model turns the attention :class:`~sim.graph.Op` of a step into compute
and memory time on a device, with the parallelism the kernel's grid exposes:
a kernel whose CTAs cover only a fraction ``u`` of the SMs gets that fraction
of the device's throughput (one CTA per SM at a time, the others idle).

- ``flash``: FlashAttention-2 (Dao, arXiv:2307.08691): one CTA per (sequence,
  query head, 128-row query block); K and V streamed through shared memory.
  For prefill the grid is large; for decode it is ``batch x heads`` CTAs, which
  under-fills a large GPU at small batch, and each computes a whole 128-row
  tile for its one query row.
- ``fa2-listed``: the same kernel with its grid list-scheduled
  (:func:`fa2_grid`): whole tiles on the causal diagonal and the tail of the
  last, largest CTAs, which ``flash`` leaves out (against our H100 runs of
  causal prefills, 2k-16k tokens: ``flash`` +22% to +95%, this -7% to +22%).
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

from dataclasses import dataclass
from typing import Callable

import numpy as np

from hwmodels.calibration import Calibration
from hwmodels.device import Device
from hwmodels.errors import UnknownNameError

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


def _rates(op, device: Device, cal: Calibration) -> tuple[float, float]:
    """Matmul FLOP/s of an ``mma.sync`` kernel and read-only streaming bytes/s."""
    flops_per_s = device.peak(op.dtype) * cal.gemm_fraction[op.dtype] * cal.mma_sync_fraction
    return flops_per_s, cal.achievable_hbm_read_bytes_per_s(device)


def _compute_s(op, step, heads: int, head_dim: int, key_block: int, device: Device, flops_per_s: float,
               padding) -> tuple[np.ndarray, str]:
    """Tensor-core time plus the online softmax on the SFUs and CUDA cores, in series.

    ``padding`` is the ratio of tile rows computed to query rows needed: a
    kernel computes whole ``kBlockM``-row tiles, so one decoding query in a
    128-row tile costs as much as 128.
    """
    from sim.kernel.schedules.flash import SOFTMAX_FP32_OPS

    matmul_s = op.flops * padding / flops_per_s
    scores = step.attention_pairs * heads * padding
    fp32_s = scores * (SOFTMAX_FP32_OPS + head_dim / key_block) / device.peak("fp32")
    if device.sfu_ops_per_s is None:
        return matmul_s + fp32_s, "; softmax fp32 work counted, exponentials not (no SFU rate for this device)"
    return matmul_s + fp32_s + scores / device.sfu_ops_per_s, "; softmax (SFU exponentials, fp32 max/sum/rescale) not overlapped"


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
    keys without it. ``R`` resident CTAs (``r`` per SM from the occupancy of
    the kernel simulator's FA2 program, fewer when the grid is smaller) each
    get ``1/r`` of an SM. CTAs start in grid order as slots free, so the last
    one, the sequence's last (largest) query block, starts once the rest of
    the work ``W - w`` is spread over the slots (Graham's list-scheduling
    bound): ``makespan = (W - w) / R + w`` tile-times, or the largest CTA's
    ``w`` when the whole grid is resident at once. ``efficiency = W / (R x
    makespan)``. Sequences are taken as equal (a mixed batch: its means).
    """
    from sim.kernel.occupancy import occupancy
    from sim.kernel.schedules import flash as schedule

    bn = schedule.block_n(head_dim)
    seqs = np.asarray(step.seqs, dtype=float)
    q = np.asarray(step.new_tokens, dtype=float) / seqs
    kv = np.asarray(step.kv_read_tokens, dtype=float) / seqs
    causal = np.asarray(step.attention_pairs, dtype=float) / seqs < q * kv - 0.5
    m_blocks = np.ceil(q / QUERY_BLOCK)
    i = np.arange(int(np.max(m_blocks)))
    keys = np.where(causal[..., None], (kv - q)[..., None] + np.minimum((i + 1) * QUERY_BLOCK, q[..., None]),
                    kv[..., None])
    tiles_per_seq = np.where(i < m_blocks[..., None], np.ceil(keys / bn), 0.0).sum(axis=-1)
    work = seqs * heads * tiles_per_seq
    largest = np.ceil(kv / bn)
    ctas = seqs * heads * m_blocks
    smem = (QUERY_BLOCK + 2 * bn) * head_dim * 2
    per_sm = occupancy(device, schedule.THREADS, schedule.REGS, smem).ctas_per_sm
    slots = device.sm_count * np.minimum(per_sm, np.ceil(ctas / device.sm_count))
    makespan = np.where(ctas <= slots, largest, (work - largest) / slots + largest)
    pairs = np.asarray(step.attention_pairs, dtype=float) * heads
    return work / (slots * makespan), work * QUERY_BLOCK * bn / pairs


def flash(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """FlashAttention-2 forward: grid of ``seqs x heads x ceil(T/128)`` CTAs."""
    from sim.kernel.schedules import flash as schedule

    flops_per_s, bytes_per_s = _rates(op, device, cal)
    q_per_seq = step.new_tokens / step.seqs
    ctas = step.seqs * heads * np.ceil(q_per_seq / QUERY_BLOCK)
    u = np.minimum(1.0, ctas / device.sm_count)
    compute_s, softmax = _compute_s(op, step, heads, head_dim, schedule.block_n(head_dim), device, flops_per_s,
                                    _padding(q_per_seq, QUERY_BLOCK))
    return AttentionTime(
        compute_s=compute_s / u,
        memory_s=op.bytes / (bytes_per_s * u),
        kernels=np.ones_like(u),
        sm_fraction=u,
        extra_bytes=np.zeros_like(u),
        note=f"FlashAttention-2 grid: seqs x {heads} heads x query blocks of {QUERY_BLOCK}, mma.sync" + softmax,
    )


def fa2_listed(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """FlashAttention-2 forward with its grid list-scheduled (:func:`fa2_grid`): the causal diagonal's whole
    tiles and the last CTAs' tail charged, which :func:`flash` leaves out. Not linear in the keys for a fixed
    grid, so the serving simulator's tables (which need that) keep :func:`flash`; the step model takes it by
    name (``attention="fa2-listed"``)."""
    from sim.kernel.schedules import flash as schedule

    flops_per_s, bytes_per_s = _rates(op, device, cal)
    efficiency, padding = fa2_grid(step, heads, head_dim, device)
    compute_s, softmax = _compute_s(op, step, heads, head_dim, schedule.block_n(head_dim), device, flops_per_s,
                                    padding)
    return AttentionTime(
        compute_s=compute_s / efficiency,
        memory_s=op.bytes / (bytes_per_s * efficiency),
        kernels=np.ones_like(efficiency),
        sm_fraction=efficiency,
        extra_bytes=np.zeros_like(efficiency),
        note=f"FlashAttention-2 grid: seqs x {heads} heads x query blocks of {QUERY_BLOCK}, list-scheduled, "
             "whole tiles on the causal diagonal, mma.sync" + softmax,
    )


def split_kv(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """FlashDecoding: split the KV length to fill the SMs, then combine partial results."""
    from sim.kernel.schedules import split_kv as schedule

    from sim.kernel.schedules import flash as plain

    flops_per_s, bytes_per_s = _rates(op, device, cal)
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

    _, bytes_per_s = _rates(op, device, cal)
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
ATTENTION_KERNELS: dict[str, AttentionModel] = {"flash": flash, "fa2-listed": fa2_listed, "split-kv": split_kv,
                                                 "paged": paged}
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

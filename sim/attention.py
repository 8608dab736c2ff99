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
- ``split-kv``: FlashDecoding (Dao, Haziza, Massa, Sizov, 2023,
  https://crfm.stanford.edu/2023/10/12/flashdecoding.html): the KV length is
  split so that ``batch x kv_heads x splits`` CTAs fill the SMs, followed by a
  combine kernel over the fp32 partial outputs. The split count follows
  FlashAttention-2's ``num_splits_heuristic`` (csrc/flash_attn/flash_api.cpp):
  the smallest split whose wave efficiency is within 85% of the best, at most
  128 splits, one split per 128-key block at most (head_dim 128).

Both pay for the softmax's exponentials on the special-function units, one
per (query, key) pair and head, *in series* with the tensor-core matmuls: the
FlashAttention-2 schedule does not overlap them (Shah et al., FlashAttention-3,
arXiv:2407.08608, sec. 3.1: the H100 has 989 TFLOP/s of FP16 matmul but only
3.9 TFLOP/s of special functions, so for head_dim 128 the exponentials take up
to half the matmul cycles). The device's ``sfu_ops_per_s`` comes from the
catalog (CUDA guide throughput table); where it is unknown the term is left
out and the note says so.

The cycle-level kernel simulator plugs in here as ``engine-flash``,
``engine-split-kv`` and ``engine-lean`` (:mod:`sim.attention_engine`).
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
MAX_SPLITS = 128


@dataclass(frozen=True, eq=False)
class AttentionTime:
    compute_s: np.ndarray
    memory_s: np.ndarray
    kernels: np.ndarray
    sm_fraction: np.ndarray
    extra_bytes: np.ndarray
    note: str


def _rates(op, device: Device, cal: Calibration) -> tuple[float, float]:
    flops_per_s = device.peak(op.dtype) * cal.gemm_fraction[op.dtype]
    bytes_per_s = device.hbm_bytes_per_s * cal.hbm_fraction
    return flops_per_s, bytes_per_s


def _compute_s(op, step, heads: int, device: Device, flops_per_s: float, padding) -> tuple[np.ndarray, str]:
    """Tensor-core time plus the exponentials on the special-function units, in series.

    ``padding`` is the ratio of tile rows computed to query rows needed: a
    kernel computes whole ``kBlockM``-row tiles, so one decoding query in a
    128-row tile costs as much as 128.
    """
    matmul_s = op.flops * padding / flops_per_s
    if device.sfu_ops_per_s is None:
        return matmul_s, "; softmax exponentials not counted (no SFU rate for this device)"
    exp_s = step.attention_pairs * heads * padding / device.sfu_ops_per_s
    return matmul_s + exp_s, "; softmax exponentials on the SFUs, not overlapped"


def _padding(rows, block: int):
    rows = np.asarray(rows, dtype=float)
    return np.ceil(rows / block) * block / rows


def flash(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """FlashAttention-2 forward: grid of ``seqs x heads x ceil(T/128)`` CTAs."""
    flops_per_s, bytes_per_s = _rates(op, device, cal)
    q_per_seq = step.new_tokens / step.seqs
    ctas = step.seqs * heads * np.ceil(q_per_seq / QUERY_BLOCK)
    u = np.minimum(1.0, ctas / device.sm_count)
    compute_s, softmax = _compute_s(op, step, heads, device, flops_per_s, _padding(q_per_seq, QUERY_BLOCK))
    return AttentionTime(
        compute_s=compute_s / u,
        memory_s=op.bytes / (bytes_per_s * u),
        kernels=np.ones_like(u),
        sm_fraction=u,
        extra_bytes=np.zeros_like(u),
        note=f"FlashAttention-2 grid: seqs x {heads} heads x query blocks of {QUERY_BLOCK}" + softmax,
    )


def split_kv_splits(batch_kv_heads, n_key_blocks, sm_count: int) -> np.ndarray:
    """FlashAttention-2's ``num_splits_heuristic``, vectorized over its inputs."""
    bh = np.asarray(batch_kv_heads, dtype=float)[..., None]
    blocks = np.asarray(n_key_blocks, dtype=float)[..., None]
    s = np.arange(1, MAX_SPLITS + 1, dtype=float)
    waves = bh * s / sm_count
    eff = waves / np.ceil(waves)
    # splits that do not give each split a distinct key block are not considered
    eff = np.where(s <= np.maximum(blocks, 1), eff, 0.0)
    # a grid that already fills 80% of the SMs is not split (flash_api.cpp)
    best = eff.max(axis=-1, keepdims=True)
    first_good = np.argmax(eff >= 0.85 * best, axis=-1) + 1.0
    return np.where(bh[..., 0] >= 0.8 * sm_count, 1.0, first_good)


def split_kv(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
    """FlashDecoding: split the KV length to fill the SMs, then combine partial results."""
    flops_per_s, bytes_per_s = _rates(op, device, cal)
    bh = step.seqs * kv_heads
    blocks = np.ceil(step.max_kv_tokens / KEY_BLOCK_DECODE)
    splits = split_kv_splits(bh, blocks, device.sm_count)
    ctas = bh * splits
    waves = np.ceil(ctas / device.sm_count)
    u = ctas / (waves * device.sm_count)
    # partial outputs and log-sum-exps in fp32, written by the main kernel and read by the combine
    extra = np.where(splits > 1, 2.0 * step.new_tokens * heads * (head_dim + 1) * 4.0 * splits, 0.0)
    # the query heads sharing a KV head are packed into the rows of one tile (GQA packing)
    packed_rows = step.new_tokens / step.seqs * heads / kv_heads
    compute_s, softmax = _compute_s(op, step, heads, device, flops_per_s, _padding(packed_rows, QUERY_BLOCK_SPLIT))
    return AttentionTime(
        compute_s=compute_s / u,
        memory_s=(op.bytes + extra) / (bytes_per_s * u),
        kernels=np.where(splits > 1, 2.0, 1.0),
        sm_fraction=u,
        extra_bytes=extra,
        note="split-KV (FlashDecoding) with FlashAttention-2's split heuristic and a combine kernel" + softmax,
    )


AttentionModel = Callable[..., AttentionTime]
ATTENTION_KERNELS: dict[str, AttentionModel] = {"flash": flash, "split-kv": split_kv}
#: models backed by the cycle-level kernel simulator (sim.attention_engine), imported on first use
ENGINE_KERNEL_NAMES = ("engine-flash", "engine-split-kv", "engine-lean")


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

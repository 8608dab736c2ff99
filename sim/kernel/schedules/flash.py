"""FlashAttention-2 forward (Dao, arXiv:2307.08691) as a CTA program; prefill (causal or not) and decode.

**Grid** as ``flash_fwd_launch_template.h`` launches it: ``grid(num_m_blocks,
batch, heads)``, the query block fastest; one CTA per (sequence, query head,
``BLOCK_M = 128``-row query block), 4 warps, shared memory for Q (``128 x d``)
and one K and one V block (``BLOCK_N x d`` each), ``BLOCK_N`` = 128 / 64 / 32
for head_dim <= 64 / <= 128 / above (:func:`block_n`). No GQA packing: every query
head's CTA reads its KV head's K and V.

**Phases** of the CTA for query block ``i``: load Q (real rows), then per key
block (grouped into at most :data:`MAX_CHUNKS` chunks): load K and V, tensor-core
``QK^T`` and ``PV`` on the padded tile (``4 BLOCK_M BLOCK_N d`` FLOPs), and
the softmax of the ``BLOCK_M x BLOCK_N`` scores (:func:`softmax_fma_flops`);
finally store O (real rows).
Causal: query block ``i`` (bottom-right aligned) reads keys ``[0, s - q +
min((i + 1) BLOCK_M, q))``, so blocks above the diagonal are skipped; the
diagonal blocks are computed whole.

**Pipeline.** The kernel is launched with ``stages = 2``
(:class:`~sim.kernel.program.KernelLaunch`): the cp.async double buffer lets
the next K/V chunk load while the CTA computes on the current one
(``flash_fwd_kernel.h`` issues the next K block before the softmax and the V
block before ``QK^T``). The per-CTA Little's-law cap uses one K or V tile,
``BLOCK_N d`` bytes, the most one CTA keeps in flight (the kernel waits for
each tile before it issues the next).

**Tensor cores.** FlashAttention-2 is written with Ampere's ``mma.sync``
(``SM80_16x8x16_F32BF16BF16F32_TN``), also on Hopper, so the kernel is marked
``mma_sync``: on H100 it runs at the calibration's ``mma_sync_fraction`` (2/3)
of the cuBLAS ``wgmma`` rate.

**Softmax.** The engine has no SFU pipe. The exponentials are written as
CUDA-core (``fma``) work of ``exps * peak(fp32) / sfu_ops_per_s`` FLOPs, which
takes exactly ``exps / (sfu_ops_per_s / sm_count)`` on an SM's fp32 pipe: the
SFU time. The rest of the online softmax (``softmax.h``) is counted per score:
one FFMA (scale and subtract the row max), one FMNMX (row max), one FADD (row
sum), and ``d / BLOCK_N`` FMULs (the rescale of the ``BLOCK_M x d`` O
accumulator once per key block), each one fp32-pipe issue, i.e. 2 FLOPs at
the fp32 peak (:data:`SOFTMAX_FP32_OPS`). The kernel is marked
``one_math_pipe``: FlashAttention-2 does not overlap softmax with matmuls, not
even across co-resident CTAs (that takes FlashAttention-3's warpgroup
ping-pong). A device without ``sfu_ops_per_s`` gets no exponential term
(``info["softmax"]`` says so).

**L2 reuse of K and V** (:func:`window_l2_hit`): CTAs reading the same K/V
bytes (the same (sequence, KV head) stream, and for split-KV the same split)
that are resident in the same wave share them: in each window of ``W =
resident CTAs`` consecutive CTAs (launch order), a stream read by ``n`` of them
is fetched from HBM once, so the window's K/V loads hit L2 with fraction ``1 -
streams / CTAs``. This assumes the sharers move through the keys in step (a
fluid idealisation) and counts no reuse across waves.
"""

from __future__ import annotations

import math

import numpy as np

from hwmodels.device import Device
from sim.kernel.occupancy import occupancy
from sim.kernel.program import ProgramBuilder, fma, load, mma, store
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.registry import Schedule, register

BLOCK_M = 128
MAX_CHUNKS = 16  # key-block chunks per CTA (load/mma/softmax triples)
THREADS, REGS = 128, 255
STAGES = 2  # cp.async double buffer
SOFTMAX_FP32_OPS = 3.0  # per score: FFMA (scale - max), FMNMX (row max), FADD (row sum); + d / BLOCK_N rescale FMULs


def block_n(head_dim: int) -> int:
    """``kBlockN`` of ``flash_fwd_launch_template.h`` on sm90 (no dropout): 128 up to head_dim 64, 64 up to 128, 32 above."""
    return 128 if head_dim <= 64 else (64 if head_dim <= 128 else 32)


def exp_fma_flops(device: Device) -> tuple[float, str]:
    """CUDA-core FLOPs that take as long as one exponential on the SFUs (0 where the SFU rate is unknown)."""
    if device.sfu_ops_per_s is None:
        return 0.0, "softmax exponentials not counted (no SFU rate for this device)"
    ratio = device.peak("fp32") / device.sfu_ops_per_s
    return float(ratio), f"softmax exponentials on the SFUs, as fp32 work at {ratio:.3g} FLOP per exp, not overlapped"


def softmax_fma_flops(device: Device, head_dim: int, block_n_: int) -> tuple[float, str]:
    """CUDA-core FLOP-equivalents per score of FlashAttention-2's online softmax: the exponential
    (:func:`exp_fma_flops`) plus ``2 (SOFTMAX_FP32_OPS + d / BLOCK_N)`` for the fp32 instructions."""
    per_exp, note = exp_fma_flops(device)
    return per_exp + 2.0 * (SOFTMAX_FP32_OPS + head_dim / block_n_), note + "; max, scale, sum and O rescale as fp32 issues"


def window_l2_hit(stream: np.ndarray, window: int) -> np.ndarray:
    """Per-CTA L2-hit fraction of K/V loads: ``1 - distinct streams / CTAs`` in each window of ``window`` CTAs."""
    n = len(stream)
    window = max(1, int(window))
    out = np.empty(n)
    for s in range(0, n, window):
        w = stream[s:s + window]
        out[s:s + window] = 1.0 - len(np.unique(w)) / len(w)
    return out


def resident(device: Device, threads: int, regs: int, smem: int) -> int:
    return device.sm_count * occupancy(device, threads, regs, smem).ctas_per_sm


def key_limits(p: AttentionProblem, rows_start: np.ndarray, rows_end: np.ndarray) -> np.ndarray:
    """Keys a query block ``[rows_start, rows_end)`` of one sequence reads (bottom-right causal mask)."""
    if not p.causal:
        return np.full(len(rows_start), p.context, float)
    return (p.context - p.query_tokens + rows_end).astype(float)


@register("flash")
def build(problem: AttentionProblem, device: Device) -> Schedule:
    p = problem
    d, e, kv_e = p.head_dim, p.elem_bytes, p.kv_elem_bytes
    bn = block_n(d)
    mb = math.ceil(p.query_tokens / BLOCK_M)
    smem = int((BLOCK_M + 2 * bn) * d * e)
    # launch order: m fastest, then batch, then heads
    m_idx = np.tile(np.arange(mb), p.batch * p.heads)
    b_idx = np.tile(np.repeat(np.arange(p.batch), mb), p.heads)
    h_idx = np.repeat(np.arange(p.heads), p.batch * mb)
    rows0 = m_idx * BLOCK_M
    rows1 = np.minimum(rows0 + BLOCK_M, p.query_tokens)
    rows = (rows1 - rows0).astype(float)
    keys = key_limits(p, rows0, rows1)
    blocks = np.ceil(keys / bn)
    keys_loaded = np.minimum(blocks * bn, p.context)
    w = resident(device, THREADS, REGS, smem)
    hit = window_l2_hit(b_idx * p.kv_heads + h_idx // p.group, w)
    per_score, softmax = softmax_fma_flops(device, d, bn)
    n_chunks = int(max(1, min(MAX_CHUNKS, blocks.max())))
    f = 1.0 / n_chunks
    phases = [load(rows * d * e)]
    for _ in range(n_chunks):
        phases += [
            load(2.0 * keys_loaded * d * kv_e * f, hit),
            mma(4.0 * BLOCK_M * bn * d * blocks * f, p.dtype),
            fma(per_score * BLOCK_M * bn * blocks * f),
        ]
    phases.append(store(rows * d * e))
    b = ProgramBuilder()
    b.kernel("flash_fwd", threads=THREADS, regs=REGS, smem=smem, stages=STAGES, mma_sync=True,
             one_math_pipe=True).ctas(len(m_idx), phases)
    info = {"ctas": int(len(m_idx)), "block_m": BLOCK_M, "block_n": bn, "m_blocks": mb,
            "kv_l2_hit": float(np.mean(hit)), "softmax": softmax}
    return Schedule(b.build(), float(bn * d * kv_e), info)

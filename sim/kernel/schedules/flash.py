"""FlashAttention-2 forward (Dao, arXiv:2307.08691) as a CTA program; prefill (causal or not) and decode.

**Grid** as ``flash_fwd_launch_template.h`` launches it: ``grid(num_m_blocks,
batch, heads)``, the query block fastest; one CTA per (sequence, query head,
``BLOCK_M = 128``-row query block), 4 warps, shared memory for Q (``128 x d``)
and one K and one V block (``BLOCK_N x d`` each), ``BLOCK_N = 64`` (the sm80
``128 x 64`` tile for head_dim <= 128; 32 above). No GQA packing: every query
head's CTA reads its KV head's K and V.

**Phases** of the CTA for query block ``i``: load Q (real rows), then per key
block (grouped into at most :data:`MAX_CHUNKS` chunks): load K and V, tensor-core
``QK^T`` and ``PV`` on the padded tile (``4 BLOCK_M BLOCK_N d`` FLOPs), and
the ``BLOCK_M x BLOCK_N`` softmax exponentials; finally store O (real rows).
Causal: query block ``i`` (bottom-right aligned) reads keys ``[0, s - q +
min((i + 1) BLOCK_M, q))``, so blocks above the diagonal are skipped; the
diagonal blocks are computed whole.

Every other co-resident CTA starts half a chunk out of phase (as in
:func:`sim.kernel.schedules.gemm._stagger`), so one CTA's K/V loads overlap the
other's math, which the real kernel gets from its cp.async double buffer.

**Exponentials.** The engine has no SFU pipe. They are written as CUDA-core
(``fma``) work of ``exps * peak(fp32) / sfu_ops_per_s`` FLOPs, which takes
exactly ``exps / (sfu_ops_per_s / sm_count)`` on an SM's fp32 pipe: the SFU
time, in series with the matmuls (FlashAttention-2 does not overlap them; see
:mod:`sim.attention`). A device without ``sfu_ops_per_s`` gets no exponential
term (``info["softmax"]`` says so). The other softmax work (max, scale, sum,
rescale of O) is not counted. What the engine would need: an SFU pipe per SM.

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
MAX_CHUNKS = 16  # key-block chunks per CTA (load/mma/exp triples)
THREADS, REGS = 128, 255


def block_n(head_dim: int) -> int:
    return 64 if head_dim <= 128 else 32


def exp_fma_flops(device: Device) -> tuple[float, str]:
    """CUDA-core FLOPs that take as long as one exponential on the SFUs (0 where the SFU rate is unknown)."""
    if device.sfu_ops_per_s is None:
        return 0.0, "softmax exponentials not counted (no SFU rate for this device)"
    ratio = device.peak("fp32") / device.sfu_ops_per_s
    return float(ratio), f"softmax exponentials on the SFUs, as fp32 work at {ratio:.3g} FLOP per exp, not overlapped"


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
    per_exp, softmax = exp_fma_flops(device)
    n_chunks = int(max(1, min(MAX_CHUNKS, blocks.max())))
    shift = 0.5 * ((np.arange(len(m_idx)) // device.sm_count) % 2)  # as gemm._stagger: co-resident CTAs out of phase
    phases = [load(rows * d * e)]
    for j in range(n_chunks + 1):
        f = (1.0 - shift if j == 0 else (shift if j == n_chunks else 1.0)) / n_chunks
        phases += [
            load(2.0 * keys_loaded * d * kv_e * f, hit),
            mma(4.0 * BLOCK_M * bn * d * blocks * f, p.dtype),
            fma(per_exp * BLOCK_M * bn * blocks * f),
        ]
    phases.append(store(rows * d * e))
    b = ProgramBuilder()
    b.kernel("flash_fwd", threads=THREADS, regs=REGS, smem=smem).ctas(len(m_idx), phases)
    info = {"ctas": int(len(m_idx)), "block_m": BLOCK_M, "block_n": bn, "m_blocks": mb,
            "kv_l2_hit": float(np.mean(hit)), "softmax": softmax}
    return Schedule(b.build(), 2.0 * bn * d * kv_e, info)

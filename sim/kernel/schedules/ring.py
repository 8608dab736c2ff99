"""One ring-attention step and the merge of partial results.

Ring attention (Liu, Zaharia, Abbeel, arXiv:2310.01889) passes KV blocks
around a ring of devices; at each step a device attends its Q block of
``q = problem.query_tokens`` tokens against the visiting KV block of ``k =
problem.context`` tokens and merges the result into its running output.

- **step** (FlashAttention-2 forward, Dao arXiv:2307.08691, algorithm 1): a
  grid of ``batch x heads x ceil(q / 128)`` CTAs; each loads its 128-row Q
  tile, streams the KV block through shared memory in 64-key blocks (only the
  key blocks its rows can see when ``causal``: the diagonal step), computes
  whole tiles, and writes its rows of ``O`` (in ``dtype``) and their LSE
  (fp32). The query heads of one KV head and the row blocks of one sequence
  read the same K/V: the first read comes from HBM, the others from L2 (an
  L2-hit fraction ``1 - 1 / (group x row blocks)``), so HBM traffic is the
  unique bytes ``Q + K + V + O + LSE``.
- **merge**: elementwise over the ``batch x q x heads`` rows: read two
  ``(O, LSE)`` pairs, write one: ``lse = log(exp(lse1) + exp(lse2))``,
  ``O = exp(lse1 - lse) O1 + exp(lse2 - lse) O2``. One CTA per 64 rows.

Registered: ``ring-step`` (the step then the merge into the running output,
one ring iteration) and ``ring-merge`` (the merge alone).
"""

from __future__ import annotations

import math

import numpy as np

from hwmodels.calibration import calibration
from hwmodels.device import Device
from sim.kernel.occupancy import occupancy
from sim.kernel.program import ProgramBuilder, fma, load, mma, store
from sim.kernel.schedules.lean import MERGE_FLOPS_PER_ELEMENT, softmax_flops_per_score
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.registry import Schedule, register

ROW_BLOCK = 128  # FA2 forward kBlockM at head_dim 128
KEY_BLOCK = 64  # FA2 forward kBlockN at head_dim 128 (sm80 traits)
THREADS = 128
REGS = 255
LSE_BYTES = 4.0
MERGE_ROWS = 64  # rows per merge CTA
MERGE_THREADS = 128


def _keys_seen(problem: AttentionProblem) -> np.ndarray:
    """Keys each row block reads, rounded up to whole key blocks (bottom-right causal alignment)."""
    q, k = problem.query_tokens, problem.context
    m = math.ceil(q / ROW_BLOCK)
    if not problem.causal:
        return np.full(m, float(k))
    last_row = np.minimum((np.arange(m) + 1) * ROW_BLOCK, q) - 1
    visible = k - q + last_row + 1
    return np.minimum(np.ceil(visible / KEY_BLOCK) * KEY_BLOCK, k).astype(float)


def step_counts(problem: AttentionProblem) -> dict[str, float]:
    """Closed forms of the step kernel: HBM bytes, L2 bytes and tensor-core FLOPs (whole tiles)."""
    p = problem
    m = math.ceil(p.query_tokens / ROW_BLOCK)
    keys = _keys_seen(p)
    per_head_rows = p.batch * p.heads
    q_bytes = p.batch * p.query_tokens * p.heads * p.head_dim * p.elem_bytes
    o_bytes = q_bytes + p.batch * p.query_tokens * p.heads * LSE_BYTES
    kv_reads = per_head_rows * keys.sum() * 2 * p.head_dim * p.kv_elem_bytes
    kv_unique = kv_reads / (p.group * m)  # non-causal: exactly K + V once; causal: their mean share
    return {
        "hbm_bytes": q_bytes + o_bytes + kv_unique,
        "l2_bytes": kv_reads - kv_unique,
        "mma_flops": per_head_rows * keys.sum() * 4.0 * ROW_BLOCK * p.head_dim,
    }


def build_step(problem: AttentionProblem, device: Device, b: ProgramBuilder, name: str = "ring-step") -> dict:
    p = problem
    d = p.head_dim
    m = math.ceil(p.query_tokens / ROW_BLOCK)
    rows = np.minimum(ROW_BLOCK, p.query_tokens - np.arange(m) * ROW_BLOCK).astype(float)
    keys = _keys_seen(p)
    smem = int(ROW_BLOCK * d * p.elem_bytes + 2 * KEY_BLOCK * d * p.kv_elem_bytes)
    n = p.batch * p.heads * m
    # CTA order as FA2 launches it: grid (m, batch, heads), the row block (blockIdx.x) fastest
    rows_c, keys_c = np.tile(rows, p.batch * p.heads), np.tile(keys, p.batch * p.heads)
    reuse = p.group * m
    has_l2 = bool(calibration(device).l2_bytes_per_s)
    hit = (1.0 - 1.0 / reuse) if has_l2 else 0.0
    kv = keys_c * 2 * d * p.kv_elem_bytes
    b.kernel(name, threads=THREADS, regs=REGS, smem=smem).ctas(n, [
        load(rows_c * d * p.elem_bytes),
        load(kv, hit),
        mma(keys_c * 4.0 * ROW_BLOCK * d, p.dtype),
        fma(keys_c * ROW_BLOCK * softmax_flops_per_score(device)),
        store(rows_c * (d * p.elem_bytes + LSE_BYTES)),
    ])
    return {"step_ctas": n, "row_blocks": m, "kv_l2_hit": hit, "keys_per_row_block": keys.tolist()}


def build_merge(problem: AttentionProblem, device: Device, b: ProgramBuilder, name: str = "ring-merge") -> dict:
    p = problem
    total_rows = p.batch * p.query_tokens * p.heads
    n = math.ceil(total_rows / MERGE_ROWS)
    rows = np.minimum(MERGE_ROWS, total_rows - np.arange(n) * MERGE_ROWS).astype(float)
    pair = p.head_dim * p.elem_bytes + LSE_BYTES
    b.kernel(name, threads=MERGE_THREADS, regs=32, smem=0).ctas(n, [
        load(rows * 2 * pair),
        fma(rows * p.head_dim * MERGE_FLOPS_PER_ELEMENT),
        store(rows * pair),
    ])
    return {"merge_ctas": n}


def _in_flight(problem: AttentionProblem) -> float:
    return 2.0 * KEY_BLOCK * problem.head_dim * problem.kv_elem_bytes


@register("ring-step")
def build(problem: AttentionProblem, device: Device) -> Schedule:
    """One ring iteration: Q block x KV block (out + LSE), then the merge into the running output."""
    b = ProgramBuilder()
    info = build_step(problem, device, b)
    info.update(build_merge(problem, device, b))
    info["counts"] = step_counts(problem)
    return Schedule(b.build(), _in_flight(problem), info)


@register("ring-merge")
def build_merge_only(problem: AttentionProblem, device: Device) -> Schedule:
    """The merge of two (O, LSE) pairs over ``batch x query_tokens x heads`` rows."""
    b = ProgramBuilder()
    info = build_merge(problem, device, b)
    return Schedule(b.build(), None, info)

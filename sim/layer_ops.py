"""The main operations of one decoder layer (and the LM head) in a prefill or decode step.

A first-order cost record per operation, for roofline placement: GEMMs count
``2 M N K`` FLOPs and each operand read once; attention reads the KV cache once
per sequence and counts ``4 d`` FLOPs per (query, key) pair (QK^T and PV), with
the causal mask of a prefill chunk (``L*T + T(T+1)/2`` pairs for ``T`` new
tokens over ``L`` cached ones, FlashAttention's accounting: Dao, arXiv:2307.08691).
Norms, RoPE and sampling are left out here; the step model adds them.
"""

from __future__ import annotations

from hwmodels.device import DTYPE_BYTES
from hwmodels.errors import InvalidValueError
from hwmodels.roofline import Operation
from sim.model import ModelConfig

STEP_KINDS = ("prefill", "decode")


def step_operations(
    model: ModelConfig, kind: str, batch: int, context: int, tokens: int | None = None, dtype: str = "bf16"
) -> list[Operation]:
    """Operations of one layer plus the LM head for ``batch`` sequences.

    ``context`` is the number of tokens already in the KV cache; a prefill step
    adds ``tokens`` new tokens per sequence (default: ``context`` tokens on an
    empty cache), a decode step adds one.
    """
    if kind not in STEP_KINDS:
        raise InvalidValueError(f"unknown step kind {kind!r}; known: {', '.join(STEP_KINDS)}")
    if kind == "prefill":
        new, cached = (tokens, context) if tokens is not None else (context, 0)
    else:
        new, cached = 1, context
    for label, v in (("batch", batch), ("new tokens", new)):
        if not isinstance(v, int) or v < 1:
            raise InvalidValueError(f"{label} must be a positive integer, got {v!r}")
    if not isinstance(cached, int) or cached < 0:
        raise InvalidValueError(f"context must be a non-negative integer, got {cached!r}")

    m = model
    rows = batch * new
    q_dim, kv_dim = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
    tag = f"{kind} B={batch} L={context}" + (f" T={new}" if kind == "prefill" else "")
    ops = [
        Operation.gemm(f"qkv_proj [{tag}]", rows, q_dim + 2 * kv_dim, m.hidden_size, dtype),
        _attention(m, batch, new, cached, dtype, tag),
        Operation.gemm(f"o_proj [{tag}]", rows, m.hidden_size, q_dim, dtype),
        Operation.gemm(f"mlp_up [{tag}]", rows, (2 if m.gated_mlp else 1) * m.intermediate_size, m.hidden_size, dtype),
        Operation.gemm(f"mlp_down [{tag}]", rows, m.hidden_size, m.intermediate_size, dtype),
        Operation.gemm(f"lm_head [{tag}]", batch, m.vocab_size, m.hidden_size, dtype),
    ]
    return ops


def _attention(m: ModelConfig, batch: int, new: int, cached: int, dtype: str, tag: str) -> Operation:
    e = DTYPE_BYTES[dtype]
    pairs = new * cached + new * (new + 1) // 2
    flops = 4.0 * m.head_dim * m.num_heads * pairs * batch
    kv_bytes = 2 * batch * (cached + new) * m.num_kv_heads * m.head_dim * e
    q_and_out_bytes = 2 * batch * new * m.num_heads * m.head_dim * e
    return Operation(f"attention [{tag}]", flops, {"hbm": kv_bytes + q_and_out_bytes}, dtype)

"""Shape rules the attention inputs obey on every device (the CPU and GPU paths both call this)."""

from __future__ import annotations


def check_qkv_shapes(fn: str, q_shape: tuple, k_shape: tuple, v_shape: tuple) -> None:
    """q [B, ..., Hq, D] against k and v [B, S, Hkv, D]: same batch and head_dim, Hq a multiple of Hkv."""
    if tuple(v_shape) != tuple(k_shape):
        raise ValueError(f"{fn}: v must have the shape of k {tuple(k_shape)}, got {tuple(v_shape)}")
    if q_shape[0] != k_shape[0]:
        raise ValueError(f"{fn}: q and k must have the same batch, got {q_shape[0]} and {k_shape[0]}")
    if q_shape[-1] != k_shape[-1]:
        raise ValueError(f"{fn}: q and k must have the same head_dim, got {q_shape[-1]} and {k_shape[-1]}")
    hq, hkv = q_shape[-2], k_shape[-2]
    if hq % hkv != 0:
        raise ValueError(f"{fn}: the query heads of q ({hq}) must be a multiple of the KV heads of k ({hkv})")

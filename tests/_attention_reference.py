"""Float64 NumPy references for the attention kernels' tests (CPU twins and CUDA kernels alike).

Shapes in the FlashAttention layout: q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D];
query head h reads KV head h // (Hq / Hkv). A row that sees no key has out 0
and lse -inf (natural log).
"""

import math

import numpy as np


def reference(q, k, v, mask=None, scale=None):
    """Attention in float64; ``mask`` [B or 1, Sq, Sk], True where visible. Returns out [B, Sq, Hq, D], lse [B, Sq, Hq]."""
    q64, k64, v64 = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    group = q.shape[2] // k.shape[2]
    k64 = np.repeat(k64, group, axis=2)
    v64 = np.repeat(v64, group, axis=2)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bqhd,bkhd->bhqk", q64, k64) * scale
    if mask is not None:
        s = np.where(mask[:, None, :, :], s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m)
    total = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = np.where(total[..., 0] > 0, np.log(total[..., 0]) + m[..., 0], -np.inf)
        w = np.where(total > 0, p / total, 0.0)
    out = np.einsum("bhqk,bkhd->bqhd", w, v64)
    return out, lse.transpose(0, 2, 1)


def decode_reference(q, k, v, seqlens=None, scale=None):
    """One query per sequence, q [B, Hq, D], over its first ``seqlens[b]`` keys (all by default)."""
    b, s = k.shape[0], k.shape[1]
    lens = np.full(b, s) if seqlens is None else np.asarray(seqlens)
    mask = (np.arange(s)[None, :] < lens[:, None])[:, None, :]
    out, lse = reference(q[:, None], k, v, mask, scale)
    return out[:, 0], lse[:, 0]


def causal_mask(sq, sk):
    """Bottom-right: query i sees key j iff j <= i + sk - sq."""
    return (np.arange(sk)[None, :] <= np.arange(sq)[:, None] + (sk - sq))[None]


def ancestors(parents):
    """[T, T] mask: token i sees the tokens on its path to the root, itself included."""
    t = len(parents)
    anc = np.zeros((t, t), dtype=bool)
    for i, p in enumerate(parents):
        if p >= 0:
            anc[i] = anc[p]
        anc[i, i] = True
    return anc


def tree_mask(parents, batch, prefix):
    """[B, T, P+T]: every prefix key, then the tree part under ``parents`` ([T] or [B, T])."""
    parents = np.broadcast_to(np.asarray(parents), (batch, np.asarray(parents).shape[-1]))
    t = parents.shape[1]
    mask = np.zeros((batch, t, prefix + t), dtype=bool)
    mask[:, :, :prefix] = True
    for b in range(batch):
        mask[b, :, prefix:] = ancestors(parents[b])
    return mask


def tree_reference(q, k, v, parents, scale=None):
    """q [B, T, Hq, D] over k/v [B, P+T, Hkv, D] (prefix, then the tree's own tokens)."""
    return reference(q, k, v, tree_mask(parents, q.shape[0], k.shape[1] - q.shape[1]), scale)

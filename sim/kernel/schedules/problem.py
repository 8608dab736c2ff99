"""Problems the schedules take: an attention call and a GEMM, frozen and validated.

Shared by every schedule module (flash, split_kv, gemm here; lean, tree,
cascade and ring-step added by their own modules), so the fields are stable:
``tree_tokens`` and ``prefix`` exist for the tree/cascade schedules and are
ignored (must be 0) by the ones that do not know them.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwmodels.device import DTYPE_BYTES, DTYPES
from hwmodels.errors import InvalidValueError

GEMM_MODES = ("tiles", "split-k", "stream-k")


def _positive(owner: str, **values) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidValueError(f"{owner}: {name} must be a positive integer, got {v!r}")


def _dtype(owner: str, dtype: str) -> str:
    d = dtype.lower()
    if d not in DTYPES:
        raise InvalidValueError(f"{owner}: unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return d


@dataclass(frozen=True)
class AttentionProblem:
    """One attention call: ``batch`` sequences, each ``query_tokens`` new queries over ``context`` keys.

    ``context`` is the KV length (including the new tokens); ``query_tokens=1``
    is decode. ``causal`` masks key ``j > context - query_tokens + i`` for query
    ``i`` (bottom-right aligned, as FlashAttention-2 does). ``kv_bits`` is the
    KV-cache element size (16 for bf16/fp16, 8 for fp8); ``dtype`` the math
    dtype of Q, the matmuls and O. ``tree_tokens`` / ``prefix`` belong to the
    tree and cascade schedules (0: not used).
    """

    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    query_tokens: int = 1
    causal: bool = False
    dtype: str = "bf16"
    kv_bits: int = 16
    tree_tokens: int = 0
    prefix: int = 0

    def __post_init__(self) -> None:
        _positive("AttentionProblem", batch=self.batch, heads=self.heads, kv_heads=self.kv_heads,
                  head_dim=self.head_dim, context=self.context, query_tokens=self.query_tokens)
        if self.heads % self.kv_heads:
            raise InvalidValueError(f"AttentionProblem: heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.query_tokens > self.context:
            raise InvalidValueError(f"AttentionProblem: query_tokens ({self.query_tokens}) exceed the context ({self.context})")
        if self.kv_bits not in (4, 8, 16, 32):
            raise InvalidValueError(f"AttentionProblem: kv_bits must be 4, 8, 16 or 32, got {self.kv_bits!r}")
        for name in ("tree_tokens", "prefix"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidValueError(f"AttentionProblem: {name} must be a non-negative integer, got {v!r}")
        object.__setattr__(self, "dtype", _dtype("AttentionProblem", self.dtype))

    @property
    def group(self) -> int:
        """Query heads per KV head (GQA group size)."""
        return self.heads // self.kv_heads

    @property
    def elem_bytes(self) -> float:
        return float(DTYPE_BYTES[self.dtype])

    @property
    def kv_elem_bytes(self) -> float:
        return self.kv_bits / 8.0

    @property
    def pairs(self) -> float:
        """(query, key) pairs per head that the mask keeps, summed over the batch."""
        q, s = self.query_tokens, self.context
        if not self.causal:
            return float(self.batch * q * s)
        # query i (0-based) sees keys 0 .. s - q + i
        return float(self.batch * (q * (s - q) + q * (q + 1) / 2))

    @property
    def flops(self) -> float:
        """Useful FLOPs: QK^T and PV, 2 x 2 x d per kept pair and head."""
        return 4.0 * self.head_dim * self.heads * self.pairs

    @property
    def min_bytes(self) -> float:
        """Bytes any kernel must move: Q and O once, K and V once."""
        qo = 2.0 * self.batch * self.query_tokens * self.heads * self.head_dim * self.elem_bytes
        kv = 2.0 * self.batch * self.context * self.kv_heads * self.head_dim * self.kv_elem_bytes
        return qo + kv


@dataclass(frozen=True)
class GemmProblem:
    """``C[m, n] = A[m, k] @ B[k, n]`` in ``dtype`` (accumulated in fp32), with the kernel's tiling.

    ``mode``: ``"tiles"`` (one CTA per output tile), ``"split-k"`` (``split_k``
    CTAs per tile over K, partials reduced by a second kernel) or
    ``"stream-k"`` (one wave of CTAs sharing the MAC-loop iterations).
    """

    m: int
    n: int
    k: int
    dtype: str = "bf16"
    tile_m: int = 128
    tile_n: int = 128
    tile_k: int = 64
    split_k: int = 1
    mode: str = "tiles"

    def __post_init__(self) -> None:
        _positive("GemmProblem", m=self.m, n=self.n, k=self.k, tile_m=self.tile_m, tile_n=self.tile_n,
                  tile_k=self.tile_k, split_k=self.split_k)
        object.__setattr__(self, "dtype", _dtype("GemmProblem", self.dtype))
        mode = self.mode.lower()
        if mode not in GEMM_MODES:
            raise InvalidValueError(f"GemmProblem: mode must be one of {', '.join(GEMM_MODES)}, got {self.mode!r}")
        object.__setattr__(self, "mode", mode)

    @property
    def elem_bytes(self) -> float:
        return float(DTYPE_BYTES[self.dtype])

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k

    @property
    def min_bytes(self) -> float:
        return (self.m * self.k + self.k * self.n + self.m * self.n) * self.elem_bytes

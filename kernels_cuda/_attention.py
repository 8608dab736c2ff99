"""Attention kernels of issue 5: lean_attention, split_kv_attention,
tree_attention, ring_attention, block_attention and merge_attention.

One Python API for CPU and GPU. NumPy arrays run the C++ CPU twins, which
take their work partition from the same schedule code as the CUDA kernels
(``include/kernelab/attention_schedule.h``) and accumulate in fp32 with an
online softmax. CUDA arrays (CuPy arrays, PyTorch CUDA tensors, anything
with ``__cuda_array_interface__``) run the CUDA kernels of
``src/attention_cuda.cu`` on their device, with outputs allocated there by
the same library (see ``_attention_gpu.py``; float32, float16 and bfloat16,
head_dim 64 or 128, an optional ``stream=``); without a usable CUDA device
they raise :class:`CudaUnavailableError`. Nothing is ever copied between
devices behind your back: mixing numpy and GPU arrays is a ValueError.

Conventions shared by every function:

- ``q``, ``k``, ``v``: C-contiguous numpy arrays of one dtype, float32 or
  float16 (native byte order); non-contiguous arrays are refused (pass
  ``numpy.ascontiguousarray(x)``), never copied.
- GQA: the query heads ``Hq`` are a multiple of the KV heads ``Hkv``; query
  head ``h`` uses KV head ``h // (Hq // Hkv)``.
- ``softmax_scale``: a finite real; ``None`` means ``1 / sqrt(head_dim)``.
- Results ``(out, lse)``: ``out`` in the input dtype, ``lse`` float32, the
  natural-log log-sum-exp of the scaled scores of each output row, shaped as
  ``out`` without its last axis. A row that sees no key has ``out`` 0 and
  ``lse`` ``-inf`` (merging with it is the identity).
- Bad input raises TypeError (type, dtype) or ValueError (shape, value) naming
  the argument, before any work; the C++ layer checks again.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

from . import _attention_gpu as _gpu
from ._loader import require_extension
from ._shapes import check_qkv_shapes

# numpy is imported inside the functions: importing kernels_cuda needs no
# numpy (nor the compiled module), as backends() promises.
if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "block_attention",
    "lean_attention",
    "merge_attention",
    "ring_attention",
    "split_kv_attention",
    "tree_attention",
]

MAX_TREE_TOKENS = 256  # attention_cpu.h kMaxTreeTokens
MAX_SPLITS = 128  # attention_schedule.h kMaxSplits (FlashAttention-2)
DEFAULT_SM_COUNT = 132  # attention_schedule.h kDefaultSmCount (H100 SXM)
DEFAULT_LEAN_CTAS_PER_SM = 2  # attention_schedule.h kDefaultLeanCtasPerSm
_DLPACK_CPU = 1


# --- argument checks ------------------------------------------------------------------


def _device_of(x: Any) -> str | None:
    """'cuda' for an array that lives on a GPU, None otherwise."""
    if hasattr(x, "__cuda_array_interface__"):
        return "cuda"
    dlpack_device = getattr(x, "__dlpack_device__", None)
    if callable(dlpack_device):
        try:
            device_type = int(dlpack_device()[0])
        except Exception:  # an odd object: treated as not a GPU array
            return None
        if device_type != _DLPACK_CPU:
            return "cuda"
    return None


def _array(fn: str, name: str, x: Any) -> np.ndarray:
    import numpy as np
    if isinstance(x, np.ndarray):
        return x
    if _device_of(x) == "cuda":
        raise ValueError(
            f"{fn}: {name} is a GPU array while q is a numpy array; all arrays of one call "
            "must be on one device (nothing is copied behind your back)"
        )
    raise TypeError(f"{fn}: {name} must be a numpy.ndarray, got {type(x).__name__}")


def _float_array(fn: str, name: str, x: Any, ndim: int, like: np.ndarray | None = None,
                 like_name: str = "q") -> np.ndarray:
    import numpy as np
    a = _array(fn, name, x)
    if like is None:
        if a.dtype not in (np.dtype(np.float32), np.dtype(np.float16)) or not a.dtype.isnative:
            raise TypeError(f"{fn}: {name} must have dtype float32 or float16 (native byte order), got {a.dtype}")
    elif a.dtype != like.dtype or not a.dtype.isnative:
        raise TypeError(f"{fn}: {name} must have the dtype of {like_name} ({like.dtype}), got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous; pass numpy.ascontiguousarray({name})")
    if 0 in a.shape:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {a.shape}")
    return a


def _qkv(fn: str, q: Any, k: Any, v: Any, q_ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = _float_array(fn, "q", q, q_ndim)
    k = _float_array(fn, "k", k, 4, q)
    v = _float_array(fn, "v", v, 4, q)
    check_qkv_shapes(fn, q.shape, k.shape, v.shape)
    return q, k, v


def _sequence_inputs(fn: str, q: Any, k: Any, v: Any, stream: Any) -> tuple[Any, Any, Any, bool]:
    """Checked 4-D q, k, v on their device, and whether that device is a GPU (a stream only means something there)."""
    if _on_gpu(q, k, v):
        return (*_gpu.qkv(fn, q, k, v, 4), True)
    _no_stream_on_cpu(fn, stream)
    return (*_qkv(fn, q, k, v, 4), False)


def _scale(fn: str, softmax_scale: Any, head_dim: int) -> float:
    import numpy as np
    if softmax_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(softmax_scale, bool) or not isinstance(softmax_scale, numbers.Real):
        raise TypeError(f"{fn}: softmax_scale must be a real number or None, got {type(softmax_scale).__name__}")
    value = float(softmax_scale)
    if not math.isfinite(value) or abs(value) > float(np.finfo(np.float32).max):
        raise ValueError(f"{fn}: softmax_scale must be finite in float32, got {softmax_scale!r}")
    return value


def _int(fn: str, name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{fn}: {name} must be {bound}, got {value}")
    return value


def _int_array(fn: str, name: str, x: Any) -> np.ndarray:
    """Integers as a contiguous int64 array (a list or a numpy integer array)."""
    import numpy as np
    if isinstance(x, np.ndarray):
        a = x
    elif _device_of(x) == "cuda":
        return _int_array(fn, name, _gpu.host_ints(x))
    elif isinstance(x, (list, tuple)):
        if not all(isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in np.ravel(np.array(x, dtype=object))):
            raise TypeError(f"{fn}: {name} must hold integers")
        a = np.array(x, dtype=np.int64)
    else:
        raise TypeError(f"{fn}: {name} must be a numpy integer array or a list of integers, got {type(x).__name__}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name} must have an integer dtype, got {a.dtype}")
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{fn}: {name} holds values too large for int64")
    return np.ascontiguousarray(a, dtype=np.int64)  # integer indices: a small, exact copy


def _outputs(q_shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Outputs poisoned with NaN: the kernel must write every element."""
    import numpy as np
    return np.full(q_shape, np.nan, dtype=dtype), np.full(q_shape[:-1], np.nan, dtype=np.float32)


def _seqlens(fn: str, seqlens: Any, batch: int, capacity: int) -> np.ndarray | None:
    import numpy as np
    if seqlens is None:
        return None
    s = _int_array(fn, "seqlens", seqlens)
    if s.shape != (batch,):
        raise ValueError(f"{fn}: seqlens must have shape ({batch},) (one per sequence), got {s.shape}")
    bad = np.flatnonzero((s < 0) | (s > capacity))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{fn}: seqlens[{i}] = {int(s[i])} is outside [0, {capacity}] (k holds {capacity} positions)")
    return s


# --- decode ----------------------------------------------------------------------------


def _decode_args(fn: str, q: Any, k: Any, v: Any, seqlens: Any, softmax_scale: Any):
    q, k, v = _qkv(fn, q, k, v, 3)
    s = _seqlens(fn, seqlens, q.shape[0], k.shape[1])
    return q, k, v, s, _scale(fn, softmax_scale, q.shape[-1])


# --- the GPU path (arrays checked and outputs allocated by _attention_gpu) ---------------


def _on_gpu(*arrays: Any) -> bool:
    return any(_gpu.is_gpu_array(x) for x in arrays)


def _no_stream_on_cpu(fn: str, stream: Any) -> None:
    if stream is not None:
        raise ValueError(f"{fn}: stream= applies to GPU arrays only; numpy inputs run on the CPU")


def _gpu_decode(fn, q, k, v, seqlens, softmax_scale, stream):
    q, k, v = _gpu.qkv(fn, q, k, v, 3)
    s = _seqlens(fn, None if seqlens is None else _gpu.host_ints(seqlens), q.shape[0], k.shape[1])
    scale = _scale(fn, softmax_scale, q.shape[-1])
    handle = _gpu.stream_handle(fn, stream, q)
    out, lse = _gpu.empty_outputs(q, q.shape, q.dtype)
    return q, k, v, s, scale, handle, out, lse


def _lean_attention_cuda(q, k, v, seqlens=None, softmax_scale=None, *, grid=None, two_kernel=False,
                         stream=None):
    """lean_attention on the GPU with its knobs; returns (out, lse, launch),
    launch = {grid, ctas_per_sm, sm_count, two_kernel, core}. ``grid`` None: one
    wave (SMs x the occupancy query's CTAs per SM); a larger grid, or
    ``two_kernel=True``, runs the safe two-kernel form (partials kernel, then
    merge kernel) instead of the host CTAs waiting on flags."""
    fn = "lean_attention"
    q, k, v, s, scale, handle, out, lse = _gpu_decode(fn, q, k, v, seqlens, softmax_scale, stream)
    grid = 0 if grid is None else _int(fn, "grid", grid, 1)
    two_kernel = _bool(fn, "two_kernel", two_kernel)
    launch = require_extension().lean_attention_cuda(
        q.ptr, k.ptr, v.ptr, q.shape[0], q.shape[1], k.shape[2], q.shape[2], k.shape[1], q.dtype, s,
        scale, grid, two_kernel, _gpu.ptr_of(out), _gpu.ptr_of(lse), q.device, handle, _gpu.POISON)
    return out, lse, launch


def _split_kv_attention_cuda(q, k, v, seqlens=None, softmax_scale=None, num_splits=None, *, stream=None):
    """split_kv_attention on the GPU; returns (out, lse, launch), launch =
    {splits, sm_count, core} (the heuristic uses the device's SM count; core:
    "mma" for the tensor-core kernels, "scalar" for the CUDA-core ones)."""
    fn = "split_kv_attention"
    q, k, v, s, scale, handle, out, lse = _gpu_decode(fn, q, k, v, seqlens, softmax_scale, stream)
    splits = 0 if num_splits is None else _int(fn, "num_splits", num_splits, 1, MAX_SPLITS)
    launch = require_extension().split_kv_attention_cuda(
        q.ptr, k.ptr, v.ptr, q.shape[0], q.shape[1], k.shape[2], q.shape[2], k.shape[1], q.dtype, s,
        scale, splits, _gpu.ptr_of(out), _gpu.ptr_of(lse), q.device, handle, _gpu.POISON)
    return out, lse, launch


def _lean_attention(q, k, v, seqlens=None, softmax_scale=None, *, grid=None, tile=None,
                    two_kernel=False, stream=None):
    """lean_attention with the schedule's knobs: ``grid`` CTAs (CPU default
    one wave of an H100: 132 SMs x 2; GPU default one wave of the device) and
    ``tile`` keys per LeanTile (default kv_tile_size(head_dim): 256 / 128 /
    64; CPU only). GPU only: ``two_kernel`` (see _lean_attention_cuda)."""
    fn = "lean_attention"
    if _on_gpu(q, k, v):
        if tile is not None:
            raise ValueError(f"{fn}: tile is fixed on the GPU (kv_tile_size(head_dim))")
        out, lse, _ = _lean_attention_cuda(q, k, v, seqlens, softmax_scale, grid=grid,
                                           two_kernel=two_kernel, stream=stream)
        return out, lse
    _no_stream_on_cpu(fn, stream)
    q, k, v, s, scale = _decode_args(fn, q, k, v, seqlens, softmax_scale)
    grid = DEFAULT_SM_COUNT * DEFAULT_LEAN_CTAS_PER_SM if grid is None else _int(fn, "grid", grid, 1)
    tile = 0 if tile is None else _int(fn, "tile", tile, 1)
    ext = require_extension()
    out, lse = _outputs(q.shape, q.dtype)
    ext.lean_attention_cpu(q, k, v, s, scale, grid, tile, out, lse)
    return out, lse


def lean_attention(q, k, v, *, seqlens=None, softmax_scale=None, stream=None):
    """Decode attention by LeanAttention's stream-K partition.

    ``q`` [B, Hq, D] (one query token per sequence), ``k`` and ``v`` [B, S,
    Hkv, D] (the KV caches), ``seqlens`` optional [B] integers: sequence b
    uses cache positions [0, seqlens[b]), 0 <= seqlens[b] <= S (0: that
    sequence's out is 0 and lse -inf); None: all S. Returns ``out`` [B, Hq,
    D] and ``lse`` [B, Hq].

    The flattened (batch, KV head, KV tile) space is cut into equal
    contiguous ranges over a one-wave grid (CPU: 264 "CTAs", an H100's 132
    SMs x 2; GPU: the device's SMs x resident CTAs per SM); the host CTA of
    each output merges the partials of the CTAs that shared it. GPU arrays
    run the CUDA kernel on their device (``stream``: see _attention_gpu).
    """
    return _lean_attention(q, k, v, seqlens, softmax_scale, stream=stream)


def _split_kv_attention(q, k, v, seqlens=None, softmax_scale=None, num_splits=None, *, sm_count=None,
                        stream=None):
    """split_kv_attention with the SM count its heuristic assumes (default
    132; CPU only: the GPU uses its own); also returns the splits used."""
    fn = "split_kv_attention"
    if _on_gpu(q, k, v):
        if sm_count is not None:
            raise ValueError(f"{fn}: sm_count is the device's own on the GPU")
        out, lse, launch = _split_kv_attention_cuda(q, k, v, seqlens, softmax_scale, num_splits, stream=stream)
        return out, lse, launch["splits"]
    _no_stream_on_cpu(fn, stream)
    q, k, v, s, scale = _decode_args(fn, q, k, v, seqlens, softmax_scale)
    splits = 0 if num_splits is None else _int(fn, "num_splits", num_splits, 1, MAX_SPLITS)
    sms = DEFAULT_SM_COUNT if sm_count is None else _int(fn, "sm_count", sm_count, 1)
    ext = require_extension()
    out, lse = _outputs(q.shape, q.dtype)
    used = ext.split_kv_attention_cpu(q, k, v, s, scale, splits, sms, out, lse)
    return out, lse, used


def split_kv_attention(q, k, v, *, seqlens=None, softmax_scale=None, num_splits=None, stream=None):
    """Decode attention as FlashDecoding does it (FlashAttention-2's split-KV
    kernel and combine). Arguments and results as :func:`lean_attention`.

    ``num_splits``: 1 to 128 splits of the KV tiles; None: FlashAttention-2's
    num_splits_heuristic for batch x Hkv CTAs on an H100's 132 SMs. Split z
    takes tiles [z n, (z+1) n), n = ceil(tiles / splits), of 256 / 128 / 64
    keys for head_dim <= 64 / <= 128 / more; partials are combined in fp32.
    On the GPU the heuristic uses the device's SM count.
    """
    out, lse, _ = _split_kv_attention(q, k, v, seqlens, softmax_scale, num_splits, stream=stream)
    return out, lse


# --- tree ------------------------------------------------------------------------------


def tree_attention(q, k, v, parents, *, softmax_scale=None, stream=None):
    """Attention of T speculative tree tokens over a P-token prefix.

    ``q`` [B, T, Hq, D] (1 <= T <= 256), ``k`` and ``v`` [B, P + T, Hkv, D]
    (the prefix, then the tree tokens in tree order), ``parents`` [T] (one
    tree for the batch) or [B, T] integers: -1 for a root, else the index of
    an earlier tree token (0 <= parents[i] < i). Tree token i attends to all
    P prefix tokens and to its ancestors-or-self. Returns ``out`` [B, T, Hq,
    D] and ``lse`` [B, T, Hq]. The prefix is read once per (batch, KV head)
    for all T queries.
    """
    import numpy as np
    fn = "tree_attention"
    q, k, v, gpu = _sequence_inputs(fn, q, k, v, stream)
    batch, tokens = q.shape[0], q.shape[1]
    if tokens > MAX_TREE_TOKENS:
        raise ValueError(f"{fn}: q holds {tokens} tree tokens, at most {MAX_TREE_TOKENS} are supported")
    if k.shape[1] < tokens:
        raise ValueError(
            f"{fn}: k must hold the prefix and the {tokens} tree tokens of q, got {k.shape[1]} positions"
        )
    p = _int_array(fn, "parents", parents)
    if p.shape not in ((tokens,), (batch, tokens)):
        raise ValueError(f"{fn}: parents must have shape ({tokens},) or ({batch}, {tokens}), got {p.shape}")
    index = np.arange(tokens)
    bad = np.argwhere((p != -1) & ((p < 0) | (p >= index)))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{fn}: parents[{', '.join(map(str, where))}] = {int(p[where])}: must be -1 (a root) "
            f"or an earlier token in [0, {where[-1]})"
        )
    scale = _scale(fn, softmax_scale, q.shape[-1])
    ext = require_extension()
    if gpu:
        handle = _gpu.stream_handle(fn, stream, q)
        out, lse = _gpu.empty_outputs(q, q.shape, q.dtype)
        ext.tree_attention_cuda(q.ptr, k.ptr, v.ptr, p, p.ndim == 2, batch, tokens, k.shape[1] - tokens,
                                q.shape[2], k.shape[2], q.shape[3], q.dtype, scale, _gpu.ptr_of(out),
                                _gpu.ptr_of(lse), q.device, handle, _gpu.POISON)
        return out, lse
    out, lse = _outputs(q.shape, q.dtype)
    ext.tree_attention_cpu(q, k, v, p, scale, out, lse)
    return out, lse


# --- blocks, merge, ring -----------------------------------------------------------------


def block_attention(q, k, v, *, causal=False, softmax_scale=None, stream=None):
    """One Q block against one KV block: ``q`` [B, Sq, Hq, D], ``k`` and
    ``v`` [B, Sk, Hkv, D]. ``causal``: bottom-right aligned, query i sees
    key j iff j <= i + Sk - Sq (rows seeing nothing: out 0, lse -inf).
    Returns ``out`` [B, Sq, Hq, D] and ``lse`` [B, Sq, Hq]; merge partials of
    the same queries over disjoint keys with :func:`merge_attention`."""
    fn = "block_attention"
    if _on_gpu(q, k, v):
        q, k, v = _gpu.qkv(fn, q, k, v, 4)
        causal = _bool(fn, "causal", causal)
        scale = _scale(fn, softmax_scale, q.shape[-1])
        handle = _gpu.stream_handle(fn, stream, q)
        out, lse = _gpu.empty_outputs(q, q.shape, q.dtype)
        require_extension().block_attention_cuda(
            q.ptr, k.ptr, v.ptr, q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3],
            causal, q.dtype, scale, _gpu.ptr_of(out), _gpu.ptr_of(lse), q.device, handle, _gpu.POISON)
        return out, lse
    _no_stream_on_cpu(fn, stream)
    q, k, v = _qkv(fn, q, k, v, 4)
    causal = _bool(fn, "causal", causal)
    scale = _scale(fn, softmax_scale, q.shape[-1])
    ext = require_extension()
    out, lse = _outputs(q.shape, q.dtype)
    ext.block_attention_cpu(q, k, v, causal, scale, out, lse)
    return out, lse


def merge_attention(out_a, lse_a, out_b, lse_b, *, stream=None):
    """Merge two partial results of the same rows over disjoint key sets:
    ``out_*`` [..., D] float32 or float16 (one dtype), ``lse_*`` [...]
    float32. With m = max(lse_a, lse_b): out = (e^(lse_a-m) out_a +
    e^(lse_b-m) out_b) / (e^(lse_a-m) + e^(lse_b-m)), lse = m + log(...).
    A -inf side is empty: the other is returned; both -inf gives 0, -inf.
    Returns new arrays (out in the dtype of out_a, lse float32). On the GPU
    (head_dim 64 or 128) the lse values are not scanned for NaN / +inf."""
    import numpy as np
    fn = "merge_attention"
    if _on_gpu(out_a, lse_a, out_b, lse_b):
        return _merge_attention_cuda(fn, out_a, lse_a, out_b, lse_b, stream)
    _no_stream_on_cpu(fn, stream)
    a = _array(fn, "out_a", out_a)
    if a.ndim < 1:
        raise ValueError(f"{fn}: out_a must have at least 1 dimension (head_dim), got shape {a.shape}")
    a = _float_array(fn, "out_a", a, a.ndim)
    b = _float_array(fn, "out_b", out_b, a.ndim, a, "out_a")
    if b.shape != a.shape:
        raise ValueError(f"{fn}: out_b must have the shape of out_a {a.shape}, got {b.shape}")
    lses = []
    for name, x in (("lse_a", lse_a), ("lse_b", lse_b)):
        lx = _array(fn, name, x)
        if lx.dtype != np.float32:
            raise TypeError(f"{fn}: {name} must have dtype float32, got {lx.dtype}")
        if lx.shape != a.shape[:-1]:
            raise ValueError(f"{fn}: {name} must have shape {a.shape[:-1]} (out_a without head_dim), got {lx.shape}")
        if not lx.flags.c_contiguous:
            raise ValueError(f"{fn}: {name} must be C-contiguous; pass numpy.ascontiguousarray({name})")
        if np.isnan(lx).any() or np.isposinf(lx).any():
            raise ValueError(f"{fn}: {name} must be finite or -inf (an empty partial)")
        lses.append(lx)
    ext = require_extension()
    out, lse = _outputs(a.shape, a.dtype)
    ext.merge_attention_cpu(a, lses[0], b, lses[1], out, lse)
    return out, lse


def ring_attention(q, k, v, *, world_size, causal=False, softmax_scale=None, stream=None):
    """Ring attention over ``world_size`` virtual ranks; equals full
    (non-causal or causal) self-attention of ``q`` [B, S, Hq, D] over ``k``
    and ``v`` [B, S, Hkv, D]. Returns ``out`` [B, S, Hq, D], ``lse`` [B, S, Hq].

    Not causal: rank r holds positions [r S/W, (r+1) S/W); S % W == 0.
    Causal: the zigzag layout balancing the causal work, S cut into 2W chunks,
    rank r holding chunks r and 2W-1-r; S % (2W) == 0. Each rank attends its
    Q block to every rank's KV block in ring order (step t: the block of rank
    (r - t) mod W) and merges the partials in fp32.
    """
    fn = "ring_attention"
    q, k, v, gpu = _sequence_inputs(fn, q, k, v, stream)
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"{fn}: q and k must have the same sequence length, got {q.shape[1]} and {k.shape[1]}")
    world = _int(fn, "world_size", world_size, 1)
    causal = _bool(fn, "causal", causal)
    seq = q.shape[1]
    parts = 2 * world if causal else world
    if seq % parts != 0:
        need = f"2 x world_size = {parts}" if causal else f"world_size = {parts}"
        raise ValueError(f"{fn}: world_size={world}: the sequence length {seq} must be a multiple of {need}")
    scale = _scale(fn, softmax_scale, q.shape[-1])
    ext = require_extension()
    if gpu:
        handle = _gpu.stream_handle(fn, stream, q)
        out, lse = _gpu.empty_outputs(q, q.shape, q.dtype)
        ext.ring_attention_cuda(q.ptr, k.ptr, v.ptr, q.shape[0], seq, q.shape[2], k.shape[2], q.shape[3],
                                world, causal, q.dtype, scale, _gpu.ptr_of(out), _gpu.ptr_of(lse),
                                q.device, handle, _gpu.POISON)
        return out, lse
    out, lse = _outputs(q.shape, q.dtype)
    ext.ring_attention_cpu(q, k, v, world, causal, scale, out, lse)
    return out, lse


def _merge_attention_cuda(fn, out_a, lse_a, out_b, lse_b, stream):
    from ._backends import check_cuda
    check_cuda()
    a = _gpu.describe(fn, "out_a", out_a) if _gpu.is_gpu_array(out_a) else None
    if a is None:
        raise ValueError(f"{fn}: out_a is not a GPU array while other inputs are; all arrays of one call "
                         "must be on one device")
    if len(a.shape) < 1 or a.shape[-1] not in _gpu.GPU_HEAD_DIMS:
        raise ValueError(f"{fn}: the CUDA merge supports head_dim {_gpu.GPU_HEAD_DIMS}, got shape {a.shape}")
    if a.dtype not in ("float32", "float16", "bfloat16"):
        raise TypeError(f"{fn}: out_a must have dtype float32, float16 or bfloat16, got {a.dtype}")
    if not a.contiguous:
        raise ValueError(f"{fn}: out_a must be C-contiguous")
    arrays = {}
    for name, x, shape, dtype in (("out_b", out_b, a.shape, a.dtype), ("lse_a", lse_a, a.shape[:-1], "float32"),
                                  ("lse_b", lse_b, a.shape[:-1], "float32")):
        if not _gpu.is_gpu_array(x):
            raise ValueError(f"{fn}: {name} is not a GPU array while out_a is; all arrays of one call "
                             "must be on one device")
        d = _gpu.describe(fn, name, x)
        if d.dtype != dtype:
            raise TypeError(f"{fn}: {name} must have dtype {dtype}, got {d.dtype}")
        if d.shape != shape:
            raise ValueError(f"{fn}: {name} must have shape {shape}, got {d.shape}")
        if not d.contiguous:
            raise ValueError(f"{fn}: {name} must be C-contiguous")
        if d.device != a.device:
            raise ValueError(f"{fn}: {name} is on CUDA device {d.device}, out_a on {a.device}")
        arrays[name] = d
    rows = math.prod(a.shape[:-1])
    handle = _gpu.stream_handle(fn, stream, a)
    out, lse = _gpu.empty_outputs(a, a.shape, a.dtype)
    require_extension().merge_attention_cuda(
        a.ptr, arrays["lse_a"].ptr, arrays["out_b"].ptr, arrays["lse_b"].ptr, rows, a.shape[-1], a.dtype,
        _gpu.ptr_of(out), _gpu.ptr_of(lse), a.device, handle, _gpu.POISON)
    return out, lse


def _bool(fn: str, name: str, value: Any) -> bool:
    import numpy as np
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be a bool, got {type(value).__name__}")
    return bool(value)


# --- schedule (the C++ code the kernels use) ----------------------------------------------


def attention_schedule_splits(ctas: int, n_blocks: int, sm_count: int, max_splits: int = MAX_SPLITS) -> int:
    """FlashAttention-2's num_splits_heuristic as the split-KV kernels compute
    it (``attention_schedule.h``): slots = 2 x sm_count."""
    fn = "attention_schedule_splits"
    return require_extension().attention_schedule_splits(
        _int(fn, "ctas", ctas, 1), _int(fn, "n_blocks", n_blocks, 0), _int(fn, "sm_count", sm_count, 1),
        _int(fn, "max_splits", max_splits, 1),
    )


def attention_lean_partition(seqlens, kv_heads: int, tile: int, grid: int) -> dict:
    """LeanAttention's partition as the kernels compute it: ``total_tiles``,
    ``offsets`` (first global tile of each output o = b x Hkv + h),
    ``cta_begin``/``cta_end`` (each CTA's global tiles), ``host``/``last``
    (per output: the CTA holding its tile 0 and the last CTA touching it;
    contributors are host+1..last) and ``segments`` (cta, output,
    tile_begin, tile_end, is_host, is_whole)."""
    fn = "attention_lean_partition"
    s = _int_array(fn, "seqlens", seqlens)
    return require_extension().attention_lean_partition(
        [int(x) for x in s.ravel()], _int(fn, "kv_heads", kv_heads, 1), _int(fn, "tile", tile, 1),
        _int(fn, "grid", grid, 1),
    )


def attention_ring_layout(seq: int, world_size: int, causal: bool) -> dict:
    """Ring attention's layout as the kernels compute it: ``global_rows``
    (per rank, the global position of each local row) and ``steps`` (per rank
    and step: source rank, q_begin, q_end, kv_begin, kv_end, causal)."""
    fn = "attention_ring_layout"
    return require_extension().attention_ring_layout(
        _int(fn, "seq", seq, 1), _int(fn, "world_size", world_size, 1), _bool(fn, "causal", causal)
    )

# Type stub of the compiled module kernels_cuda._ext (bindings/). Private:
# use the kernels_cuda package.
from typing import Any

import numpy as np

INTERFACE_VERSION: int
# {"cuda_compiled": bool, "cuda_architectures": "80,90", "cuda_compiler_version": "13.0.88"}
BUILD_INFO: dict[str, Any]

def triad_cpu(
    b: np.ndarray, c: np.ndarray, scalar: float, *, out: np.ndarray | None = None
) -> np.ndarray: ...

# {"compiled": bool, "runtime_version": int, "driver_version": int,
#  "devices": list[dict], "reason": str | None}
def cuda_runtime_report() -> dict[str, Any]: ...
def cuda_stream_bandwidth(n_bytes: int, repeats: int, warmup: int, device: int) -> dict[str, Any]: ...

# Attention CPU twins (bindings/attention_bindings.cpp): write into out/lse.
def lean_attention_cpu(q: np.ndarray, k: np.ndarray, v: np.ndarray, seqlens: np.ndarray | None,
                       scale: float, grid: int, tile: int, out: np.ndarray, lse: np.ndarray) -> None: ...
def split_kv_attention_cpu(q: np.ndarray, k: np.ndarray, v: np.ndarray, seqlens: np.ndarray | None,
                           scale: float, num_splits: int, sm_count: int, out: np.ndarray,
                           lse: np.ndarray) -> int: ...
def tree_attention_cpu(q: np.ndarray, k: np.ndarray, v: np.ndarray, parents: np.ndarray,
                       scale: float, out: np.ndarray, lse: np.ndarray) -> None: ...
def block_attention_cpu(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool, scale: float,
                        out: np.ndarray, lse: np.ndarray) -> None: ...
def ring_attention_cpu(q: np.ndarray, k: np.ndarray, v: np.ndarray, world_size: int, causal: bool,
                       scale: float, out: np.ndarray, lse: np.ndarray) -> None: ...
def merge_attention_cpu(out_a: np.ndarray, lse_a: np.ndarray, out_b: np.ndarray, lse_b: np.ndarray,
                        out: np.ndarray, lse: np.ndarray) -> None: ...
def attention_schedule_splits(ctas: int, n_blocks: int, sm_count: int, max_splits: int = 128) -> int: ...
def attention_lean_partition(seqlens: list[int], kv_heads: int, tile: int, grid: int) -> dict[str, Any]: ...
def attention_ring_layout(seq: int, world_size: int, causal: bool) -> dict[str, Any]: ...

ATTENTION_MAX_TREE_TOKENS: int
ATTENTION_MAX_SPLITS: int
ATTENTION_DEFAULT_SM_COUNT: int
ATTENTION_DEFAULT_LEAN_CTAS_PER_SM: int

# CUDA attention launchers (bindings/attention_cuda_bindings.cpp): device
# pointers as ints, host int64 seqlens/parents, a cudaStream_t as an int;
# they enqueue and return. Without CUDA they raise CudaUnavailableError.
def cuda_pointer_device(ptr: int) -> int: ...
def split_kv_attention_cuda(q: int, k: int, v: int, batch: int, heads: int, kv_heads: int, head_dim: int,
                            max_seqlen: int, dtype: str, seqlens: np.ndarray | None, scale: float,
                            num_splits: int, out: int, lse: int, device: int, stream: int,
                            poison: bool) -> dict[str, Any]: ...
def lean_attention_cuda(q: int, k: int, v: int, batch: int, heads: int, kv_heads: int, head_dim: int,
                        max_seqlen: int, dtype: str, seqlens: np.ndarray | None, scale: float, grid: int,
                        two_kernel: bool, out: int, lse: int, device: int, stream: int,
                        poison: bool) -> dict[str, Any]: ...
def tree_attention_cuda(q: int, k: int, v: int, parents: np.ndarray, parents_per_batch: bool, batch: int,
                        tree_tokens: int, prefix: int, heads: int, kv_heads: int, head_dim: int, dtype: str,
                        scale: float, out: int, lse: int, device: int, stream: int, poison: bool) -> None: ...
def block_attention_cuda(q: int, k: int, v: int, batch: int, q_len: int, kv_len: int, heads: int,
                         kv_heads: int, head_dim: int, causal: bool, dtype: str, scale: float, out: int,
                         lse: int, device: int, stream: int, poison: bool) -> None: ...
def merge_attention_cuda(out_a: int, lse_a: int, out_b: int, lse_b: int, rows: int, head_dim: int,
                         dtype: str, out: int, lse: int, device: int, stream: int, poison: bool) -> None: ...
def ring_attention_cuda(q: int, k: int, v: int, batch: int, seq: int, heads: int, kv_heads: int,
                        head_dim: int, world_size: int, causal: bool, dtype: str, scale: float, out: int,
                        lse: int, device: int, stream: int, poison: bool) -> None: ...

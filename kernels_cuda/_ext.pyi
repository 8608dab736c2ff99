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

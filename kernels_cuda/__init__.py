"""kernels_cuda: kernelab's CUDA kernels and their CPU twins.

Importing never needs a GPU, a driver, or even the compiled extension; ask
backends() what can run. Code that needs CUDA calls require_cuda() (or a CUDA
function) and gets CudaUnavailableError saying why, never a CPU fallback.
"""

from ._attention import (
    attention_lean_partition,
    attention_ring_layout,
    attention_schedule_splits,
    block_attention,
    lean_attention,
    merge_attention,
    ring_attention,
    split_kv_attention,
    tree_attention,
)
from ._backends import backends, require_cuda
from ._errors import CudaUnavailableError, ExtensionNotBuiltError
from ._stream import cuda_stream_bandwidth
from ._triad import triad_cpu

__all__ = [
    "CudaUnavailableError",
    "ExtensionNotBuiltError",
    "attention_lean_partition",
    "attention_ring_layout",
    "attention_schedule_splits",
    "backends",
    "block_attention",
    "cuda_stream_bandwidth",
    "lean_attention",
    "merge_attention",
    "require_cuda",
    "ring_attention",
    "split_kv_attention",
    "tree_attention",
    "triad_cpu",
]

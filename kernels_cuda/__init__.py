"""kernels_cuda: kernelab's CUDA kernels and their CPU twins.

Importing never needs a GPU, a driver, or even the compiled extension; ask
backends() what can run. Code that needs CUDA calls require_cuda() (or a CUDA
function) and gets CudaUnavailableError saying why, never a CPU fallback.
"""

from ._backends import backends, require_cuda
from ._errors import CudaUnavailableError, ExtensionNotBuiltError
from ._stream import cuda_stream_bandwidth
from ._triad import triad_cpu

__all__ = [
    "CudaUnavailableError",
    "ExtensionNotBuiltError",
    "backends",
    "cuda_stream_bandwidth",
    "require_cuda",
    "triad_cpu",
]

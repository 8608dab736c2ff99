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

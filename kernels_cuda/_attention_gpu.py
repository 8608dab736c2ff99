"""The GPU path of the attention API (issue 5): CUDA arrays in, CUDA arrays out.

Inputs are arrays exposing ``__cuda_array_interface__`` (CuPy, Numba, ...)
or PyTorch CUDA tensors (read through their own attributes, so bfloat16
works; PyTorch's ``__cuda_array_interface__`` refuses bfloat16). Nothing is
copied: the kernels read the inputs where they are. Checked before any
launch: CUDA usable (``require_cuda()``), dtype (float32, float16 or
bfloat16; one dtype for q, k, v), shapes, C-contiguity, one device for all
arrays (asked of the CUDA runtime from the pointer). Outputs are allocated by
the library the inputs came from (``torch.empty`` / ``cupy.empty``; imported
lazily, only that one) on the same device. With ``POISON`` set (the GPU
tests and the compute-sanitizer script set it) the launcher first fills them
with NaN on the stream, so an element no kernel writes shows up.

``stream``: None (the library's current stream: ``torch.cuda.current_stream``
or ``cupy.cuda.get_current_stream``; 0, the legacy default stream, for other
libraries), an int (a cudaStream_t handle), or an object with ``cuda_stream``
(torch) or ``ptr`` (cupy). The call enqueues and returns; ordering with work
on other streams is the caller's business, as with any CUDA library.

``seqlens`` and ``parents`` are small host integer arrays (numpy or lists);
a GPU array is copied to the host by its own library (a synchronisation).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from ._backends import check_cuda
from ._loader import require_extension
from ._shapes import check_qkv_shapes

# Fill outputs with NaN before the kernels run (tests); off for real calls.
POISON = False

GPU_HEAD_DIMS = (64, 128)
_FLOAT_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class GpuArray:
    """What the launchers need of a device array."""

    obj: Any
    lib: str  # "torch", "cupy" or "other"
    ptr: int
    shape: tuple[int, ...]
    dtype: str
    device: int
    contiguous: bool


def is_gpu_array(x: Any) -> bool:
    if hasattr(x, "__cuda_array_interface__") and type(x).__module__.split(".")[0] != "torch":
        return True
    if type(x).__module__.split(".")[0] == "torch":
        return bool(getattr(x, "is_cuda", False))
    dlpack_device = getattr(x, "__dlpack_device__", None)
    if callable(dlpack_device):
        try:
            return int(dlpack_device()[0]) != 1  # kDLCPU
        except Exception:
            return False
    return False


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def describe(fn: str, name: str, x: Any) -> GpuArray:
    """Pointer, shape, dtype, device and contiguity of a CUDA array."""
    lib = type(x).__module__.split(".")[0]
    ext = require_extension()
    if lib == "torch":
        if not getattr(x, "is_cuda", False):
            raise ValueError(f"{fn}: {name} is a torch tensor on {x.device}, not on a CUDA device; "
                             "all arrays of one call must be on one GPU")
        dtype = str(x.dtype).replace("torch.", "")
        shape = tuple(int(n) for n in x.shape)
        ptr = int(x.data_ptr())
        device = int(x.device.index if x.device.index is not None else 0)
        contiguous = bool(x.is_contiguous())
    else:
        cai = getattr(x, "__cuda_array_interface__", None)
        if cai is None:
            raise TypeError(
                f"{fn}: {name} ({type(x).__name__}) is a GPU array without __cuda_array_interface__; "
                "pass a CuPy array or a PyTorch CUDA tensor"
            )
        import numpy as np
        shape = tuple(int(n) for n in cai["shape"])
        try:
            npd = np.dtype(cai["typestr"])
        except TypeError:
            raise TypeError(f"{fn}: {name} has an unknown dtype {cai['typestr']!r}") from None
        dtype = npd.name if npd.isnative or npd.itemsize == 1 else f"{npd.name} (non-native byte order)"
        ptr = int(cai["data"][0])
        strides = cai.get("strides")
        contiguous = strides is None or tuple(strides) == _c_strides(shape, npd.itemsize) or 0 in shape
        lib = "cupy" if lib == "cupy" else "other"
        device = -1
        if ptr != 0:
            try:
                device = int(ext.cuda_pointer_device(ptr))
            except ValueError as e:
                raise ValueError(f"{fn}: {name}: {e}") from None
    if 0 in shape:
        raise ValueError(f"{fn}: {name} must not be empty, got shape {shape}")
    return GpuArray(x, lib, ptr, shape, dtype, device, contiguous)


def _float_input(fn: str, name: str, x: Any, ndim: int, like: GpuArray | None = None) -> GpuArray:
    if not is_gpu_array(x):
        raise ValueError(
            f"{fn}: {name} ({type(x).__name__}) is not a GPU array while the other inputs are; "
            "all arrays of one call must be on one device (nothing is copied behind your back)"
        )
    a = describe(fn, name, x)
    if like is None:
        if a.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{fn}: {name} must have dtype float32, float16 or bfloat16, got {a.dtype}")
    elif a.dtype != like.dtype:
        raise TypeError(f"{fn}: {name} must have the dtype of q ({like.dtype}), got {a.dtype}")
    if len(a.shape) != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {a.shape}")
    if not a.contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous; pass a contiguous copy ({name}.contiguous())")
    if like is not None and a.device != like.device:
        raise ValueError(f"{fn}: {name} is on CUDA device {a.device}, q on device {like.device}; "
                         "all arrays of one call must be on one GPU")
    return a


def qkv(fn: str, q: Any, k: Any, v: Any, q_ndim: int) -> tuple[GpuArray, GpuArray, GpuArray]:
    check_cuda()
    q = _float_input(fn, "q", q, q_ndim)
    k = _float_input(fn, "k", k, 4, q)
    v = _float_input(fn, "v", v, 4, q)
    check_qkv_shapes(fn, q.shape, k.shape, v.shape)
    if q.shape[-1] not in GPU_HEAD_DIMS:
        raise ValueError(f"{fn}: the CUDA kernels support head_dim {GPU_HEAD_DIMS}, got {q.shape[-1]}")
    return q, k, v


def host_ints(x: Any) -> Any:
    """A GPU integer array copied to the host by its own library; else x."""
    if not is_gpu_array(x):
        return x
    lib = type(x).__module__.split(".")[0]
    if lib == "torch":
        return x.detach().cpu().numpy()
    if lib == "cupy":
        return x.get()
    raise TypeError(f"pass {type(x).__name__} integer arrays as numpy arrays or lists")


def empty_outputs(like: GpuArray, shape: tuple[int, ...], dtype: str) -> tuple[Any, Any]:
    """out (dtype) and lse (float32, shape[:-1]) on like's device, by like's library."""
    if like.lib == "torch":
        import torch
        device = like.obj.device
        return (torch.empty(shape, dtype=getattr(torch, dtype), device=device),
                torch.empty(shape[:-1], dtype=torch.float32, device=device))
    if like.lib == "cupy":
        import cupy
        with cupy.cuda.Device(like.device):
            return cupy.empty(shape, dtype=dtype), cupy.empty(shape[:-1], dtype="float32")
    raise TypeError(
        f"outputs can be allocated for CuPy arrays and PyTorch tensors, not {type(like.obj).__name__}"
    )


def ptr_of(x: Any) -> int:
    if type(x).__module__.split(".")[0] == "torch":
        return int(x.data_ptr())
    return int(x.__cuda_array_interface__["data"][0])


def stream_handle(fn: str, stream: Any, like: GpuArray) -> int:
    if stream is None:
        if like.lib == "torch":
            import torch
            return int(torch.cuda.current_stream(like.obj.device).cuda_stream)
        if like.lib == "cupy":
            import cupy
            with cupy.cuda.Device(like.device):
                return int(cupy.cuda.get_current_stream().ptr)
        return 0
    if isinstance(stream, numbers.Integral) and not isinstance(stream, bool):
        if int(stream) < 0:
            raise ValueError(f"{fn}: stream must be a cudaStream_t handle >= 0, got {stream}")
        return int(stream)
    for attr in ("cuda_stream", "ptr"):
        value = getattr(stream, attr, None)
        if isinstance(value, numbers.Integral):
            return int(value)
    raise TypeError(f"{fn}: stream must be None, an int handle, or have .cuda_stream / .ptr, "
                    f"got {type(stream).__name__}")

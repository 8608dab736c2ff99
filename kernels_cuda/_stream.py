"""The HBM stream probe: cuda_stream_bandwidth()."""

from __future__ import annotations

import operator
from typing import Any

from ._backends import require_cuda
from ._loader import require_extension

# float64: the smallest array holds one element.
_MIN_BYTES = 8


def _int_argument(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def cuda_stream_bandwidth(
    n_bytes: int, repeats: int = 20, warmup: int = 3, *, device: int = 0
) -> dict[str, Any]:
    """Measure device-memory bandwidth with the STREAM triad ``a = b + 3*c``.

    ``n_bytes`` is the size of EACH of the three float64 device arrays
    (rounded down to whole elements), so one pass moves ``3 * n_bytes``: pick
    it well above the L2 size to measure HBM. The arrays are allocated with
    cudaMalloc; the output is poisoned (NaN) first; ``warmup`` untimed passes,
    then ``repeats`` passes each timed with CUDA events; the whole result is
    checked on the host against the CPU twin.

    Returns a dict: ``bytes_per_s`` (bytes_moved / time_s), ``time_s``
    (median pass), ``bytes_moved`` (per pass), ``device`` (name), and also
    ``device_index``, ``n_elements``, ``dtype``, ``repeats``, ``warmup``,
    ``time_s_min``, ``time_s_max``, ``max_abs_error`` (vs the CPU twin).

    Raises TypeError/ValueError for bad arguments, CudaUnavailableError when
    CUDA is not usable (never falls back to the CPU), RuntimeError when a CUDA
    call fails (with the CUDA error) or the result is wrong.
    """
    n_bytes = _int_argument("n_bytes", n_bytes, _MIN_BYTES)
    repeats = _int_argument("repeats", repeats, 1)
    warmup = _int_argument("warmup", warmup, 0)
    device = _int_argument("device", device, 0)
    require_cuda()
    return require_extension().cuda_stream_bandwidth(n_bytes, repeats, warmup, device)

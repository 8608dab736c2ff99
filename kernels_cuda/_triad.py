"""The STREAM triad on the CPU: triad_cpu()."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

from ._loader import require_extension

if TYPE_CHECKING:
    import numpy as np


def _real_scalar(scalar: object) -> float:
    # bool is an int to Python, but passing one here is a bug, not a number.
    if isinstance(scalar, bool) or not isinstance(scalar, numbers.Real):
        raise TypeError(f"scalar must be a real number, got {type(scalar).__name__}")
    return float(scalar)


def triad_cpu(
    b: np.ndarray, c: np.ndarray, scalar: float, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Return ``a = b + scalar * c``, computed by the CPU twin of the CUDA
    triad kernel (same per-element code).

    ``b`` and ``c``: 1-D numpy arrays of one shape and one dtype, float32 or
    float64 in native byte order; any stride that is a whole number of
    elements (reversed and strided views are fine). ``scalar`` is converted
    to the arrays' dtype. The result has that dtype and is contiguous: a new
    array, or ``out`` if given (a writeable contiguous array of b's dtype and
    shape; it may be ``b`` or ``c`` itself, but not otherwise overlap them).

    Raises TypeError (not an ndarray, wrong or mismatched dtype, scalar not a
    real number), ValueError (not 1-D, shapes differ, stride or alignment not
    whole elements, unusable ``out``) before computing anything, and ExtensionNotBuiltError
    when the compiled module is missing.
    """
    ext = require_extension()
    return ext.triad_cpu(b, c, _real_scalar(scalar), out=out)

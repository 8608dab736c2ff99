"""kernels_cuda.triad_cpu: the CPU twin of the CUDA triad, against an
obviously-correct float64 numpy reference, on awkward sizes and layouts, and
every bad input rejected with the right error before any work."""

import numpy as np
import pytest

import kernels_cuda

pytestmark = pytest.mark.skipif(
    not kernels_cuda.backends()["cpu"], reason="kernels_cuda extension not built"
)

SIZES = [1, 19, 99, 989, 100003]
DTYPES = [np.float32, np.float64]
SCALAR = 3.0


def reference_triad(b, c, scalar):
    """a = b + scalar * c in float64, whatever the input dtype."""
    b64 = np.asarray(b, dtype=np.float64)
    c64 = np.asarray(c, dtype=np.float64)
    return b64 + np.float64(np.asarray(scalar, dtype=b.dtype)) * c64


def assert_matches_reference(a, b, c, scalar):
    """Each element within a few ulps of the dtype, relative to the terms
    summed (so cancellation in b + s*c does not demand the impossible)."""
    assert a.dtype == b.dtype
    expected = reference_triad(b, c, scalar)
    scale = np.abs(b.astype(np.float64)) + np.abs(np.float64(scalar) * c.astype(np.float64))
    tolerance = 4 * np.finfo(b.dtype).eps * scale + np.finfo(b.dtype).tiny
    error = np.abs(a.astype(np.float64) - expected)
    bad = ~(error <= tolerance)  # NaN (poison left behind) counts as bad
    assert not bad.any(), f"{bad.sum()} elements off, first at {np.flatnonzero(bad)[0]}"


def random_vector(rng, n, dtype):
    return rng.standard_normal(n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_matches_reference(n, dtype):
    rng = np.random.default_rng(n)
    b, c = random_vector(rng, n, dtype), random_vector(rng, n, dtype)
    a = kernels_cuda.triad_cpu(b, c, SCALAR)
    assert a.shape == (n,) and a.flags.c_contiguous
    assert_matches_reference(a, b, c, SCALAR)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_writes_every_element_of_poisoned_out(n, dtype):
    rng = np.random.default_rng(1000 + n)
    b, c = random_vector(rng, n, dtype), random_vector(rng, n, dtype)
    out = np.full(n, np.nan, dtype=dtype)
    a = kernels_cuda.triad_cpu(b, c, SCALAR, out=out)
    assert a is out or np.shares_memory(a, out)
    assert_matches_reference(out, b, c, SCALAR)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inputs_are_not_modified(dtype):
    rng = np.random.default_rng(7)
    b, c = random_vector(rng, 989, dtype), random_vector(rng, 989, dtype)
    b_before, c_before = b.copy(), c.copy()
    kernels_cuda.triad_cpu(b, c, SCALAR)
    np.testing.assert_array_equal(b, b_before)
    np.testing.assert_array_equal(c, c_before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_into_an_input(dtype):
    rng = np.random.default_rng(8)
    b, c = random_vector(rng, 99, dtype), random_vector(rng, 99, dtype)
    b_before = b.copy()
    kernels_cuda.triad_cpu(b, c, SCALAR, out=b)
    assert_matches_reference(b, b_before, c, SCALAR)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(lambda x: x[::3], id="step3"),
        pytest.param(lambda x: x[::-1], id="reversed"),
        pytest.param(lambda x: x[::-7], id="reversed-step7"),
        pytest.param(lambda x: x.reshape(-1, 1)[:, 0], id="column-view"),
        pytest.param(lambda x: np.asfortranarray(x.reshape(3, -1))[1], id="row-of-fortran"),
    ],
)
def test_non_contiguous_inputs(layout, dtype):
    rng = np.random.default_rng(9)
    base_b, base_c = random_vector(rng, 3 * 989 * 7, dtype), random_vector(rng, 3 * 989 * 7, dtype)
    b, c = layout(base_b), layout(base_c)
    a = kernels_cuda.triad_cpu(b, c, SCALAR)
    assert a.flags.c_contiguous
    assert_matches_reference(a, b, c, SCALAR)


def test_mixed_layouts_and_broadcast_input():
    rng = np.random.default_rng(10)
    b = random_vector(rng, 2 * 989, np.float64)[::2]
    c = np.broadcast_to(np.float64(0.25), (989,))  # stride 0, read-only
    a = kernels_cuda.triad_cpu(b, c, SCALAR)
    assert_matches_reference(a, b, np.ascontiguousarray(c), SCALAR)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_arrays(dtype):
    a = kernels_cuda.triad_cpu(np.empty(0, dtype), np.empty(0, dtype), SCALAR)
    assert a.shape == (0,) and a.dtype == dtype


@pytest.mark.parametrize("scalar", [0, -2, 0.5, np.float32(1.5), np.float64(-3.25)])
def test_scalar_kinds(scalar):
    rng = np.random.default_rng(11)
    b, c = random_vector(rng, 19, np.float32), random_vector(rng, 19, np.float32)
    assert_matches_reference(kernels_cuda.triad_cpu(b, c, scalar), b, c, scalar)


def test_special_values_propagate():
    b = np.array([np.inf, np.nan, 1.0, -0.0])
    c = np.array([1.0, 1.0, np.inf, -0.0])
    a = kernels_cuda.triad_cpu(b, c, 2.0)
    np.testing.assert_array_equal(a, b + 2.0 * c)


# --- bad inputs: each raises before computing --------------------------------

F64 = np.zeros(5)
F32 = np.zeros(5, np.float32)


def unaligned_f64(n):
    raw = np.zeros(n * 8 + 1, np.uint8)
    return raw[1:].view(np.float64)


@pytest.mark.parametrize(
    "b, c, scalar, error, match",
    [
        pytest.param(None, F64, 1.0, TypeError, "numpy.ndarray", id="b-None"),
        pytest.param(F64, None, 1.0, TypeError, "numpy.ndarray", id="c-None"),
        pytest.param([1.0, 2.0], [1.0, 2.0], 1.0, TypeError, "numpy.ndarray", id="lists"),
        pytest.param(np.zeros((2, 3)), np.zeros((2, 3)), 1.0, ValueError, "1-D", id="2-D"),
        pytest.param(np.float64(1.0), np.float64(1.0), 1.0, TypeError, "numpy.ndarray", id="numpy-scalars"),
        pytest.param(np.array(1.0), np.array(1.0), 1.0, ValueError, "1-D", id="0-D"),
        pytest.param(np.zeros(5, np.int64), np.zeros(5, np.int64), 1.0, TypeError, "float32 or float64", id="int64"),
        pytest.param(np.zeros(5, np.float16), np.zeros(5, np.float16), 1.0, TypeError, "float32 or float64", id="float16"),
        pytest.param(np.zeros(5, complex), np.zeros(5, complex), 1.0, TypeError, "float32 or float64", id="complex"),
        pytest.param(np.zeros(5, object), np.zeros(5, object), 1.0, TypeError, "float32 or float64", id="object"),
        pytest.param(np.zeros(5, ">f8"), np.zeros(5, ">f8"), 1.0, TypeError, "native byte order", id="big-endian"),
        pytest.param(F64, F32, 1.0, TypeError, "same dtype", id="mixed-dtypes"),
        pytest.param(F32, F64, 1.0, TypeError, "same dtype", id="mixed-dtypes-2"),
        pytest.param(F64, np.zeros(6), 1.0, ValueError, "same shape", id="shapes-differ"),
        pytest.param(np.zeros(5, [("x", "f8"), ("y", "f4")])["x"], F64, 1.0, ValueError, "stride", id="stride-not-whole"),
        pytest.param(unaligned_f64(5), F64, 1.0, ValueError, "aligned", id="unaligned"),
        pytest.param(F64, F64, None, TypeError, "scalar", id="scalar-None"),
        pytest.param(F64, F64, "2", TypeError, "scalar", id="scalar-str"),
        pytest.param(F64, F64, True, TypeError, "scalar", id="scalar-bool"),
        pytest.param(F64, F64, 1 + 2j, TypeError, "scalar", id="scalar-complex"),
        pytest.param(F64, F64, F64, TypeError, "scalar", id="scalar-array"),
    ],
)
def test_bad_inputs_raise(b, c, scalar, error, match):
    with pytest.raises(error, match=match):
        kernels_cuda.triad_cpu(b, c, scalar)


@pytest.mark.parametrize(
    "make_out, error, match",
    [
        pytest.param(lambda b, c: [0.0] * 5, TypeError, "numpy.ndarray", id="list"),
        pytest.param(lambda b, c: np.zeros(5, np.float32), TypeError, "dtype", id="dtype"),
        pytest.param(lambda b, c: np.zeros(6), ValueError, "shape", id="shape"),
        pytest.param(lambda b, c: np.zeros((5, 1)), ValueError, "shape", id="2-D"),
        pytest.param(lambda b, c: np.zeros(10)[::2], ValueError, "contiguous", id="strided"),
        pytest.param(lambda b, c: np.broadcast_to(np.zeros(1), (5,)), ValueError, "contiguous|read-only", id="broadcast"),
        pytest.param(lambda b, c: _read_only(np.zeros(5)), ValueError, "read-only", id="read-only"),
        pytest.param(lambda b, c: b.base[1:6], ValueError, "overlaps", id="shifted-overlap"),
    ],
)
def test_bad_out_raises(make_out, error, match):
    storage = np.arange(8, dtype=np.float64)
    b, c = storage[:5], np.ones(5)
    before = storage.copy()
    out = make_out(b, c)
    with pytest.raises(error, match=match):
        kernels_cuda.triad_cpu(b, c, 2.0, out=out)
    np.testing.assert_array_equal(storage, before)


def _read_only(x):
    x.flags.writeable = False
    return x

"""GPU tests of the attention kernels (kernels_cuda/src/attention_cuda.cu).

Every test is marked gpu (conftest skips it without a usable CUDA device) and
needs CuPy or PyTorch for device arrays (CuPy first; bfloat16 only with
PyTorch). Each kernel is checked against a float64 numpy reference and its
CPU twin on fresh random inputs of odd sizes; the launchers poison the
outputs with NaN, so a NaN left over is an element no kernel wrote. Also:
lean == two-kernel lean == split-KV, ring == full attention, bad device
inputs raise before any launch.

compute-sanitizer: kernels_cuda/bench/attention_device_run.sh runs memcheck, racecheck
and synccheck over a small call of each kernel (see attention_sanitize.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import kernels_cuda
from kernels_cuda import _attention as att

try:  # `python -m pytest` from the repo root, or tests/ made a package
    from tests._attention_reference import causal_mask, decode_reference, reference, tree_mask
except ImportError:  # pytest's default rootdir-less import puts tests/ itself on sys.path
    from _attention_reference import causal_mask, decode_reference, reference, tree_mask

pytestmark = pytest.mark.gpu


# --- the device library: cupy, else torch ---------------------------------------------------


class _Lib:
    def __init__(self):
        self.name = None
        try:
            import cupy  # noqa: F401
            self.name = "cupy"
        except Exception:
            try:
                import torch
                if torch.cuda.is_available():
                    self.name = "torch"
            except Exception:
                pass

    def to_device(self, x: np.ndarray, dtype: str):
        if self.name == "cupy":
            import cupy
            return cupy.asarray(x.astype(dtype))
        import torch
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to("cuda", getattr(torch, dtype))

    def to_host(self, x) -> np.ndarray:
        if self.name == "cupy":
            import cupy
            cupy.cuda.get_current_stream().synchronize()
            return cupy.asnumpy(x).astype(np.float64)
        import torch
        torch.cuda.synchronize()
        return x.float().cpu().numpy().astype(np.float64)

    def dtypes(self) -> list[str]:
        return ["float32", "float16"] + (["bfloat16"] if self.name == "torch" else [])


_LIBS: list[_Lib] = []


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """The launchers fill every output with NaN before the kernels run, so a
    NaN left over is an element no kernel wrote."""
    from kernels_cuda import _attention_gpu
    monkeypatch.setattr(_attention_gpu, "POISON", True)


@pytest.fixture
def lib():
    if not _LIBS:  # imported here, not at collection: most machines skip these tests
        _LIBS.append(_Lib())
    if _LIBS[0].name is None:
        pytest.skip("needs CuPy or PyTorch (with CUDA) for device arrays")
    return _LIBS[0]


def rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """x as the device holds it, back in float64 (bf16 via torch)."""
    if dtype == "bfloat16":
        import torch
        return torch.from_numpy(x.astype(np.float32)).bfloat16().float().numpy().astype(np.float64)
    return x.astype(dtype).astype(np.float64)


TOL = {"float32": 2e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def check(out_dev, lse_dev, ref_out, ref_lse, dtype, lib, what=""):
    out, lse = lib.to_host(out_dev), lib.to_host(lse_dev)
    assert not np.isnan(out).any(), f"{what}: {np.isnan(out).sum()} out elements not written"
    assert not np.isnan(lse).any(), f"{what}: {np.isnan(lse).sum()} lse elements not written"
    tol = TOL[dtype]
    err = np.abs(out - ref_out)
    assert (err <= tol + tol * np.abs(ref_out)).all(), f"{what}: out max error {err.max():.3g}"
    finite = np.isfinite(ref_lse)
    assert np.array_equal(np.isfinite(lse), finite), what
    assert np.all(lse[~finite] == -np.inf), what
    lerr = np.abs(lse[finite] - ref_lse[finite])
    assert (lerr <= 1e-4 + 1e-5 * np.abs(ref_lse[finite])).all(), f"{what}: lse max error {lerr.max():.3g}"
    return out, lse


def inputs(rng, lib, dtype, q_shape, kv_shape):
    q = rng.standard_normal(q_shape)
    k = rng.standard_normal(kv_shape)
    v = rng.standard_normal(kv_shape)
    host = tuple(rounded(x, dtype) for x in (q, k, v))
    dev = tuple(lib.to_device(x, dtype) for x in host)
    return host, dev


# --- decode: lean, two-kernel lean, split-KV -----------------------------------------------------

CONTEXTS = [1, 17, 1000, 4097]
HEADS = [(2, 2, 64), (8, 2, 128), (8, 1, 64), (12, 3, 128)]  # GQA 1, 4, 8, 4


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("heads", HEADS, ids=lambda h: f"h{h[0]}-kv{h[1]}-d{h[2]}")
def test_decode_kernels_match_reference_and_each_other(lib, heads, context):
    rng = np.random.default_rng()
    hq, hkv, d = heads
    for dtype in lib.dtypes():
        batch = 3
        (q, k, v), (qd, kd, vd) = inputs(rng, lib, dtype, (batch, hq, d), (batch, context, hkv, d))
        seqlens = np.array([context, max(context // 2, 1), 0][:batch], dtype=np.int64)
        for lens in (None, seqlens):
            ref_out, ref_lse = decode_reference(q, k, v, lens)
            lean = att._lean_attention_cuda(qd, kd, vd, lens)
            two = att._lean_attention_cuda(qd, kd, vd, lens, two_kernel=True)
            assert two[2]["two_kernel"] and not lean[2]["two_kernel"]
            split = att._split_kv_attention_cuda(qd, kd, vd, lens)
            forced = att._split_kv_attention_cuda(qd, kd, vd, lens, num_splits=7)
            results = []
            for name, (o, l, _) in (("lean", lean), ("lean two-kernel", two), ("split-kv", split),
                                    ("split-kv 7", forced)):
                results.append(check(o, l, ref_out, ref_lse, dtype, lib, f"{name} {dtype} lens={lens}"))
            # the four partitions agree to fp32 merge rounding
            for o, _ in results[1:]:
                assert np.allclose(o, results[0][0], rtol=TOL[dtype], atol=TOL[dtype])
            if dtype != "bfloat16":  # the CPU twins take float32 / float16
                cpu_out, cpu_lse = kernels_cuda.lean_attention(q.astype(dtype), k.astype(dtype),
                                                               v.astype(dtype), seqlens=lens)
                assert np.allclose(results[0][0], cpu_out.astype(np.float64), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("grid", [1, 2, 7, 64, 1000])
def test_lean_any_grid_same_result(lib, grid):
    """Small grids (many tiles per CTA) and grids over one wave (two-kernel
    fallback) give the one-wave answer."""
    rng = np.random.default_rng()
    (q, k, v), (qd, kd, vd) = inputs(rng, lib, "float32", (2, 8, 64), (2, 3001, 2, 64))
    lens = np.array([3001, 1234], dtype=np.int64)
    ref_out, ref_lse = decode_reference(q, k, v, lens)
    out, lse, launch = att._lean_attention_cuda(qd, kd, vd, lens, grid=grid)
    assert launch["grid"] == grid
    check(out, lse, ref_out, ref_lse, "float32", lib, f"grid {grid}")
    assert launch["two_kernel"] == (grid > launch["sm_count"] * launch["ctas_per_sm"])


def test_lean_repeated_launches_reset_flags(lib):
    rng = np.random.default_rng()
    (q, k, v), (qd, kd, vd) = inputs(rng, lib, "float16", (4, 16, 128), (4, 20000, 4, 128))
    ref_out, ref_lse = decode_reference(q, k, v)
    for _ in range(5):
        out, lse = kernels_cuda.lean_attention(qd, kd, vd)
        check(out, lse, ref_out, ref_lse, "float16", lib, "repeat")


def test_split_kv_uses_device_sm_count(lib):
    rng = np.random.default_rng()
    (q, k, v), (qd, kd, vd) = inputs(rng, lib, "float16", (1, 8, 128), (1, 8192, 1, 128))
    _, _, launch = att._split_kv_attention_cuda(qd, kd, vd)
    n_blocks = math.ceil(8192 / 128)
    assert launch["splits"] == kernels_cuda.attention_schedule_splits(1, n_blocks, launch["sm_count"])


def compute_capability(lib) -> tuple[int, int]:
    if lib.name == "cupy":
        import cupy
        cc = cupy.cuda.Device().compute_capability  # "90"
        return int(cc[:-1]), int(cc[-1])
    import torch
    return torch.cuda.get_device_capability()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_tensor_core_and_scalar_cores_agree(lib, dtype, monkeypatch):
    """fp16/bf16 run the mma.sync core on sm_80+; KERNELAB_ATTENTION_SCALAR=1
    runs the CUDA-core one. Both must match the reference; float32 is always
    the scalar core."""
    rng = np.random.default_rng()
    (q, k, v), (qd, kd, vd) = inputs(rng, lib, dtype, (3, 12, 128), (3, 3001, 3, 128))
    lens = [3001, 1500, 7]
    ref_out, ref_lse = decode_reference(q, k, v, np.array(lens))
    tensor_cores = dtype != "float32" and compute_capability(lib) >= (8, 0)
    for scalar in (False, True):
        if scalar:
            monkeypatch.setenv("KERNELAB_ATTENTION_SCALAR", "1")
        for name, call in (("split-kv", att._split_kv_attention_cuda), ("lean", att._lean_attention_cuda)):
            out, lse, launch = call(qd, kd, vd, lens)
            assert launch["core"] == ("mma" if tensor_cores and not scalar else "scalar"), name
            check(out, lse, ref_out, ref_lse, dtype, lib, f"{name} scalar={scalar}")


# --- tree ----------------------------------------------------------------------------------------

MEDUSA = [-1, 0, 0, 0, 1, 1, 2, 3]
EAGLE = [-1, 0, 1, 1, 2, 3, 3, 4, 5, 6, 0, 10]


def random_tree(rng, t):
    return [-1] + [int(rng.integers(-1, i)) for i in range(1, t)]


# (9, 9000): a long prefix under a small tree, so the KV range is split.
@pytest.mark.parametrize("tokens,prefix",
                         [(1, 0), (1, 17), (8, 1000), (12, 33), (64, 517), (129, 100), (256, 3), (9, 9000)])
def test_tree_matches_reference(lib, tokens, prefix):
    rng = np.random.default_rng()
    for dtype in lib.dtypes():
        for hq, hkv, d in ((4, 1, 64), (8, 2, 128)):
            batch = 2
            if tokens == len(MEDUSA):
                parents = np.array(MEDUSA)
            elif tokens == len(EAGLE):
                parents = np.array([EAGLE, random_tree(rng, tokens)])
            elif tokens > 1 and tokens % 2 == 1:
                parents = np.arange(-1, tokens - 1)  # a chain
            else:
                parents = np.array(random_tree(rng, tokens))
            (q, k, v), (qd, kd, vd) = inputs(rng, lib, dtype, (batch, tokens, hq, d),
                                             (batch, prefix + tokens, hkv, d))
            ref_out, ref_lse = reference(q, k, v, tree_mask(parents, batch, prefix))
            out, lse = kernels_cuda.tree_attention(qd, kd, vd, parents)
            check(out, lse, ref_out, ref_lse, dtype, lib, f"tree T={tokens} P={prefix} {dtype}")


# --- block, merge, ring ------------------------------------------------------------------------------


@pytest.mark.parametrize("sq,sk", [(1, 1), (17, 17), (5, 40), (40, 5), (130, 257)])
@pytest.mark.parametrize("causal", [False, True])
def test_block_matches_reference(lib, sq, sk, causal):
    rng = np.random.default_rng()
    for dtype in lib.dtypes():
        (q, k, v), (qd, kd, vd) = inputs(rng, lib, dtype, (2, sq, 8, 64), (2, sk, 2, 64))
        ref_out, ref_lse = reference(q, k, v, causal_mask(sq, sk) if causal else None)
        out, lse = kernels_cuda.block_attention(qd, kd, vd, causal=causal)
        check(out, lse, ref_out, ref_lse, dtype, lib, f"block {sq}x{sk} causal={causal} {dtype}")


def test_merge_of_two_halves_is_the_whole(lib):
    rng = np.random.default_rng()
    for dtype in lib.dtypes():
        (q, k, v), (qd, kd, vd) = inputs(rng, lib, dtype, (2, 9, 4, 128), (2, 50, 4, 128))
        ref_out, ref_lse = reference(q, k, v)
        a = kernels_cuda.block_attention(qd, kd[:, :20].copy() if lib.name == "cupy" else kd[:, :20].contiguous(),
                                         vd[:, :20].copy() if lib.name == "cupy" else vd[:, :20].contiguous())
        b = kernels_cuda.block_attention(qd, kd[:, 20:].copy() if lib.name == "cupy" else kd[:, 20:].contiguous(),
                                         vd[:, 20:].copy() if lib.name == "cupy" else vd[:, 20:].contiguous())
        out, lse = kernels_cuda.merge_attention(a[0], a[1], b[0], b[1])
        check(out, lse, ref_out, ref_lse, dtype, lib, f"merge {dtype}")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_ring_equals_full_attention(lib, world, causal):
    rng = np.random.default_rng()
    seq = 2 * world * 13
    for dtype in lib.dtypes():
        (q, k, v), (qd, kd, vd) = inputs(rng, lib, dtype, (2, seq, 4, 64), (2, seq, 2, 64))
        ref_out, ref_lse = reference(q, k, v, causal_mask(seq, seq) if causal else None)
        out, lse = kernels_cuda.ring_attention(qd, kd, vd, world_size=world, causal=causal)
        got, _ = check(out, lse, ref_out, ref_lse, dtype, lib, f"ring W={world} causal={causal} {dtype}")
        if dtype != "bfloat16":
            cpu_out, _ = kernels_cuda.ring_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype),
                                                     world_size=world, causal=causal)
            assert np.allclose(got, cpu_out.astype(np.float64), rtol=TOL[dtype], atol=TOL[dtype])


# --- streams and bad inputs -----------------------------------------------------------------------


def test_explicit_stream(lib):
    rng = np.random.default_rng()
    (q, k, v), (qd, kd, vd) = inputs(rng, lib, "float16", (2, 8, 64), (2, 999, 2, 64))
    ref_out, ref_lse = decode_reference(q, k, v)
    if lib.name == "cupy":
        import cupy
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            out, lse = kernels_cuda.lean_attention(qd, kd, vd, stream=stream)
        stream.synchronize()
    else:
        import torch
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out, lse = kernels_cuda.lean_attention(qd, kd, vd, stream=stream)
        stream.synchronize()
    check(out, lse, ref_out, ref_lse, "float16", lib, "stream")


def test_bad_device_inputs_raise(lib):
    rng = np.random.default_rng()
    (q, k, v), (qd, kd, vd) = inputs(rng, lib, "float16", (2, 8, 64), (2, 33, 2, 64))
    with pytest.raises(ValueError, match="one device"):
        kernels_cuda.lean_attention(qd, k.astype(np.float16), vd)
    with pytest.raises(TypeError, match="dtype of q"):
        kernels_cuda.lean_attention(qd, lib.to_device(k, "float32"), vd)
    with pytest.raises(ValueError, match="head_dim"):
        (_, _, _), (q2, k2, v2) = inputs(rng, lib, "float16", (2, 8, 32), (2, 33, 2, 32))
        kernels_cuda.split_kv_attention(q2, k2, v2)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels_cuda.block_attention(lib.to_device(rng.standard_normal((2, 8, 4, 64)), "float16")[:, ::2],
                                     kd, vd)
    with pytest.raises(ValueError, match="multiple of the KV heads"):
        (_, _, _), (q3, k3, v3) = inputs(rng, lib, "float16", (2, 5, 64), (2, 33, 2, 64))
        kernels_cuda.lean_attention(q3, k3, v3)
    with pytest.raises(ValueError, match="seqlens"):
        kernels_cuda.lean_attention(qd, kd, vd, seqlens=[1, 34])
    with pytest.raises(ValueError, match="parents"):
        (_, _, _), (q4, k4, v4) = inputs(rng, lib, "float16", (1, 3, 4, 64), (1, 10, 2, 64))
        kernels_cuda.tree_attention(q4, k4, v4, [-1, 1, 0])
    with pytest.raises(ValueError, match="world_size"):
        (_, _, _), (q5, k5, v5) = inputs(rng, lib, "float16", (1, 6, 4, 64), (1, 6, 2, 64))
        kernels_cuda.ring_attention(q5, k5, v5, world_size=2, causal=True)
    with pytest.raises(ValueError, match="num_splits"):
        kernels_cuda.split_kv_attention(qd, kd, vd, num_splits=0)
    with pytest.raises(TypeError, match="stream"):
        kernels_cuda.lean_attention(qd, kd, vd, stream="default")

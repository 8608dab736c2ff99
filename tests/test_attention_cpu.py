"""kernels_cuda's attention CPU twins (issue 5) against a plain float64 numpy
reference, on awkward sizes, GQA ratios, head dims and trees; the identities
the partitioning relies on (merging partials, lean == split-KV == reference
for any grid, ring == full attention); the schedule itself (the lean
partition covers every tile once, the split heuristic equals the simulator's);
and every bad input rejected, naming the argument, before any work."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels_cuda
from kernels_cuda import _attention
from kernels_cuda._loader import require_extension

try:  # `python -m pytest` from the repo root, or tests/ made a package
    from tests._attention_reference import causal_mask, decode_reference, reference, tree_reference
except ImportError:  # pytest's default rootdir-less import puts tests/ itself on sys.path
    from _attention_reference import causal_mask, decode_reference, reference, tree_reference

pytestmark = pytest.mark.skipif(
    not kernels_cuda.backends()["cpu"], reason="kernels_cuda extension not built"
)

DTYPES = [np.float32, np.float16]


def assert_close(out, lse, ref_out, ref_lse, dtype):
    """out within the dtype's rounding, lse within fp32 accumulation; no NaN
    left (the API hands the kernels NaN-poisoned outputs)."""
    assert out.dtype == dtype and lse.dtype == np.float32
    assert out.shape == ref_out.shape and lse.shape == ref_lse.shape
    assert not np.isnan(out).any(), "an output element was not written"
    assert not np.isnan(lse).any(), "an lse element was not written"
    tol = 2e-5 if dtype == np.float32 else 2e-3
    err = np.abs(out.astype(np.float64) - ref_out)
    bad = ~(err <= tol + tol * np.abs(ref_out))
    assert not bad.any(), f"{bad.sum()} out elements off, max error {err.max():.3g}"
    finite = np.isfinite(ref_lse)
    assert np.array_equal(np.isfinite(lse), finite)
    assert np.all(lse[~finite] == -np.inf)
    lerr = np.abs(lse[finite].astype(np.float64) - ref_lse[finite])
    assert not (lerr > 2e-5 + 2e-5 * np.abs(ref_lse[finite])).any(), f"lse max error {lerr.max():.3g}"


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def decode_inputs(rng, batch, seq, heads, kv_heads, head_dim, dtype):
    return (randn(rng, (batch, heads, head_dim), dtype), randn(rng, (batch, seq, kv_heads, head_dim), dtype),
            randn(rng, (batch, seq, kv_heads, head_dim), dtype))


# --- decode: lean and split-KV --------------------------------------------------------------

CONTEXTS = [1, 17, 1000, 4097]
HEADS = [(2, 2, 64), (8, 2, 128), (8, 1, 64)]  # (Hq, Hkv, D): GQA ratios 1, 4, 8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads", HEADS, ids=lambda h: f"h{h[0]}-kv{h[1]}-d{h[2]}")
@pytest.mark.parametrize("context", CONTEXTS)
def test_decode_matches_reference(context, heads, dtype):
    hq, hkv, d = heads
    rng = np.random.default_rng(context * 31 + hq + d)
    q, k, v = decode_inputs(rng, 2, context, hq, hkv, d, dtype)
    ref = decode_reference(q, k, v)
    assert_close(*kernels_cuda.lean_attention(q, k, v), *ref, dtype)
    assert_close(*kernels_cuda.split_kv_attention(q, k, v), *ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_ragged_seqlens_including_empty(dtype):
    rng = np.random.default_rng(7)
    seqlens = np.array([0, 1, 17, 1000, 999, 0, 1001])
    q, k, v = decode_inputs(rng, len(seqlens), 1001, 4, 2, 64, dtype)
    ref_out, ref_lse = decode_reference(q, k, v, seqlens)
    for fn in (kernels_cuda.lean_attention, kernels_cuda.split_kv_attention):
        out, lse = fn(q, k, v, seqlens=seqlens)
        assert_close(out, lse, ref_out, ref_lse, dtype)
        assert np.all(out[seqlens == 0] == 0) and np.all(lse[seqlens == 0] == -np.inf)
    # a list works as well as an array; the scale is honoured
    out, lse = kernels_cuda.lean_attention(q, k, v, seqlens=list(seqlens), softmax_scale=0.3)
    assert_close(out, lse, *decode_reference(q, k, v, seqlens, 0.3), dtype)


@pytest.mark.parametrize("grid", [1, 2, 3, 7, 64, 264, 1000])
def test_lean_equals_split_kv_for_any_grid(grid):
    rng = np.random.default_rng(grid)
    seqlens = np.array([3000, 1, 257, 0, 1500])
    q, k, v = decode_inputs(rng, len(seqlens), 3000, 8, 2, 128, np.float32)
    ref = decode_reference(q, k, v, seqlens)
    out, lse = _attention._lean_attention(q, k, v, seqlens, grid=grid)
    assert_close(out, lse, *ref, np.float32)
    split_out, split_lse = kernels_cuda.split_kv_attention(q, k, v, seqlens=seqlens)
    np.testing.assert_allclose(out, split_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lse, split_lse, rtol=1e-6, atol=1e-6)
    # small LeanTiles: many outputs span several CTAs, many CTAs several outputs
    out, lse = _attention._lean_attention(q, k, v, seqlens, grid=grid, tile=7)
    assert_close(out, lse, *ref, np.float32)


@pytest.mark.parametrize("num_splits", [1, 2, 3, 5, 17, 64, 128])
def test_split_kv_any_number_of_splits(num_splits):
    rng = np.random.default_rng(num_splits)
    q, k, v = decode_inputs(rng, 3, 1000, 4, 4, 64, np.float16)
    seqlens = np.array([1000, 5, 600])
    out, lse, used = _attention._split_kv_attention(q, k, v, seqlens, None, num_splits)
    assert used == num_splits
    assert_close(out, lse, *decode_reference(q, k, v, seqlens), np.float16)


def test_split_kv_uses_the_heuristic():
    rng = np.random.default_rng(3)
    q, k, v = decode_inputs(rng, 1, 4097, 8, 1, 128, np.float32)
    for sms in (1, 8, 132):
        _, _, used = _attention._split_kv_attention(q, k, v, sm_count=sms)
        n_blocks = math.ceil(4097 / 128)
        assert used == kernels_cuda.attention_schedule_splits(1, n_blocks, sms)
    assert used > 1  # one CTA on 132 SMs: FlashDecoding splits


# --- tree --------------------------------------------------------------------------------


def chain(t, rng):
    return np.arange(t) - 1


def star(t, rng):
    p = np.zeros(t, dtype=np.int64)
    p[0] = -1
    return p


def medusa(t, rng):
    """Root, then levels of candidates of successive heads, each level's
    nodes hanging from the best few of the previous level."""
    parents, level, width = [-1], [0], 4
    while len(parents) < t:
        new = []
        for j in range(width):
            if len(parents) == t:
                break
            parents.append(level[min(j // 2, len(level) - 1)])
            new.append(len(parents) - 1)
        level, width = new, max(2, width - 1)
    return np.array(parents)


def eagle(t, rng):
    """Dynamic tree: each new node picks a parent among the top-ranked nodes
    of the previous level (low indices more often)."""
    parents, prev, cur = [-1], [0], []
    while len(parents) < t:
        rank = min(int(rng.geometric(0.5)) - 1, len(prev) - 1)
        parents.append(prev[rank])
        cur.append(len(parents) - 1)
        if len(cur) >= 3 * len(prev) or rng.random() < 0.2:
            prev, cur = cur, []
    return np.array(parents)


def random_forest(t, rng):
    return np.array([int(rng.integers(-1, i)) if i else -1 for i in range(t)])


TREES = {"chain": chain, "star": star, "medusa": medusa, "eagle": eagle, "random": random_forest}


@pytest.mark.parametrize("tokens", [1, 2, 7, 33, 129])
@pytest.mark.parametrize("shape", sorted(TREES))
def test_tree_matches_reference(shape, tokens):
    rng = np.random.default_rng(tokens * 7 + len(shape))
    parents = TREES[shape](tokens, rng)
    prefix = [0, 17, 1000][tokens % 3]
    hq, hkv, d = HEADS[tokens % 3]
    dtype = DTYPES[tokens % 2]
    q = randn(rng, (2, tokens, hq, d), dtype)
    k = randn(rng, (2, prefix + tokens, hkv, d), dtype)
    v = randn(rng, (2, prefix + tokens, hkv, d), dtype)
    assert_close(*kernels_cuda.tree_attention(q, k, v, parents), *tree_reference(q, k, v, parents), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tree_parents_per_batch(dtype):
    rng = np.random.default_rng(11)
    t, prefix = 20, 50
    parents = np.stack([chain(t, rng), star(t, rng), random_forest(t, rng)])
    q = randn(rng, (3, t, 8, 64), dtype)
    k = randn(rng, (3, prefix + t, 1, 64), dtype)
    v = randn(rng, (3, prefix + t, 1, 64), dtype)
    out, lse = kernels_cuda.tree_attention(q, k, v, parents, softmax_scale=0.2)
    assert_close(out, lse, *tree_reference(q, k, v, parents, 0.2), dtype)


def test_tree_of_a_chain_is_causal_attention():
    rng = np.random.default_rng(12)
    q = randn(rng, (1, 40, 4, 64), np.float32)
    k = randn(rng, (1, 100, 2, 64), np.float32)
    v = randn(rng, (1, 100, 2, 64), np.float32)
    tree = kernels_cuda.tree_attention(q, k, v, chain(40, rng))
    block = kernels_cuda.block_attention(q, k, v, causal=True)
    np.testing.assert_allclose(tree[0], block[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tree[1], block[1], rtol=1e-6, atol=1e-6)


def test_tree_of_the_largest_size():
    rng = np.random.default_rng(13)
    t = _attention.MAX_TREE_TOKENS
    parents = random_forest(t, rng)
    q = randn(rng, (1, t, 2, 64), np.float32)
    k = randn(rng, (1, 10 + t, 2, 64), np.float32)
    v = randn(rng, (1, 10 + t, 2, 64), np.float32)
    assert_close(*kernels_cuda.tree_attention(q, k, v, parents), *tree_reference(q, k, v, parents), np.float32)


# --- block, merge, ring ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("sq,sk", [(1, 1), (1, 300), (17, 17), (65, 200), (130, 129), (200, 65)])
def test_block_matches_reference(sq, sk, causal, dtype):
    rng = np.random.default_rng(sq * 1000 + sk)
    hq, hkv, d = HEADS[(sq + sk) % 3]
    q = randn(rng, (2, sq, hq, d), dtype)
    k = randn(rng, (2, sk, hkv, d), dtype)
    v = randn(rng, (2, sk, hkv, d), dtype)
    mask = causal_mask(sq, sk) if causal else None
    out, lse = kernels_cuda.block_attention(q, k, v, causal=causal)
    assert_close(out, lse, *reference(q, k, v, mask), dtype)
    if causal and sk < sq:  # the first sq - sk rows see no key
        assert np.all(out[:, : sq - sk] == 0) and np.all(lse[:, : sq - sk] == -np.inf)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cut", [0, 1, 100, 777, 999, 1000])
def test_splitting_the_keys_anywhere_and_merging_is_exact(cut, dtype):
    rng = np.random.default_rng(cut)
    q = randn(rng, (2, 5, 4, 64), dtype)
    k = randn(rng, (2, 1000, 2, 64), dtype)
    v = randn(rng, (2, 1000, 2, 64), dtype)
    ref = reference(q, k, v)
    parts = [kernels_cuda.block_attention(q, k[:, a:b].copy(), v[:, a:b].copy())
             for a, b in ((0, cut), (cut, 1000)) if b > a]
    if len(parts) == 1:
        assert_close(*parts[0], *ref, dtype)
        return
    (oa, la), (ob, lb) = parts
    # merged in fp32 (as the kernels keep partials), then in the input dtype
    if dtype == np.float32:
        assert_close(*kernels_cuda.merge_attention(oa, la, ob, lb), *ref, dtype)
    out, lse = kernels_cuda.merge_attention(oa, la, ob, lb)
    assert out.dtype == dtype
    tol = 2e-5 if dtype == np.float32 else 4e-3  # fp16 partials are rounded once more
    np.testing.assert_allclose(out.astype(np.float64), ref[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(lse, ref[1], rtol=2e-5, atol=2e-5)
    # merge is symmetric
    out2, lse2 = kernels_cuda.merge_attention(ob, lb, oa, la)
    np.testing.assert_allclose(out2.astype(np.float64), out.astype(np.float64), rtol=tol, atol=tol)
    np.testing.assert_array_equal(lse2, lse)


def test_merge_with_empty_partials():
    rng = np.random.default_rng(5)
    o = randn(rng, (3, 4, 64), np.float32)
    lse = randn(rng, (3, 4), np.float32)
    empty_o = np.zeros_like(o)
    empty_l = np.full_like(lse, -np.inf)
    for args in ((o, lse, empty_o, empty_l), (empty_o, empty_l, o, lse)):
        out, merged = kernels_cuda.merge_attention(*args)
        np.testing.assert_array_equal(out, o)
        np.testing.assert_array_equal(merged, lse)
    out, merged = kernels_cuda.merge_attention(empty_o, empty_l, empty_o, empty_l)
    assert np.all(out == 0) and np.all(merged == -np.inf)


def test_float16_conversion_is_exact_and_rounds_to_nearest_even():
    """Every finite float16 survives the CPU's half -> float -> half; halving
    sums rounds as numpy does (merging two equal-LSE partials halves them)."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    x = bits.view(np.float16)
    x = x[np.isfinite(x)].reshape(-1, 2)
    rng = np.random.default_rng(0)
    y = x[rng.permutation(len(x))]
    lse = np.zeros(len(x), dtype=np.float32)
    out, _ = kernels_cuda.merge_attention(x, lse, x, np.full_like(lse, -np.inf))
    np.testing.assert_array_equal(out.view(np.uint16), x.view(np.uint16))
    out, _ = kernels_cuda.merge_attention(x, lse, y, lse)
    half = np.float32(0.5)
    expected = (half * x.astype(np.float32) + half * y.astype(np.float32)).astype(np.float16)
    np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ring_equals_full_attention(world, causal, dtype):
    rng = np.random.default_rng(world * 2 + causal)
    seq = 2 * world * 23
    q = randn(rng, (2, seq, 4, 64), dtype)
    k = randn(rng, (2, seq, 1, 64), dtype)
    v = randn(rng, (2, seq, 1, 64), dtype)
    out, lse = kernels_cuda.ring_attention(q, k, v, world_size=world, causal=causal)
    assert_close(out, lse, *reference(q, k, v, causal_mask(seq, seq) if causal else None), dtype)
    full = kernels_cuda.block_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(lse, full[1], rtol=1e-5, atol=1e-5)


def test_ring_with_head_dim_128_and_gqa_8():
    rng = np.random.default_rng(21)
    q = randn(rng, (1, 96, 8, 128), np.float32)
    k = randn(rng, (1, 96, 1, 128), np.float32)
    v = randn(rng, (1, 96, 1, 128), np.float32)
    out, lse = kernels_cuda.ring_attention(q, k, v, world_size=4, causal=True, softmax_scale=0.05)
    assert_close(out, lse, *reference(q, k, v, causal_mask(96, 96), 0.05), np.float32)


# --- the schedule ----------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [1, 2, 5, 13, 64, 264, 5000])
def test_lean_partition_covers_every_tile_once(grid):
    seqlens = [1, 0, 4097, 128, 129, 0, 3000]
    kv_heads, tile = 3, 128
    p = kernels_cuda.attention_lean_partition(seqlens, kv_heads, tile, grid)
    tiles = [math.ceil(s / tile) for s in seqlens for _ in range(kv_heads)]
    total = sum(tiles)
    assert p["total_tiles"] == total and p["offsets"] == list(np.cumsum([0] + tiles))
    begin, end = np.array(p["cta_begin"]), np.array(p["cta_end"])
    sizes = end - begin
    assert begin[0] == 0 and end[-1] == total and np.all(begin[1:] == end[:-1])
    assert sizes.max() - sizes.min() <= 1 and np.all(np.diff(sizes) <= 0)  # the last CTAs one less
    covered = np.zeros(total, dtype=int)
    seen_partial = set()
    for i, (cta, o, t0, t1, is_host, is_whole) in enumerate(p["segments"]):
        first = p["offsets"][o]
        covered[first + t0:first + t1] += 1
        assert begin[cta] <= first + t0 < first + t1 <= end[cta]
        assert is_host == (t0 == 0) and is_whole == (t0 == 0 and t1 == tiles[o])
        if is_host:
            assert p["host"][o] == cta
        else:  # a contributor: its first segment, one per CTA (its workspace slot)
            assert first + t0 == begin[cta] and cta not in seen_partial
            seen_partial.add(cta)
            assert p["host"][o] < cta <= p["last"][o]
    assert np.all(covered == 1)
    for o, n in enumerate(tiles):
        if n == 0:
            assert p["host"][o] == p["last"][o]
        else:
            assert p["last"][o] == max(c for c, oo, *_ in p["segments"] if oo == o)


def test_split_heuristic_equals_the_simulator():
    from sim.kernel.schedules.split_kv import num_splits

    for sms in (1, 7, 78, 108, 132):
        for ctas in (1, 2, 3, 5, 8, 13, 32, 50, 100, 150, 211, 264, 1000):
            for n_blocks in (0, 1, 2, 3, 4, 7, 16, 33, 64, 100, 129, 257, 1000):
                assert kernels_cuda.attention_schedule_splits(ctas, n_blocks, sms) == num_splits(
                    ctas, n_blocks, 2 * sms
                ), (ctas, n_blocks, sms)


@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("causal", [False, True])
def test_ring_layout(world, causal):
    seq = 2 * world * 5
    layout = kernels_cuda.attention_ring_layout(seq, world, causal)
    rows = np.array(layout["global_rows"])
    assert sorted(rows.ravel()) == list(range(seq))
    c = seq // (2 * world)
    for r in range(world):
        if causal:
            expected = list(range(r * c, (r + 1) * c)) + list(range((2 * world - 1 - r) * c, (2 * world - r) * c))
        else:
            expected = list(range(r * seq // world, (r + 1) * seq // world))
        assert list(rows[r]) == expected
    # each step's plan is exactly the causal-visible pairs; the work is even
    work = np.zeros((world, world))
    for r in range(world):
        sources = [s[0] for s in layout["steps"][r]]
        assert sources == [(r - t) % world for t in range(world)]
        for t, (src, q0, q1, k0, k1, step_causal) in enumerate(layout["steps"][r]):
            qg, kg = rows[r][:, None], rows[src][None, :]
            visible = (kg <= qg) if causal else np.ones((len(rows[r]), len(rows[src])), bool)
            plan = np.zeros_like(visible)
            plan[q0:q1, k0:k1] = True
            if step_causal:
                plan &= np.tri(len(rows[r]), dtype=bool)
            assert np.array_equal(plan, visible), (r, t)
            work[r, t] = visible.sum()
    assert np.all(work.sum(axis=1) == work.sum(axis=1)[0])


# --- inputs: poisoned outputs, bad inputs, GPU arrays --------------------------------------------


def test_binding_writes_every_element_of_poisoned_outputs():
    ext = require_extension()
    rng = np.random.default_rng(0)
    q, k, v = decode_inputs(rng, 3, 50, 4, 2, 64, np.float16)
    for call in (lambda o, l: ext.lean_attention_cpu(q, k, v, None, 0.125, 7, 0, o, l),
                 lambda o, l: ext.split_kv_attention_cpu(q, k, v, None, 0.125, 3, 132, o, l)):
        out = np.full(q.shape, np.nan, np.float16)
        lse = np.full(q.shape[:-1], np.nan, np.float32)
        call(out, lse)
        assert not np.isnan(out).any() and not np.isnan(lse).any()
    q4 = randn(rng, (2, 12, 4, 64), np.float32)
    k4 = randn(rng, (2, 12, 2, 64), np.float32)
    for call in (lambda o, l: ext.block_attention_cpu(q4, k4, k4, True, 0.1, o, l),
                 lambda o, l: ext.ring_attention_cpu(q4, k4, k4, 3, True, 0.1, o, l),
                 lambda o, l: ext.tree_attention_cpu(q4, k4, k4, np.arange(12) - 1, 0.1, o, l)):
        out = np.full(q4.shape, np.nan, np.float32)
        lse = np.full(q4.shape[:-1], np.nan, np.float32)
        call(out, lse)
        assert not np.isnan(out).any() and not np.isnan(lse).any()


def _decode(dtype=np.float32, b=2, s=10, hq=4, hkv=2, d=8):
    rng = np.random.default_rng(0)
    return decode_inputs(rng, b, s, hq, hkv, d, dtype)


def _block(dtype=np.float32, b=2, sq=8, sk=8, hq=4, hkv=2, d=8):
    rng = np.random.default_rng(0)
    return randn(rng, (b, sq, hq, d), dtype), randn(rng, (b, sk, hkv, d), dtype), randn(rng, (b, sk, hkv, d), dtype)


def _with(args, i, value):
    args = list(args)
    args[i] = value
    return args


DECODE_FNS = [kernels_cuda.lean_attention, kernels_cuda.split_kv_attention]


@pytest.mark.parametrize("fn", DECODE_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "make,kwargs,error,match",
    [
        (lambda: _with(_decode(), 0, _decode()[0].astype(np.float64)), {}, TypeError, "q must have dtype"),
        (lambda: _with(_decode(), 1, _decode(np.float16)[1]), {}, TypeError, "k must have the dtype of q"),
        (lambda: _with(_decode(), 2, _decode(np.float16)[2]), {}, TypeError, "v must have the dtype of q"),
        (lambda: _with(_decode(), 0, _decode()[0][None]), {}, ValueError, "q must be 3-D"),
        (lambda: _with(_decode(), 2, _decode(s=11)[2]), {}, ValueError, "v must have the shape of k"),
        (lambda: _with(_decode(), 0, _decode(b=3)[0]), {}, ValueError, "same batch"),
        (lambda: _with(_decode(), 0, _decode(hq=3, hkv=1)[0]), {}, ValueError, "multiple of the KV heads"),
        (lambda: _with(_decode(), 0, _decode(d=16)[0]), {}, ValueError, "same head_dim"),
        (lambda: _with(_decode(), 1, np.asfortranarray(_decode()[1])), {}, ValueError, "k must be C-contiguous"),
        (lambda: _with(_decode(), 0, _decode(d=16)[0][:, :, ::2]), {}, ValueError, "q must be C-contiguous"),
        (lambda: _with(_decode(), 0, _decode()[0].tolist()), {}, TypeError, "q must be a numpy.ndarray"),
        (lambda: _decode(), {"seqlens": [1, 11]}, ValueError, r"seqlens\[1\] = 11"),
        (lambda: _decode(), {"seqlens": [-1, 1]}, ValueError, r"seqlens\[0\] = -1"),
        (lambda: _decode(), {"seqlens": [1, 2, 3]}, ValueError, "seqlens must have shape"),
        (lambda: _decode(), {"seqlens": np.array([1.0, 2.0])}, TypeError, "seqlens must have an integer dtype"),
        (lambda: _decode(), {"softmax_scale": "x"}, TypeError, "softmax_scale"),
        (lambda: _decode(), {"softmax_scale": float("nan")}, ValueError, "softmax_scale"),
        (lambda: _decode(), {"softmax_scale": True}, TypeError, "softmax_scale"),
    ],
)
def test_bad_decode_inputs_raise(fn, make, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*make(), **kwargs)


@pytest.mark.parametrize("num_splits", [0, 129, 2.0, True])
def test_bad_num_splits(num_splits):
    with pytest.raises((TypeError, ValueError), match="num_splits"):
        kernels_cuda.split_kv_attention(*_decode(), num_splits=num_splits)


@pytest.mark.parametrize(
    "parents,tokens,match",
    [
        ([-1, 0, 2], 3, r"parents\[2\] = 2"),
        ([-1, 5, 0], 3, r"parents\[1\] = 5"),
        ([0, -1, 0], 3, r"parents\[0\] = 0"),
        ([-1, 0, -2], 3, r"parents\[2\] = -2"),
        ([[-1, 0, 1], [-1, 0, 3]], 3, r"parents\[1, 2\] = 3"),
        ([-1, 0], 3, "parents must have shape"),
    ],
)
def test_bad_parents(parents, tokens, match):
    q, k, v = _block(sq=tokens, sk=tokens + 4)
    with pytest.raises(ValueError, match=match):
        kernels_cuda.tree_attention(q, k, v, parents)


def test_bad_tree_inputs():
    q, k, v = _block(sq=5, sk=4)
    with pytest.raises(ValueError, match="k must hold the prefix and the 5 tree tokens"):
        kernels_cuda.tree_attention(q, k, v, [-1, 0, 1, 2, 3])
    q, k, v = _block(sq=257, sk=257, hq=1, hkv=1)
    with pytest.raises(ValueError, match="at most 256"):
        kernels_cuda.tree_attention(q, k, v, np.arange(257) - 1)
    q, k, v = _block(sq=3, sk=5)
    with pytest.raises(TypeError, match="parents must"):
        kernels_cuda.tree_attention(q, k, v, np.array([-1.0, 0.0, 1.0]))
    with pytest.raises(TypeError, match="parents must"):
        kernels_cuda.tree_attention(q, k, v, "abc")
    with pytest.raises(ValueError, match="q must be 4-D"):
        kernels_cuda.tree_attention(q[0], k, v, [-1, 0, 1])


@pytest.mark.parametrize(
    "seq,world,causal,error,match",
    [
        (10, 3, False, ValueError, "multiple of world_size = 3"),
        (12, 4, True, ValueError, "multiple of 2 x world_size = 8"),
        (12, 0, False, ValueError, "world_size must be >= 1"),
        (12, 2.0, False, TypeError, "world_size must be an integer"),
        (12, 2, "yes", TypeError, "causal must be a bool"),
    ],
)
def test_bad_ring_inputs(seq, world, causal, error, match):
    q, k, v = _block(sq=seq, sk=seq)
    with pytest.raises(error, match=match):
        kernels_cuda.ring_attention(q, k, v, world_size=world, causal=causal)


def test_ring_needs_equal_lengths():
    q, k, v = _block(sq=8, sk=12)
    with pytest.raises(ValueError, match="same sequence length"):
        kernels_cuda.ring_attention(q, k, v, world_size=2)


def test_bad_merge_inputs():
    rng = np.random.default_rng(0)
    o = randn(rng, (3, 8), np.float32)
    lse = randn(rng, (3,), np.float32)
    with pytest.raises(TypeError, match="out_b must have the dtype of out_a"):
        kernels_cuda.merge_attention(o, lse, o.astype(np.float16), lse)
    with pytest.raises(ValueError, match="out_b must have the shape of out_a"):
        kernels_cuda.merge_attention(o, lse, o[:2], lse)
    with pytest.raises(ValueError, match="lse_b must have shape"):
        kernels_cuda.merge_attention(o, lse, o, lse[:2])
    with pytest.raises(TypeError, match="lse_a must have dtype float32"):
        kernels_cuda.merge_attention(o, lse.astype(np.float64), o, lse)
    with pytest.raises(ValueError, match="lse_a must be finite or -inf"):
        kernels_cuda.merge_attention(o, np.full(3, np.nan, np.float32), o, lse)
    with pytest.raises(ValueError, match="out_a must be C-contiguous"):
        kernels_cuda.merge_attention(np.asfortranarray(randn(rng, (3, 8), np.float32)), lse, o, lse)


def test_the_cpp_layer_checks_again():
    """The bindings and the library refuse bad input by themselves (the
    Python layer is not the only guard), with ValueError/TypeError."""
    ext = require_extension()
    q, k, v = _decode()
    out, lse = np.zeros_like(q), np.zeros(q.shape[:-1], np.float32)
    with pytest.raises(ValueError, match=r"seqlens\[0\] = 99"):
        ext.lean_attention_cpu(q, k, v, np.array([99, 1]), 0.1, 4, 0, out, lse)
    with pytest.raises(ValueError, match="grid must be >= 1"):
        ext.lean_attention_cpu(q, k, v, None, 0.1, 0, 0, out, lse)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ext.lean_attention_cpu(q, k, v, None, 0.1, 4, 0, np.asfortranarray(out), lse)
    with pytest.raises(TypeError, match="lse must have dtype float32"):
        ext.lean_attention_cpu(q, k, v, None, 0.1, 4, 0, out, lse.astype(np.float64))
    with pytest.raises(ValueError, match="out is read-only"):
        ro = np.zeros_like(q)
        ro.flags.writeable = False
        ext.split_kv_attention_cpu(q, k, v, None, 0.1, 0, 132, ro, lse)
    with pytest.raises(ValueError, match="num_splits must be in"):
        ext.split_kv_attention_cpu(q, k, v, None, 0.1, 500, 132, out, lse)
    q4, k4, v4 = _block(sq=3, sk=5)
    o4, l4 = np.zeros_like(q4), np.zeros(q4.shape[:-1], np.float32)
    with pytest.raises(ValueError, match=r"parents\[1\] = 1"):
        ext.tree_attention_cpu(q4, k4, v4, np.array([-1, 1, 0]), 0.1, o4, l4)
    with pytest.raises(TypeError, match="parents must have dtype int64"):
        ext.tree_attention_cpu(q4, k4, v4, np.array([-1, 0, 0], np.int32), 0.1, o4, l4)
    q6, k6, v6 = _block(sq=6, sk=6)
    with pytest.raises(ValueError, match="must be a multiple of 2 x world_size"):
        ext.ring_attention_cpu(q6, k6, v6, 2, True, 0.1, np.zeros_like(q6), np.zeros(q6.shape[:-1], np.float32))
    with pytest.raises(ValueError, match="multiple of the KV heads"):
        ext.block_attention_cpu(q4, k4[:, :, :1].repeat(3, axis=2).copy(), v4[:, :, :1].repeat(3, axis=2).copy(),
                                False, 0.1, o4, l4)
    with pytest.raises(ValueError, match="ctas must be >= 1"):
        ext.attention_schedule_splits(0, 10, 132)


class _FakeCudaArray:
    __cuda_array_interface__ = {"shape": (2, 4, 8), "typestr": "<f4", "data": (0, False), "version": 3}


class _FakeDlpackCuda:
    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA

    def __dlpack__(self, stream=None):
        raise AssertionError("must not be copied")


@pytest.mark.parametrize("gpu", [_FakeCudaArray(), _FakeDlpackCuda()], ids=["cuda_array_interface", "dlpack"])
def test_gpu_arrays_need_a_usable_cuda_device(gpu):
    """A GPU array takes the CUDA path; without a usable device that is
    CudaUnavailableError, never a silent CPU fallback or copy."""
    if kernels_cuda.backends()["cuda_usable"]:
        pytest.skip("CUDA is usable here: tests/test_attention_gpu.py covers the GPU path")
    q, k, v = _decode()
    for call in (lambda: kernels_cuda.lean_attention(gpu, k, v),
                 lambda: kernels_cuda.split_kv_attention(q, gpu, v),
                 lambda: kernels_cuda.block_attention(gpu, k, v),
                 lambda: kernels_cuda.ring_attention(gpu, k, v, world_size=1),
                 lambda: kernels_cuda.tree_attention(gpu, k, v, [-1]),
                 lambda: kernels_cuda.merge_attention(gpu, q, q, q)):
        with pytest.raises(kernels_cuda.CudaUnavailableError, match="CUDA is not usable"):
            call()


def test_stream_is_for_gpu_arrays_only():
    q, k, v = _decode()
    with pytest.raises(ValueError, match="stream= applies to GPU arrays only"):
        kernels_cuda.lean_attention(q, k, v, stream=0)


# --- hypothesis: small random shapes ------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3), seq=st.integers(1, 70), kv_heads=st.integers(1, 3), group=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([1, 3, 16, 65]), grid=st.integers(1, 40), tile=st.integers(1, 33),
    dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1), ragged=st.booleans(),
)
def test_decode_random_shapes(batch, seq, kv_heads, group, head_dim, grid, tile, dtype, seed, ragged):
    rng = np.random.default_rng(seed)
    q, k, v = decode_inputs(rng, batch, seq, kv_heads * group, kv_heads, head_dim, dtype)
    seqlens = rng.integers(0, seq + 1, batch) if ragged else None
    ref = decode_reference(q, k, v, seqlens)
    assert_close(*_attention._lean_attention(q, k, v, seqlens, grid=grid, tile=tile), *ref, dtype)
    splits = int(rng.integers(1, 9))
    assert_close(*kernels_cuda.split_kv_attention(q, k, v, seqlens=seqlens, num_splits=splits), *ref, dtype)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 2), tokens=st.integers(1, 40), prefix=st.integers(0, 50), kv_heads=st.integers(1, 2),
    group=st.sampled_from([1, 3]), head_dim=st.sampled_from([2, 16, 64]), seed=st.integers(0, 2**32 - 1),
    per_batch=st.booleans(),
)
def test_tree_random_shapes(batch, tokens, prefix, kv_heads, group, head_dim, seed, per_batch):
    rng = np.random.default_rng(seed)
    parents = np.stack([random_forest(tokens, rng) for _ in range(batch)]) if per_batch else random_forest(tokens, rng)
    q = randn(rng, (batch, tokens, kv_heads * group, head_dim), np.float32)
    k = randn(rng, (batch, prefix + tokens, kv_heads, head_dim), np.float32)
    v = randn(rng, (batch, prefix + tokens, kv_heads, head_dim), np.float32)
    assert_close(*kernels_cuda.tree_attention(q, k, v, parents), *tree_reference(q, k, v, parents), np.float32)


@settings(max_examples=30, deadline=None)
@given(
    world=st.integers(1, 5), chunk=st.integers(1, 9), causal=st.booleans(), kv_heads=st.integers(1, 2),
    group=st.sampled_from([1, 2]), head_dim=st.sampled_from([4, 32]), seed=st.integers(0, 2**32 - 1),
)
def test_ring_random_shapes(world, chunk, causal, kv_heads, group, head_dim, seed):
    rng = np.random.default_rng(seed)
    seq = 2 * world * chunk
    q = randn(rng, (1, seq, kv_heads * group, head_dim), np.float32)
    k = randn(rng, (1, seq, kv_heads, head_dim), np.float32)
    v = randn(rng, (1, seq, kv_heads, head_dim), np.float32)
    out, lse = kernels_cuda.ring_attention(q, k, v, world_size=world, causal=causal)
    assert_close(out, lse, *reference(q, k, v, causal_mask(seq, seq) if causal else None), np.float32)

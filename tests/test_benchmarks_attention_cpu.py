"""The attention kernels' CPU twins, opt-in: ``pytest tests/test_benchmarks_attention_cpu.py --benchmark-enable``.

Decode over a KV cache (lean, split-KV), tree verification and a ring of 4
virtual ranks, float32 on the CPU. Each reports the bytes it must read (K and
V once) per second and that over the host's probed stream bandwidth, printed
and put in ``extra_info``, never asserted. The twins are written for clarity
and the same work partitioning as the CUDA kernels, one thread, not for speed:
on the 2-core development machine they read K/V at about 1% of its stream
bandwidth (0.25 GB/s at 32k context, 2026-11-25). With the default
``--benchmark-disable`` each body runs once as a smoke test.
"""

import numpy as np
import pytest

import hwmodels as hw
import kernels_cuda

B, HQ, HKV, D = 1, 32, 8, 128


def _report(benchmark, name, kv_bytes, tmp_path, monkeypatch):
    if benchmark.stats is None:
        return
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    stream = hw.get_device("host-cpu").hbm_bytes_per_s
    rate = kv_bytes / benchmark.stats.stats.median
    benchmark.extra_info.update(kv_bytes_per_s=rate, of_host_stream=rate / stream)
    print(f"\n{name}: {rate / 1e9:.2f} GB/s of K/V, {rate / stream:.2f} of the host's stream bandwidth")


@pytest.fixture(scope="module")
def cache():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((B, HQ, D), dtype=np.float32)
    k, v = (rng.standard_normal((B, 4096, HKV, D), dtype=np.float32) for _ in range(2))
    return q, k, v


@pytest.mark.parametrize("kernel", ["lean_attention", "split_kv_attention"])
def test_decode_at_4k_context(benchmark, cache, kernel, tmp_path, monkeypatch):
    q, k, v = cache
    out, lse = benchmark(getattr(kernels_cuda, kernel), q, k, v)
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    _report(benchmark, f"{kernel} 4k", 2 * k.nbytes, tmp_path, monkeypatch)


def test_tree_of_16_tokens_over_a_1k_prefix(benchmark, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    t, prefix = 16, 1024
    q = rng.standard_normal((B, t, HQ, D), dtype=np.float32)
    k, v = (rng.standard_normal((B, prefix + t, HKV, D), dtype=np.float32) for _ in range(2))
    parents = np.array([-1] + [(i - 1) // 2 for i in range(1, t)])
    out, _ = benchmark(kernels_cuda.tree_attention, q, k, v, parents)
    assert np.isfinite(out).all()
    _report(benchmark, "tree T=16 over 1k", 2 * k.nbytes, tmp_path, monkeypatch)


def test_ring_of_four_ranks(benchmark, tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    s = 256
    q, k, v = (rng.standard_normal((B, s, h, D), dtype=np.float32) for h in (HQ, HKV, HKV))
    out, _ = benchmark(kernels_cuda.ring_attention, q, k, v, world_size=4, causal=True)
    assert np.isfinite(out).all()
    _report(benchmark, "ring 4 ranks, 256 causal", 2 * k.nbytes, tmp_path, monkeypatch)

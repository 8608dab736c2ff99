"""Benchmarks, opt-in: ``pytest tests/test_benchmarks.py --benchmark-enable``.

With the default ``--benchmark-disable`` (pyproject) each body runs once as a
smoke test. Ratios are printed, never asserted: wall-clock bounds do not belong
in unit tests.
"""

import numpy as np
import pytest

import hwmodels as hw
import kernels_cuda


def test_collective_sweep_over_ten_thousand_sizes(benchmark):
    node = hw.device_node(hw.get_device("H100-SXM"), 8)
    sizes = np.logspace(0, 34, 10_000, base=2)
    cost = benchmark(hw.collective_time, "all_reduce", sizes, node)
    assert cost.time_s.shape == sizes.shape


def test_placing_a_decode_steps_operations(benchmark):
    from sim import get_model, step_operations

    rf = hw.roofline(hw.get_device("H100-SXM"))
    ops = step_operations(get_model("Llama-2-7B"), "decode", 8, 4096)
    placements = benchmark(lambda: [hw.place(op, rf) for op in ops])
    assert len(placements) == len(ops)


@pytest.mark.parametrize("n", [1 << 22, 1 << 24])
def test_cpu_triad_against_the_host_roofline(benchmark, n, tmp_path, monkeypatch):
    """The host roofline predicts the CPU twin's time from the probed stream bandwidth.

    Triad moves ``3 n`` elements (STREAM counting); the probe's copy bandwidth
    is the ceiling, so measured / predicted near 1 means the kernel streams
    at the machine's speed.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    host = hw.get_device("host-cpu")
    b, c = np.random.default_rng(0).random(n), np.random.default_rng(1).random(n)
    out = np.full(n, np.nan)
    benchmark(kernels_cuda.triad_cpu, b, c, 3.0, out=out)
    np.testing.assert_allclose(out, b + 3.0 * c)
    op = hw.Operation("triad", 2.0 * n, {"hbm": 3 * n * 8}, dtype="fp64")
    predicted_s = hw.place(op, hw.roofline(host, "fp64")).time_s
    if benchmark.stats is not None:
        ratio = benchmark.stats.stats.median / predicted_s
        benchmark.extra_info["measured_over_predicted"] = ratio
        print(f"\ntriad n={n}: measured/predicted {ratio:.2f} (host stream {host.hbm_bytes_per_s / 1e9:.1f} GB/s)")

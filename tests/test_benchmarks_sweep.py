"""Sweep speed, opt-in: ``pytest tests/test_benchmarks_sweep.py --benchmark-enable``.

Decode-step evaluations per second against the 100,000/s target, for one large
vectorized grid and for a sweep over devices x models x TP sizes (one
vectorized call per combination). With the default ``--benchmark-disable``
each body runs once as a smoke test (and the rate printed includes first-call
costs). The rate and its ratio to the target are printed and put in
``extra_info``, never asserted: wall-clock bounds do not belong in unit tests.
"""

import pytest

from sim.sweep import sweep

TARGET_EVALS_PER_S = 100_000


def _report(benchmark, result, label: str) -> None:
    seconds = benchmark.stats.stats.median if benchmark.stats is not None else result.elapsed_s
    rate = result.evals / seconds
    benchmark.extra_info.update(evals=result.evals, evals_per_s=rate, ratio_to_target=rate / TARGET_EVALS_PER_S,
                                combinations=result.combinations, blocks=result.blocks)
    print(f"\n{label}: {result.evals:,} decode steps in {seconds * 1e3:.1f} ms = {rate:,.0f}/s, "
          f"{rate / TARGET_EVALS_PER_S:.1f}x the {TARGET_EVALS_PER_S:,}/s target ({result.blocks} vectorized calls)")


def test_one_large_vectorized_decode_grid(benchmark):
    kw = dict(models="Llama-2-7B", devices="H100-SXM", kinds="decode", batch="1:256", context="0:32767:+82",
              chunk_size=1 << 20, progress=False, collect=False)
    result = benchmark(sweep, **kw)
    assert result.evals == 256 * 400 and result.blocks == 1
    _report(benchmark, result, "one 256 x 400 decode grid")


@pytest.mark.parametrize("batches", ["1:256:x2", "1:256"])
def test_decode_sweep_over_devices_models_and_tp(benchmark, batches):
    kw = dict(models=["Llama-2-7B", "Llama-3.1-8B", "Mistral-7B", "Llama-2-13B"],
              devices=["H100-SXM", "A100-SXM-80GB", "H200", "MI300X", "L40S"],
              kinds="decode", batch=batches, context="0:32768:+1024", tp=[1, 2, 4, 8], progress=False, collect=False)
    result = benchmark(sweep, **kw)
    assert result.combinations == 4 * 5 * 4 and not result.skipped
    _report(benchmark, result, f"4 models x 5 devices x 4 TP, batch {batches} x 33 contexts")

"""Kernel-engine speed, opt-in: ``pytest tests/test_benchmarks_kernel_engine.py --benchmark-enable``.

CTA-phase events per second against the 1,000,000/s target, for 50,000 CTAs x 4
phases (load, MMA, L2-hitting load, store) on an H100: once with identical CTAs
(many phases finish together) and once with uneven CTAs (nearly every phase is
its own event). The numba compile is paid in a warm-up before timing. With the
default ``--benchmark-disable`` each body runs once as a smoke test. The rate and
its ratio to the target are printed and put in ``extra_info``, never asserted.
"""

import numpy as np
import pytest

import hwmodels as hw
from sim.kernel import ProgramBuilder, load, mma, simulate, store

TARGET_EVENTS_PER_S = 1_000_000
N_CTAS = 50_000


def program(uneven: bool):
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.5, 1.5, N_CTAS) if uneven else 1.0
    b = ProgramBuilder()
    b.kernel("main", threads=128, regs=128, smem=64 * 1024).ctas(
        N_CTAS, [load(64e3 * scale), mma(4e6 * scale, "bf16"), load(64e3 * scale, 0.5), store(4e3)]
    )
    return b.build()


@pytest.mark.parametrize("uneven", [False, True], ids=["identical", "uneven"])
def test_cta_phase_events_per_second(benchmark, uneven):
    dev = hw.get_device("H100-SXM")
    prog = program(uneven)
    simulate(program(False), dev)  # warm-up: numba compile (or cache load) outside the timing
    result = benchmark(simulate, prog, dev)
    assert result.events == prog.n_phases == 4 * N_CTAS
    seconds = benchmark.stats.stats.median if benchmark.stats is not None else result.wall_s
    rate = result.events / seconds
    benchmark.extra_info.update(events=result.events, events_per_s=rate, ratio_to_target=rate / TARGET_EVENTS_PER_S,
                                engine_only_events_per_s=result.events / result.wall_s)
    print(f"\n{'uneven' if uneven else 'identical'} CTAs: {result.events:,} CTA-phase events in {seconds * 1e3:.1f} ms "
          f"= {rate:,.0f}/s, {rate / TARGET_EVENTS_PER_S:.1f}x the {TARGET_EVENTS_PER_S:,}/s target "
          f"(event loop alone {result.events / result.wall_s:,.0f}/s)")

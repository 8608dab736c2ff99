"""Serving-simulator speed, opt-in: ``pytest tests/test_benchmarks_serving.py --benchmark-enable``.

A 10,000-request openchat_sharegpt4 experiment at 2 QPS on Mistral-7B /
A100-SXM-80GB (about 80 minutes of simulated serving), per scheduler, after a
1,000-request run has built the memoized iteration-cost tables. With the
default ``--benchmark-disable`` each body runs once as a smoke test. Requests
and iterations simulated per second of wall time are printed and put in
``extra_info``, never asserted: wall-clock bounds do not belong in unit tests.
"""

import time

import pytest

from sim.serving import ServingConfig, Simulation, replica_cost, synthetic

DEVICE, MODEL = "A100-SXM-80GB", "mistral-7b"
REQUESTS, QPS = 10_000, 2.0


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_ten_thousand_chat_requests_at_two_qps(benchmark, scheduler):
    cost = replica_cost(MODEL, DEVICE)
    config = ServingConfig(scheduler=scheduler)
    Simulation(synthetic("openchat_sharegpt4", 1_000, QPS, seed=1), cost, config).run()  # warm the cost tables
    workload = synthetic("openchat_sharegpt4", REQUESTS, QPS, seed=0)
    walls = []

    def experiment():
        start = time.perf_counter()
        result = Simulation(workload, cost, config).run()
        walls.append(time.perf_counter() - start)
        return result

    result = benchmark.pedantic(experiment, rounds=3, iterations=1)
    summary = result.summary()
    assert summary["completed"] == REQUESTS and summary["rejected"] == 0

    seconds = benchmark.stats.stats.median if benchmark.stats is not None else walls[-1]
    rate = REQUESTS / seconds
    benchmark.extra_info.update(requests=REQUESTS, requests_per_s=rate, iterations=result.iterations,
                                iterations_per_s=result.iterations / seconds, simulated_s=result.duration_s,
                                simulated_s_per_wall_s=result.duration_s / seconds)
    print(f"\n{scheduler}: {REQUESTS:,} requests ({result.iterations:,} iterations, {result.duration_s / 60:.0f} simulated "
          f"minutes) in {seconds:.2f} s of wall time = {rate:,.0f} requests/s, "
          f"{result.iterations / seconds:,.0f} iterations/s, {result.duration_s / seconds:,.0f}x real time")

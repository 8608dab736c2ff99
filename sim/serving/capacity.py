"""Capacity: the largest request rate a setting sustains within its latency SLOs.

As Sarathi-Serve measures it (Agrawal et al., arXiv:2403.02310, sec. 5.1 and its
``sarathi/benchmark/capacity_search``): a trial at a given QPS passes when the
P99 time-between-tokens meets the SLO and the median scheduling delay stays at
or under 2 s (the queue does not blow up); the search doubles the QPS until a
trial fails, then bisects until the bracket is within 2.5% of its upper end.
Every trial serves the same requests (same seed), only their arrival rate changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hwmodels.errors import InvalidValueError
from sim.serving.metrics import ServingResult
from sim.serving.workload import Workload

#: Sarathi-Serve's limit on the median scheduling delay (sec. 5.1)
MAX_SCHEDULING_DELAY_P50_S = 2.0
#: the search stops when the bracket is within this fraction (Sarathi's --min-search-granularity 2.5 %)
RELATIVE_TOLERANCE = 0.025


@dataclass(frozen=True)
class Trial:
    qps: float
    tbt_p99_s: float
    scheduling_delay_p50_s: float
    ttft_p50_s: float
    passed: bool


@dataclass(frozen=True)
class CapacityResult:
    capacity_qps: float
    slo_tbt_p99_s: float
    max_scheduling_delay_p50_s: float
    trials: list[Trial] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "capacity_qps": self.capacity_qps,
            "slo_tbt_p99_s": self.slo_tbt_p99_s,
            "max_scheduling_delay_p50_s": self.max_scheduling_delay_p50_s,
            "trials": [t.__dict__ for t in self.trials],
        }


def trial(result: ServingResult, qps: float, slo_tbt_p99_s: float, max_delay_s: float) -> Trial:
    s = result.summary()
    tbt, delay = s["tbt_s"]["p99"], s["scheduling_delay_s"]["p50"]
    passed = (s["completed"] == s["requests"] - s["rejected"] and tbt is not None and delay is not None
              and tbt <= slo_tbt_p99_s and delay <= max_delay_s)
    return Trial(qps, tbt if tbt is not None else float("inf"), delay if delay is not None else float("inf"),
                 s["ttft_s"]["p50"] or float("inf"), passed)


def capacity_search(run: Callable[[float], ServingResult], slo_tbt_p99_s: float,
                    max_scheduling_delay_p50_s: float = MAX_SCHEDULING_DELAY_P50_S, start_qps: float = 1.0,
                    tolerance: float = RELATIVE_TOLERANCE, max_trials: int = 40) -> CapacityResult:
    """Largest QPS whose trial passes; ``run(qps)`` serves the workload at that rate."""
    if not slo_tbt_p99_s > 0:
        raise InvalidValueError(f"the P99 TBT SLO must be positive seconds, got {slo_tbt_p99_s!r}")
    if not start_qps > 0:
        raise InvalidValueError(f"start_qps must be positive, got {start_qps!r}")
    trials: list[Trial] = []

    def check(qps: float) -> bool:
        t = trial(run(qps), qps, slo_tbt_p99_s, max_scheduling_delay_p50_s)
        trials.append(t)
        return t.passed

    lo, hi = 0.0, start_qps
    while check(hi):  # grow until a trial fails
        lo, hi = hi, hi * 2
        if len(trials) >= max_trials:
            break
    while lo and hi - lo > tolerance * hi and len(trials) < max_trials:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if check(mid) else (lo, mid)
    if lo == 0.0:  # even the first rate failed: bisect downwards
        while len(trials) < max_trials and hi > 1e-6:
            hi /= 2
            if check(hi):
                lo = hi
                hi = hi * 2
                while hi - lo > tolerance * hi and len(trials) < max_trials:
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if check(mid) else (lo, mid)
                break
    return CapacityResult(lo, slo_tbt_p99_s, max_scheduling_delay_p50_s, sorted(trials, key=lambda t: t.qps))


def rescaled(workload: Workload, qps: float, base_qps: float) -> Workload:
    """The same requests arriving ``qps / base_qps`` times faster (the same draws, rescaled)."""
    from dataclasses import replace

    return replace(workload, arrival_s=workload.arrival_s * (base_qps / qps), name=f"{workload.name} rescaled to {qps:g} QPS")

"""What an experiment measured: latency distributions, throughput, goodput, memory, and why.

- TTFT: first token time minus arrival; scheduling delay: first time scheduled minus arrival;
- TBT: every gap between two consecutive tokens of a request (the distribution
  Sarathi-Serve's P99 TBT SLO is stated on); TPOT: a request's mean gap,
  ``(finish - first token) / (output - 1)``;
- end-to-end latency: finish minus arrival;
- throughput: output tokens per second of the experiment (first arrival to last
  finish); goodput: requests per second that met every SLO given (DistServe's
  definition, Zhong et al., arXiv:2401.09670);
- busy time by bound (compute, memory, overhead, communication, swap), summed
  over iterations from the step model's own breakdown, and idle time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 99)


def percentile(x: np.ndarray, q, weights: np.ndarray | None = None) -> np.ndarray:
    """Percentiles of samples ``x`` each occurring ``weights`` times (numpy's "inverted_cdf" rule)."""
    x = np.asarray(x, dtype=float)
    if weights is None:
        return np.percentile(x, q, method="inverted_cdf")
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(weights[order])
    rank = np.ceil(np.asarray(q, dtype=float) / 100.0 * cum[-1]).clip(1)
    return x[order][np.searchsorted(cum, rank)]


def distribution(x: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float | None]:
    x = np.asarray(x, dtype=float)
    keep = np.isfinite(x)
    x = x[keep]
    weights = None if weights is None else np.asarray(weights)[keep]
    if x.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    q = percentile(x, PERCENTILES, weights)
    mean = float(np.average(x, weights=weights))
    return {"mean": mean, **{f"p{p}": float(v) for p, v in zip(PERCENTILES, q)}, "max": float(x.max())}


@dataclass(frozen=True, eq=False)
class ServingResult:
    """Per-request arrays and per-replica totals of one experiment."""

    description: dict
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    scheduled_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    generated_tokens: np.ndarray
    preemptions: np.ndarray
    rejected: np.ndarray
    tbt_s: np.ndarray
    tbt_counts: np.ndarray
    busy_s: dict
    iterations: int
    kv_time_s: list[np.ndarray]
    kv_used_fraction: list[np.ndarray]
    #: running sequences per replica at the same times as ``kv_time_s`` (after each iteration or run)
    running_seqs: list[np.ndarray]
    decode_only_s: float
    decode_only_tokens: int

    @classmethod
    def collect(cls, sim) -> "ServingResult":
        s = sim.state
        busy: dict[str, float] = {}
        for rep in sim.replicas:
            for k, v in rep.totals.busy.items():
                busy[k] = busy.get(k, 0.0) + v
        tbt_s, tbt_counts = s.gaps()
        return cls(
            description=sim.describe(),
            arrival_s=s.arrival, first_token_s=s.first, finish_s=s.finish, scheduled_s=s.scheduled,
            prompt_tokens=s.prompt, output_tokens=s.output, generated_tokens=s.gen, preemptions=s.preemptions,
            rejected=s.rejected, busy_s=busy,
            tbt_s=tbt_s, tbt_counts=tbt_counts,
            iterations=sum(rep.totals.iterations for rep in sim.replicas),
            kv_time_s=[np.asarray(rep.totals.kv_time_s) for rep in sim.replicas],
            kv_used_fraction=[np.asarray(rep.totals.kv_used_blocks, dtype=float) / rep.kv.total for rep in sim.replicas],
            running_seqs=[np.asarray(rep.totals.running_seqs, dtype=np.int64) for rep in sim.replicas],
            decode_only_s=sum(rep.totals.decode_only_s for rep in sim.replicas),
            decode_only_tokens=sum(rep.totals.decode_only_tokens for rep in sim.replicas),
        )

    @property
    def completed(self) -> np.ndarray:
        return np.isfinite(self.finish_s)

    @property
    def duration_s(self) -> float:
        done = self.completed
        return float(self.finish_s[done].max() - self.arrival_s.min()) if done.any() else 0.0

    @property
    def ttft_s(self) -> np.ndarray:
        return (self.first_token_s - self.arrival_s)[self.completed]

    @property
    def scheduling_delay_s(self) -> np.ndarray:
        return (self.scheduled_s - self.arrival_s)[self.completed]

    @property
    def e2e_s(self) -> np.ndarray:
        return (self.finish_s - self.arrival_s)[self.completed]

    @property
    def tpot_s(self) -> np.ndarray:
        done = self.completed & (self.output_tokens > 1)
        return (self.finish_s - self.first_token_s)[done] / (self.output_tokens[done] - 1)

    @property
    def throughput_tokens_per_s(self) -> float:
        d = self.duration_s
        return float(self.generated_tokens[self.completed].sum() / d) if d > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second of the iterations that only decode (Hydragen's "decode-only" throughput)."""
        return self.decode_only_tokens / self.decode_only_s if self.decode_only_s > 0 else 0.0

    def goodput_requests_per_s(self, ttft_s: float | None = None, tpot_s: float | None = None) -> float:
        """Completed requests per second that met the TTFT and TPOT SLOs given."""
        done = self.completed
        ok = done.copy()
        if ttft_s is not None:
            ok &= np.where(done, self.first_token_s - self.arrival_s <= ttft_s, False)
        if tpot_s is not None:
            mean_gap = np.where(self.output_tokens > 1, (self.finish_s - self.first_token_s) / np.maximum(self.output_tokens - 1, 1), 0.0)
            ok &= np.where(done, mean_gap <= tpot_s, False)
        d = self.duration_s
        return float(ok.sum() / d) if d > 0 else 0.0

    def summary(self, slo_ttft_s: float | None = None, slo_tpot_s: float | None = None) -> dict:
        busy = sum(self.busy_s.values())
        replicas = len(self.kv_time_s)
        return {
            **self.description,
            "requests": int(len(self.arrival_s)),
            "completed": int(self.completed.sum()),
            "rejected": int(self.rejected.sum()),
            "duration_s": self.duration_s,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "requests_per_s": float(self.completed.sum() / self.duration_s) if self.duration_s else 0.0,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "ttft_s": distribution(self.ttft_s),
            "tbt_s": distribution(self.tbt_s, self.tbt_counts),
            "tpot_s": distribution(self.tpot_s),
            "e2e_s": distribution(self.e2e_s),
            "scheduling_delay_s": distribution(self.scheduling_delay_s),
            "goodput_requests_per_s": self.goodput_requests_per_s(slo_ttft_s, slo_tpot_s),
            "preemptions": int(self.preemptions.sum()),
            "iterations": self.iterations,
            "kv_peak_fraction": max((float(k.max()) for k in self.kv_used_fraction if k.size), default=0.0),
            "running_peak": max((int(k.max()) for k in self.running_seqs if k.size), default=0),
            "decode_only_s": self.decode_only_s,
            "breakdown": {
                **{f"{k}_s": v for k, v in self.busy_s.items()},
                "idle_s": max(0.0, self.duration_s * replicas - busy),
            },
        }

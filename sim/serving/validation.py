"""The serving simulator against published serving results.

``sim/data/measured/serving_published.csv`` holds each paper's figure with its
source and the setting it was measured in; every prediction here is computed
from that setting alone (the device's global calibration, the paper's
scheduler parameters), with no factor per row.

- Sarathi-Serve (arXiv:2403.02310): capacity under a strict P99 TBT SLO,
  Sarathi-Serve over vLLM, Mistral-7B on one A100. The gain is a ratio of two
  capacities found by :func:`sim.serving.capacity_search`, each on the same
  2048 requests.
- Hydragen (arXiv:2402.05099): decode-only throughput of 1024 completions of
  one prompt as the prompt (the shared prefix) grows from 1K to 16K tokens,
  with Hydragen's shared-prefix attention (BatchLLM-style scheduling: the
  prefix is computed once and read once per decode) and with vLLM 0.2.7 (no
  prefix sharing: each sequence holds and reads the prompt's KV, with its
  PagedAttention decode kernel). Both the
  absolute throughputs and their ratio to the 1K point are compared; the
  paper's own "no attention" ceiling shows how fast its model code runs the rest.

``python -m sim.serving.validation`` prints the table the README shows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sim.serving import ServingConfig, Simulation, capacity_search, replica_cost, rescaled, shared_prefix, synthetic

PUBLISHED = Path(__file__).resolve().parent.parent / "data" / "measured" / "serving_published.csv"
#: the issue's bound on the direction and size of each published effect
TOLERANCE = 0.25


@dataclass(frozen=True)
class Check:
    id: str
    claim: str
    metric: str
    reported: float
    predicted: float
    how: str

    @property
    def error(self) -> float:
        return self.predicted / self.reported - 1.0


def published() -> list[dict]:
    with PUBLISHED.open(newline="") as f:
        return list(csv.DictReader(f))


def _int(row: dict, key: str) -> int | None:
    return int(row[key]) if row[key] else None


@lru_cache(maxsize=None)
def sarathi_capacities(device: str, model: str, slo_s: float, requests: int, budget: int, seqs: int,
                       baseline_budget: int, baseline_seqs: int, memory: float, seed: int = 42, tp: int = 1) -> dict[str, float]:
    """Capacity (QPS) of Sarathi-Serve and of vLLM on the same requests (seed 42, as Sarathi's benchmark)."""
    cost = replica_cost(model, device, tp)
    base = synthetic("openchat_sharegpt4", requests, 1.0, seed)
    out = {}
    for name, cfg in (("sarathi", ServingConfig("sarathi", max_num_seqs=seqs, token_budget=budget, gpu_memory_utilization=memory)),
                      ("vllm", ServingConfig("vllm", max_num_seqs=baseline_seqs, token_budget=baseline_budget,
                                             gpu_memory_utilization=memory))):
        out[name] = capacity_search(lambda qps: Simulation(rescaled(base, qps, 1.0), cost, cfg).run(), slo_s).capacity_qps
    return out


def _sarathi(row: dict) -> Check:
    caps = sarathi_capacities(row["device"], row["model"], float(row["slo_tbt_p99_s"]), int(row["requests"]),
                              int(row["token_budget"]), int(row["max_num_seqs"]), int(row["baseline_token_budget"]),
                              int(row["baseline_max_num_seqs"]), float(row["gpu_memory_utilization"]))
    return Check(row["id"], row["claim"], row["metric"], float(row["reported"]), caps["sarathi"] / caps["vllm"],
                 f"capacity {caps['sarathi']:.3g} QPS (sarathi) / {caps['vllm']:.3g} QPS (vllm) at P99 TBT <= {row['slo_tbt_p99_s']} s")


@lru_cache(maxsize=None)
def shared_prefix_throughput(device: str, model: str, tp: int, batch: int, prefix: int, output: int, scheduler: str,
                             memory: float) -> float:
    """Decode-only tokens/s of ``batch`` completions of one ``prefix``-token prompt. vLLM decodes with its
    PagedAttention kernel (CUDA cores, as in the 0.2.7 release Hydragen measured); the prefix-sharing side
    with split-KV kernels (Hydragen's suffix and prefix passes)."""
    w = shared_prefix(groups=1, group_size=batch, prefix_tokens=prefix - 1, suffix_tokens=1, output_tokens=output)
    cfg = ServingConfig(scheduler, max_num_seqs=batch, gpu_memory_utilization=memory)
    kernel = "paged" if scheduler == "vllm" else "split-kv"
    return Simulation(w, replica_cost(model, device, tp, decode_kernel=kernel), cfg).run().decode_tokens_per_s


def _shared(row: dict) -> Check:
    tp, batch, output = int(row["tp"]), int(row["requests"]), int(row["output_tokens"])
    if row["scheduler"] == "no-attention":
        cost = replica_cost(row["model"], row["device"], tp)
        predicted = batch / sum(cost.iteration(batch, batch).values())
        return Check(row["id"], row["claim"], row["metric"], float(row["reported"]), predicted,
                     f"the step model's layers without attention, {batch} decodes on TP={tp}")
    scheduler = "batchllm" if row["scheduler"] == "hydragen" else row["scheduler"]
    predicted = shared_prefix_throughput(row["device"], row["model"], tp, batch, int(row["prefix_tokens"]), output,
                                         scheduler, float(row["gpu_memory_utilization"]))
    return Check(row["id"], row["claim"], row["metric"], float(row["reported"]), predicted,
                 f"{batch} x ({row['prefix_tokens']}-token prompt, {output} generated), {scheduler} scheduler on TP={tp}")


def checks() -> list[Check]:
    return [(_sarathi if r["metric"] == "capacity_ratio" else _shared)(r) for r in published()]


def prefix_growth(rows: list[Check], scheduler_prefix: str) -> list[tuple[str, float, float]]:
    """Throughput at each prefix over throughput at the shortest, reported and predicted (the curve's shape)."""
    series = [c for c in rows if c.id.startswith(scheduler_prefix)]
    first = series[0]
    return [(c.id, c.reported / first.reported, c.predicted / first.predicted) for c in series]


def table(rows: list[Check]) -> str:
    lines = ["| claim | reported | predicted | error | how |", "|---|---|---|---|---|"]
    for c in rows:
        lines.append(f"| {c.id} | {c.reported:.4g} | {c.predicted:.4g} | {c.error:+.0%} | {c.how} |")
    for prefix in ("hydragen-codellama13b", "vllm027"):
        for cid, rep, pred in prefix_growth(rows, prefix)[1:]:
            lines.append(f"| {cid}, relative to the 1K prefix | {rep:.3g} | {pred:.3g} | {pred / rep - 1:+.0%} | the curve's shape |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(checks()))

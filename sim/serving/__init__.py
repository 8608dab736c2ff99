"""Request-level serving simulation on simpy: workloads, replicas, schedulers, paged KV, SLOs.

    from sim.serving import simulate, synthetic
    result = simulate(synthetic("openchat_sharegpt4", requests=1000, qps=2.0), "A100-SXM-80GB", "mistral-7b",
                      scheduler="sarathi")
    result.summary()["tbt_s"]["p99"]
"""

from __future__ import annotations

import hwmodels as hw
from sim.model import ModelConfig, get_model
from sim.precision import Precision
from sim.serving.capacity import MAX_SCHEDULING_DELAY_P50_S, CapacityResult, capacity_search, rescaled
from sim.serving.engine import ROUTERS, SCHEDULERS, ServingConfig, Simulation, kv_capacity_blocks
from sim.serving.iteration_cost import IterationCost
from sim.serving.metrics import ServingResult
from sim.serving.workload import Workload, arrivals, datasets, from_trace, get_dataset, shared_prefix, synthetic

__all__ = ["CapacityResult", "capacity", "capacity_search", "ROUTERS", "SCHEDULERS", "IterationCost", "ServingConfig", "ServingResult", "Simulation", "Workload", "arrivals",
           "datasets", "from_trace", "get_dataset", "kv_capacity_blocks", "replica_cost", "shared_prefix", "simulate", "synthetic"]


_COSTS: dict[tuple, IterationCost] = {}  # by identity of model and device (devices hold mappings, not hashable)


def replica_cost(model: str | ModelConfig, device: str | hw.Device, tp: int = 1, pp: int = 1,
                 precision: Precision = Precision(), decode_kernel: str = "split-kv") -> IterationCost:
    """The memoized iteration cost of one replica; shared by every experiment on the same setting.
    ``decode_kernel``: ``split-kv`` (FlashDecoding, FlashInfer) or ``paged`` (vLLM's PagedAttention)."""
    m = model if isinstance(model, ModelConfig) else get_model(model)
    d = device if isinstance(device, hw.Device) else hw.get_device(device)
    for name, v in (("tp", tp), ("pp", pp)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise hw.InvalidValueError(f"{name} must be a positive integer, got {v!r}")
    key = (id(m), id(d), precision, tp, pp, decode_kernel)
    cost = _COSTS.get(key)
    if cost is None or cost.model is not m or cost.device is not d:
        cost = _COSTS[key] = IterationCost(m, d, precision, tp, pp, decode_kernel=decode_kernel)
    return cost


def simulate(workload: Workload, device: str | hw.Device = "A100-SXM-80GB", model: str | ModelConfig = "mistral-7b",
             tp: int = 1, pp: int = 1, precision: Precision = Precision(), config: ServingConfig | None = None,
             **config_fields) -> ServingResult:
    """Serve ``workload`` on replicas of ``model`` over ``tp x pp`` ``device`` GPUs; ``config_fields``
    are :class:`ServingConfig` fields (``scheduler="sarathi"``, ``replicas=2``, ...)."""
    cfg = config if config is not None else ServingConfig(**config_fields)
    return Simulation(workload, replica_cost(model, device, tp, pp, precision), cfg).run()


def capacity(device: str | hw.Device = "A100-SXM-80GB", model: str | ModelConfig = "mistral-7b", slo_tbt_p99_s: float = 0.1,
             dataset: str = "openchat_sharegpt4", requests: int = 2048, seed: int = 0, tp: int = 1, pp: int = 1,
             precision: Precision = Precision(), config: ServingConfig | None = None, start_qps: float = 1.0,
             max_scheduling_delay_p50_s: float = MAX_SCHEDULING_DELAY_P50_S, workload: Workload | None = None,
             **config_fields) -> CapacityResult:
    """The largest Poisson QPS at which ``requests`` requests of ``dataset`` (or the given
    ``workload``, its arrivals rescaled) meet the P99 TBT SLO (Sarathi-Serve's capacity)."""
    cfg = config if config is not None else ServingConfig(**config_fields)
    cost = replica_cost(model, device, tp, pp, precision)
    base = workload if workload is not None else synthetic(dataset, requests, qps=1.0, seed=seed)
    base_qps = len(base) / max(float(base.arrival_s[-1]), 1e-12) if workload is not None else 1.0
    return capacity_search(lambda qps: Simulation(rescaled(base, qps, base_qps), cost, cfg).run(), slo_tbt_p99_s,
                           max_scheduling_delay_p50_s, start_qps)

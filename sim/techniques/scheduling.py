"""Scheduler-level techniques, run through the serving simulator (:mod:`sim.serving`).

- ``chunked-prefill``: Sarathi-Serve's stall-free batching (chunked prefills
  under a token budget, decodes never paused) against vLLM's prefill-first
  continuous batching (Agrawal et al., arXiv:2403.02310). Metric:
  ``capacity_ratio``, the largest Poisson rate each sustains within a P99 TBT SLO
  (and a median scheduling delay of 2 s), on the same requests.
- ``shared-prefix-serving``: Hydragen's shared-prefix attention with the prefix
  computed once (BatchLLM-style scheduling) against vLLM without prefix sharing,
  both with their KV memory limits (Juravsky et al., arXiv:2402.05099). Metric:
  ``speedup`` of decode-only throughput (tokens per second of decode iterations).
"""

from __future__ import annotations

from sim.techniques.base import Param, Prediction, Setting, Technique


class ChunkedPrefill(Technique):
    name = "chunked-prefill"
    layer = "scheduler"
    summary = "stall-free batching: prefills in chunks under a token budget beside every running decode"
    citation = "Agrawal et al., Sarathi-Serve, arXiv:2403.02310"
    params = (
        Param("slo_tbt_p99_s", 0.1, "s", "P99 time-between-tokens SLO", "Sarathi-Serve Table 3 (Mistral-7B strict)", 1e-4, 100.0),
        Param("token_budget", 512, "tokens", "Sarathi's tokens per iteration", "Sarathi-Serve sec. 5.1 (strict SLO)", 1, 1 << 20),
        Param("max_num_seqs", 128, "sequences", "running sequences, both schedulers", "Sarathi-Serve sec. 5.1", 1, 1 << 20),
        Param("baseline_token_budget", 8192, "tokens", "vLLM's tokens per prefill iteration", "Sarathi-Serve: the max sequence length", 1, 1 << 22),
        Param("requests", 2048, "requests", "requests per capacity trial", "Sarathi-Serve's capacity search", 16, 1 << 20),
        Param("gpu_memory_utilization", 0.85, "fraction", "GPU memory for weights, activations and KV", "sarathi-serve's default", 0.05, 1.0),
    )

    def predict(self, s: Setting) -> Prediction:
        from sim.serving.validation import sarathi_capacities

        caps = sarathi_capacities(s.gpu.name, s.llm.name, self.slo_tbt_p99_s, self.requests, self.token_budget,
                                  self.max_num_seqs, self.baseline_token_budget, self.max_num_seqs, self.gpu_memory_utilization,
                                  tp=s.tp)
        return self.prediction("capacity_ratio", caps["sarathi"] / caps["vllm"], s,
                          {"what": "vLLM, prefill-first", "capacity_qps": caps["vllm"]},
                          {"what": self.summary, "capacity_qps": caps["sarathi"]}, dict(caps),
                          f"capacity within P99 TBT <= {self.slo_tbt_p99_s} s on {self.requests} openchat_sharegpt4 requests: "
                          f"{caps['sarathi']:.3g} QPS against {caps['vllm']:.3g}")


class SharedPrefixServing(Technique):
    name = "shared-prefix-serving"
    layer = "scheduler"
    summary = "a shared prompt computed once and attended once per decode for all its completions"
    citation = "Juravsky et al., Hydragen, arXiv:2402.05099; Zheng et al., BatchLLM, arXiv:2412.03594"
    params = (
        Param("prefix_tokens", 2048, "tokens", "the shared prompt", "set per paper", 2, 1 << 24),
        Param("output_tokens", 128, "tokens", "tokens generated per completion", "Hydragen: 128", 1, 1 << 20),
        Param("gpu_memory_utilization", 0.9, "fraction", "GPU memory both systems use", "vLLM's default (Hydragen's runs)", 0.05, 1.0),
    )

    def predict(self, s: Setting) -> Prediction:
        from sim.serving.validation import shared_prefix_throughput

        args = (s.gpu.name, s.llm.name, s.tp, s.batch, self.prefix_tokens, self.output_tokens)
        shared = shared_prefix_throughput(*args, "batchllm", self.gpu_memory_utilization)
        base = shared_prefix_throughput(*args, "vllm", self.gpu_memory_utilization)
        return self.prediction("speedup", shared / base, s,
                          {"what": "vLLM without prefix sharing", "decode_tokens_per_s": base},
                          {"what": self.summary, "decode_tokens_per_s": shared},
                          {"shared_tokens_per_s": shared, "baseline_tokens_per_s": base},
                          f"{s.batch} completions of a {self.prefix_tokens}-token prompt on {s.tp}x {s.gpu.name}: "
                          f"{shared:,.0f} decode tokens/s sharing the prefix against {base:,.0f} holding it per sequence")


TECHNIQUES = (ChunkedPrefill, SharedPrefixServing)

"""Attention-level techniques: shared prefixes, stream-K decode, and sequence parallelism.

- ``hydragen``: a batch whose sequences share a prefix attends to the prefix
  once for all their queries (an inter-sequence matrix multiply) and to each
  suffix separately, then merges the two by their log-sum-exps (Juravsky et
  al., arXiv:2402.05099). Costed by the serving simulator's iteration model
  (:class:`sim.serving.IterationCost`), against the same decode reading the
  prefix once per sequence. Metric: ``speedup`` of a decode step.
- ``lean-attention``: decode attention split into equal stream-K chunks over
  all SMs (Sanovar et al., arXiv:2405.10480), simulated CTA by CTA by the kernel
  engine against FlashDecoding's split-KV on the same problem. Metric:
  ``speedup`` of the attention call.
- ``context-parallel``: a long prefill over ``cp`` GPUs by ring pass-KV,
  pass-Q, TokenRing's bidirectional exchange, or LASP-2's all-gather
  (:func:`sim.context_parallel.context_parallel_cost`), against another method
  or one GPU. Metric: ``speedup`` of the prefill, or ``latency_s`` of one ring
  round of one layer (the longer of its attention and the exchange issued with
  it, as TokenRing's traces show them).
- ``cp-decode``: decode attention over a cache split by sequence across GPUs,
  merged by a tree all-reduce (Tree Attention, Shyam et al., arXiv:2408.04093),
  against Ring Attention's passing of K,V blocks or one GPU. Metric: ``speedup``
  of one layer's decode attention.
"""

from __future__ import annotations

from hwmodels.errors import InvalidValueError
from sim import step as steps
from sim.techniques.base import Param, Prediction, Setting, Technique


class Hydragen(Technique):
    name = "hydragen"
    layer = "kernel"
    summary = "attention over a shared prefix batched across the sequences that share it, suffixes apart"
    citation = "Juravsky et al., Hydragen, arXiv:2402.05099"
    params = (
        Param("prefix_tokens", 2048, "tokens", "the shared prefix (the setting's context: each sequence's own tokens beyond it)",
              "set per paper", 1, 1 << 24),
        Param("group_size", 0, "sequences", "sequences sharing one prefix (0: the whole batch)", "set per paper", 0, 1 << 24),
    )

    def predict(self, s: Setting) -> Prediction:
        from sim.serving import replica_cost

        cost = replica_cost(s.llm, s.gpu, s.tp, 1, s.precision)
        b, prefix = s.batch, self.prefix_tokens
        group = self.group_size or b
        if b % group:
            raise InvalidValueError(f"batch {b} is not a whole number of groups of {group}")
        suffix = s.context  # tokens of each sequence's own, beyond the prefix
        base = cost.iteration(b, b, decode_seqs=b, decode_kv_tokens=b * (prefix + suffix + 1), decode_longest=prefix + suffix + 1)
        hyd = cost.iteration(b, b, decode_seqs=b, decode_kv_tokens=b * (suffix + 1), decode_longest=suffix + 1,
                             shared_groups=((group, prefix),) * (b // group))
        tb, th = sum(base.values()), sum(hyd.values())
        return self.prediction("speedup", tb / th, s,
                          {"what": f"decode, each sequence reading its {prefix}-token prefix", "time_s": tb, **base},
                          {"what": self.summary, "time_s": th, **hyd}, {"prefix_tokens": prefix, "suffix_tokens": suffix,
                                                                      "groups": b // group},
                          f"a decode step of {b} sequences with a {prefix}-token shared prefix: {tb * 1e3:.3g} ms reading it per "
                          f"sequence against {th * 1e3:.3g} ms reading it once per group of {group}")


class LeanAttention(Technique):
    name = "lean-attention"
    layer = "kernel"
    summary = "decode attention in equal stream-K chunks over every SM, against FlashDecoding's split-KV"
    citation = "Sanovar et al., Lean Attention, arXiv:2405.10480"
    params = (Param("baseline", "split-kv", "schedule", "the kernel it is compared with: split-kv or flash", "Lean Attention compares with both"),)

    def predict(self, s: Setting) -> Prediction:
        from sim.kernel.schedules import AttentionProblem
        from sim.kernel.schedules.run import simulate_schedule, summary

        m = s.llm
        problem = AttentionProblem(batch=s.batch, heads=m.num_heads // s.tp, kv_heads=max(1, m.num_kv_heads // s.tp),
                                   head_dim=m.head_dim, context=s.context)
        base, _ = simulate_schedule(self.baseline, problem, s.gpu)
        lean, _ = simulate_schedule("lean", problem, s.gpu)
        b, t = summary(base), summary(lean)
        return self.prediction("speedup", b["time_s"] / t["time_s"], s, {"what": self.baseline, **b},
                          {"what": "lean", **t}, {"baseline_s": b["time_s"], "lean_s": t["time_s"]},
                          f"one decode attention call of batch {s.batch} x {problem.heads} heads over {s.context} tokens, "
                          f"simulated CTA by CTA: {self.baseline} {b['time_s'] * 1e6:.3g} us, lean {t['time_s'] * 1e6:.3g} us")


class ContextParallel(Technique):
    name = "context-parallel"
    layer = "cluster"
    summary = "a long prefill split over GPUs: ring pass-KV or pass-Q, TokenRing, LASP-2"
    citation = "Liu et al., Ring Attention, arXiv:2310.01889; Wang et al., TokenRing, arXiv:2412.20501; Sun et al., LASP-2, arXiv:2502.07563"
    params = (
        Param("cp", 8, "GPUs", "GPUs the sequence is split over", "set per paper", 2, 4096),
        Param("method", "tokenring", "method", "pass-kv | pass-q | tokenring | lasp2", "set per paper"),
        Param("baseline", "pass-kv", "method", "pass-kv | pass-q | tokenring | lasp2 | single-gpu", "set per paper"),
        Param("linear_attention", 0, "0 or 1", "cost the model's attention as linear (LASP-2 on a softmax model, a what-if)", "-", 0, 1),
        Param("topology", "node", "name", "node: the device's own node (NVLink/NVSwitch where it has them); pcie: a PCIe "
              "box of its PCIe generation", "hwmodels.device_node, hwmodels.pcie_box", choices=("node", "pcie")),
        Param("metric", "speedup", "name", "speedup (the prefill) | latency_s (one ring round of one layer: its "
              "attention or the exchange issued with it, whichever is longer)", "-", choices=("speedup", "latency_s")),
        Param("round", 1, "index", "the round latency_s reports (0: the local, diagonal one)", "set per paper", 0, 4095),
    )

    def predict(self, s: Setting) -> Prediction:
        from sim.context_parallel import context_parallel_cost
        from sim.cost import step_cost

        import hwmodels as hw

        if self.metric == "latency_s" and "lasp2" in (self.method, self.baseline):
            raise InvalidValueError("LASP-2 has no ring rounds (one all-gather of states): latency_s is for the ring methods")
        if self.metric == "latency_s" and self.round >= self.cp:
            raise InvalidValueError(f"round {self.round} of a {self.cp}-GPU ring: rounds are 0..{self.cp - 1}")
        step = steps.prefill(s.batch, s.context)
        if self.topology == "pcie" and not s.gpu.pcie_gen:
            raise InvalidValueError(f"{s.gpu.name} has no PCIe generation in the catalog")
        topology = hw.pcie_box(s.gpu.pcie_gen, self.cp) if self.topology == "pcie" else None
        kw = dict(precision=s.precision, tp=s.tp, pad=True, topology=topology)
        linear = {"linear_attention": bool(self.linear_attention) and self.method == "lasp2"}
        new = context_parallel_cost(s.llm, s.gpu, step, self.cp, self.method, **kw, **linear)
        base = None if self.baseline == "single-gpu" else context_parallel_cost(
            s.llm, s.gpu, step, self.cp, self.baseline, **kw,
            linear_attention=bool(self.linear_attention) and self.baseline == "lasp2")
        if self.metric == "latency_s":
            return self._round(s, new, base)
        if base is None:
            base_t, base_what = float(step_cost(s.llm, s.gpu, step, s.precision, s.tp).time_s), "one GPU"
        else:
            base_t, base_what = float(base.time_s), f"{self.baseline} over {self.cp} GPUs"
        t = float(new.time_s)
        d = new.as_dict()
        return self.prediction("speedup", base_t / t, s, {"what": base_what, "time_s": base_t},
                          {"what": f"{d['method']} over {self.cp} GPUs", "time_s": t, "breakdown": d["breakdown"]},
                          d["breakdown"], f"prefill of {s.context} tokens: {base_what} {base_t * 1e3:.3g} ms, "
                          f"{d['method']} {t * 1e3:.3g} ms")

    def _round(self, s: Setting, new, base) -> Prediction:
        r = self.round
        t, compute, comm = float(new.round_s[r]), float(new.round_compute_s[r]), float(new.round_comm_s[r])
        baseline = {"what": "no baseline"} if base is None else {"what": f"{self.baseline}, round {r}",
                                                                   "time_s": float(base.round_s[r])}
        bound = "communication" if comm > compute else "attention compute"
        return self.prediction("latency_s", t, s, baseline,
                               {"what": f"{self.method}, round {r} of one layer", "time_s": t},
                               {"attention_s": compute, "exchange_s": comm, "bound": bound},
                               f"round {r} of {self.cp} for one layer over {s.context} tokens: attention {compute * 1e3:.3g} ms, "
                               f"exchange issued with it {comm * 1e3:.3g} ms ({bound}-bound)")


def _attention_layer_s(s: Setting, step) -> float:
    """One layer's attention op in the step model (the split-KV decode kernel for a decode step)."""
    from sim.cost import step_cost

    cost = step_cost(s.llm, s.gpu, step, s.precision, s.tp)
    return float(next(o for o in cost.ops if o.op.kind == "attention").time_s)


class TreeDecode(Technique):
    name = "cp-decode"
    layer = "cluster"
    summary = "decode attention over a KV cache split by sequence across GPUs: partial attention, then a tree all-reduce"
    citation = "Shyam et al., Tree Attention, arXiv:2408.04093; the ring baseline: Liu et al., Ring Attention, arXiv:2310.01889"
    params = (
        Param("cp", 8, "GPUs", "GPUs the cached sequence is split over", "set per run", 2, 4096),
        Param("baseline", "ring", "method", "ring (K,V blocks passed round the ring, as Ring Attention) | single-gpu", "-", choices=("ring", "single-gpu")),
        Param("topology", "node", "name", "node: the device's own node; pcie: a PCIe box of its generation",
              "hwmodels.device_node, hwmodels.pcie_box", choices=("node", "pcie")),
    )

    def predict(self, s: Setting) -> Prediction:
        """Each GPU attends its query to its ``L/cp`` cached tokens (the step model's decode attention); the partial
        results merge exactly through two all-reduces, the running max (``b h`` fp32 values) and then the rescaled
        numerators and denominators (``b h (d + 1)``), which NCCL runs as trees or rings (:func:`hwmodels.collective_time`).
        The ring passes each GPU's K,V block on ``cp - 1`` times, each send overlapped with a block's attention.
        Metric: ``speedup`` of one layer's decode attention."""
        import hwmodels as hw

        m, b, cp = s.llm, s.batch, self.cp
        topo = hw.pcie_box(s.gpu.pcie_gen, cp) if self.topology == "pcie" else hw.device_node(s.gpu, cp)
        chunk = -(-s.context // cp)
        local = _attention_layer_s(s, steps.decode(b, chunk))
        heads = m.num_heads // s.tp
        merge = sum(float(hw.collective_time("all_reduce", nbytes, topo).time_s)
                    for nbytes in (b * heads * 4.0, b * heads * (m.head_dim + 1) * 4.0))
        tree = local + merge
        if self.baseline == "single-gpu":
            base, what = _attention_layer_s(s, steps.decode(b, s.context)), "one GPU over the whole cache"
        else:
            kv_block = b * chunk * m.kv_bytes_per_token(s.precision.kv_bits) / m.num_layers / s.tp
            send = float(hw.collective_time("sendrecv", kv_block, topo).time_s)
            base, what = local + (cp - 1) * max(local, send), f"ring over {cp} GPUs ({kv_block / 1e6:.3g} MB K,V blocks)"
        return self.prediction("speedup", base / tree, s, {"what": what, "time_s": base},
                               {"what": f"tree reduction over {cp} GPUs", "time_s": tree},
                               {"local_attention_s": local, "merge_all_reduces_s": merge, "baseline_s": base},
                               f"one layer's decode attention over {s.context} tokens: {what} {base * 1e6:.3g} us; "
                               f"{cp} GPUs each over {chunk} tokens {local * 1e6:.3g} us plus two all-reduces "
                               f"{merge * 1e6:.3g} us")


TECHNIQUES = (Hydragen, LeanAttention, ContextParallel, TreeDecode)

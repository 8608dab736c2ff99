"""KV-cache compression and sparsity: fewer bytes per cached token, or fewer cached tokens read.

Both change the attention op of a decode step and nothing else: a step's time
is the step model's (:func:`sim.cost.step_cost`) with the attention op's
KV-read time scaled by the bytes actually read, plus any extra work the
technique adds (dequantization on the CUDA cores, reading a label cache to pick
tokens).

- ``kv-quant``: ``bits`` per element plus per-group scales and zero points
  (``2 x 16`` bits per ``group_size`` elements), plus sparse outliers kept in 16
  bits with a 32-bit index (GEAR, Kang et al., arXiv:2403.05527; block floating
  point with outliers, Trukhanov & Soloveychik, arXiv:2403.20137; RotateKV,
  Su et al., arXiv:2501.16383). Metrics: ``memory_ratio`` (16-bit KV bytes over
  compressed), ``speedup`` (a decode step at the setting's batch) and
  ``throughput_ratio`` (decode throughput at the largest batch each cache fits).
- ``kv-sparse``: decode attention reads a fraction of the cached tokens (token
  sparsity picked with a label cache of some key channels, Double Sparsity,
  Yang et al., arXiv:2408.07092), and a fraction of heads are streaming heads
  that read only attention sinks and a local window (LServe, Yang et al.,
  arXiv:2502.14866). Metric: ``speedup`` of a decode step, or
  ``attention_speedup`` of its attention alone.
"""

from __future__ import annotations

import numpy as np

from hwmodels.errors import InvalidValueError
from sim import step as steps
from sim.cost import StepCost, step_cost
from sim.memory import max_batch
from sim.techniques.base import Param, Prediction, Setting, Technique


def _parts(cost: StepCost, attention_memory_scale: float = 1.0, attention_compute_extra_s: float = 0.0,
           attention_compute_scale: float = 1.0) -> dict:
    """Step time with the attention op's memory and compute times scaled and extra CUDA-core work
    (over all layers) added to its compute, split into attention and the rest."""
    attn = rest = 0.0
    for o in cost.ops:
        if o.op.kind == "attention":
            compute = o.compute_s * attention_compute_scale + attention_compute_extra_s / o.op.repeat
            busy = np.maximum(compute, o.memory_s * attention_memory_scale) + o.overhead_s
            attn += float(busy) * o.op.repeat
        else:
            rest += float(o.total_s)
    rest += sum(float(c.total_s) for c in cost.comms)
    return {"attention_s": attn, "other_s": rest, "time_s": attn + rest}


def _attention_kv_share(cost: StepCost) -> float:
    """The fraction of the attention op's bytes that are KV-cache reads (the rest: Q, O, new K/V)."""
    op = next(o.op for o in cost.ops if o.op.kind == "attention")
    return float(np.asarray(op.kv_bytes) / np.asarray(op.bytes))


ATTENTION = Param("attention", "paged", "kernel model", "the decode attention kernel of both sides: paged (CUDA cores, "
                  "as vLLM and the low-bit KV kernels) or split-kv (FlashDecoding, tensor cores)", "sim.attention")


def _decode(s: Setting, batch: int, attention: str) -> StepCost:
    return step_cost(s.llm, s.gpu, steps.decode(batch, s.context), s.precision, s.tp, attention=attention)


def _elements(s: Setting, batch: int) -> float:
    """K and V elements one GPU holds for ``batch`` sequences of the setting's context."""
    return batch * (s.context + 1) * s.llm.kv_bytes_per_token(16) / 2 / s.tp


class KVQuantization(Technique):
    name = "kv-quant"
    layer = "step"
    summary = "KV cache in a few bits per element, with group scales and optional 16-bit outliers"
    citation = "Kang et al., GEAR, arXiv:2403.05527; Su et al., RotateKV, arXiv:2501.16383; Trukhanov & Soloveychik, arXiv:2403.20137"
    params = (
        Param("bits", 4.0, "bits per element", "quantized KV element width", "set per paper", 1.0, 16.0),
        Param("group_size", 128, "elements", "elements sharing one scale and zero point", "KIVI/GEAR's 128-element groups", 1, 1 << 20),
        Param("outlier_fraction", 0.0, "fraction", "elements kept in 16 bits with a 32-bit index", "GEAR: 2% (set per paper)", 0.0, 1.0),
        Param("dequant_ops", 2, "ops per element", "CUDA-core work to dequantize one element (a scale and a zero point)",
              "one multiply and one add", 0, 64),
        Param("metric", "speedup", "name", "speedup | memory_ratio | throughput_ratio", "-",
              choices=("speedup", "memory_ratio", "throughput_ratio")),
        ATTENTION,
    )

    def bits_per_element(self) -> float:
        return self.bits + 32.0 / self.group_size + self.outlier_fraction * (16 + 32)

    def predict(self, s: Setting) -> Prediction:
        base_bits = s.precision.kv_bits  # the cache it compresses: the setting's own
        ratio = base_bits / self.bits_per_element()
        d = s.gpu
        if self.metric == "memory_ratio":
            return self.prediction("memory_ratio", ratio, s,
                              {"what": f"{base_bits}-bit KV cache", "bits_per_element": float(base_bits)},
                              {"what": self.summary, "bits_per_element": self.bits_per_element()},
                              {"bits": self.bits, "scale_bits_per_element": 32.0 / self.group_size,
                               "outlier_bits_per_element": self.outlier_fraction * 48},
                              f"{self.bits_per_element():.3g} bits per element against {base_bits}: {ratio:.3g}x less KV memory")
        if self.metric == "throughput_ratio":
            return self._throughput(s, ratio)
        base = _decode(s, s.batch, self.attention)
        share = _attention_kv_share(base)
        dequant_s = _elements(s, s.batch) * self.dequant_ops / d.peak("fp32")
        b, t = _parts(base), _parts(base, 1 - share + share / ratio, dequant_s)
        return self.prediction("speedup", b["time_s"] / t["time_s"], s,
                          {"what": f"decode step, {base_bits}-bit KV", **b}, {"what": self.summary, **t},
                          {"kv_bytes_ratio": 1 / ratio, "dequant_s": dequant_s, "attention_share_of_step": b["attention_s"] / b["time_s"]},
                          f"attention reads {1 / ratio:.2f}x the KV bytes ({self.bits_per_element():.3g} bits per element) "
                          f"and dequantizes on the CUDA cores ({dequant_s * 1e6:.3g} us); attention was "
                          f"{b['attention_s'] / b['time_s']:.0%} of the step")

    def _throughput(self, s: Setting, ratio: float) -> Prediction:
        """Decode tokens/s at the largest batch each cache fits at the setting's context."""
        m, d = s.llm, s.gpu
        b16 = int(max_batch(m, d, s.context, s.precision, s.tp))
        # the compressed cache fits ratio x the tokens; activations per sequence are the same
        bq = int(max_batch(m, d, s.context, s.precision, s.tp, kv_bytes_scale=1 / ratio))
        if b16 < 1:
            raise InvalidValueError(f"{m.name} at context {s.context} does not fit one sequence on {s.tp}x {d.name}")
        t16, tq_cost = _decode(s, b16, self.attention), _decode(s, bq, self.attention)
        share = _attention_kv_share(tq_cost)
        tq = _parts(tq_cost, 1 - share + share / ratio, _elements(s, bq) * self.dequant_ops / d.peak("fp32"))
        base, new = b16 / float(t16.time_s), bq / tq["time_s"]
        return self.prediction("throughput_ratio", new / base, s,
                          {"what": f"{s.precision.kv_bits}-bit KV, largest batch {b16}", "tokens_per_s": base},
                          {"what": f"{self.bits_per_element():.3g}-bit KV, largest batch {bq}", "tokens_per_s": new, **tq},
                          {"batch_baseline": b16, "batch_compressed": bq, "kv_bytes_ratio": 1 / ratio},
                          f"{ratio:.2f}x less KV per token: batch {b16} -> {bq} at context {s.context}, "
                          f"{base:,.0f} -> {new:,.0f} tokens/s")


class KVSparsity(Technique):
    name = "kv-sparse"
    layer = "step"
    summary = "decode attention reads a fraction of the cached tokens (selected with a label cache) or only a window"
    citation = "Yang et al., Double Sparsity, arXiv:2408.07092; Yang et al., LServe, arXiv:2502.14866"
    params = (
        Param("kept_fraction", 0.0625, "fraction", "cached tokens each dense head reads", "Double Sparsity: 1/16", 0.0, 1.0),
        Param("kept_tokens", 0, "tokens", "a fixed token budget per dense head instead (0: use kept_fraction)", "LServe: 4096 (repo)", 0, 1 << 30),
        Param("label_fraction", 0.0, "fraction", "fraction of each key read for every token to select the kept ones (label cache)",
              "Double Sparsity: 1/16 of the channels", 0.0, 1.0),
        Param("streaming_heads", 0.0, "fraction", "heads that read only sinks and a local window", "LServe: half", 0.0, 1.0),
        Param("window_tokens", 256, "tokens", "sink plus local tokens a streaming head reads", "set per paper", 0, 1 << 20),
        Param("metric", "speedup", "name", "speedup (decode step) | attention_speedup", "-", choices=("speedup", "attention_speedup")),
        ATTENTION,
    )

    def predict(self, s: Setting) -> Prediction:
        base = _decode(s, s.batch, self.attention)
        L = s.context + 1
        kept = min(L, self.kept_tokens) if self.kept_tokens else self.kept_fraction * L
        # keys are half of the KV bytes: a label of a fraction of the channels reads that fraction of half a token
        dense = (kept + self.label_fraction * L / 2) / L
        read = (1 - self.streaming_heads) * dense + self.streaming_heads * min(L, self.window_tokens) / L
        share = _attention_kv_share(base)
        # the scores and weighted sums shrink with the tokens attended (labels: a fraction of each key's channels)
        b, t = _parts(base), _parts(base, 1 - share + share * read, attention_compute_scale=read)
        if self.metric == "attention_speedup":
            value, what = b["attention_s"] / t["attention_s"], "attention"
        else:
            value, what = b["time_s"] / t["time_s"], "decode step"
        return self.prediction(self.metric, value, s, {"what": "dense decode attention", **b},
                          {"what": self.summary, **t}, {"kv_read_fraction": read, "attention_share_of_step": b["attention_s"] / b["time_s"]},
                          f"attention reads {read:.3g} of the KV bytes ({what} {value:.3g}x); attention was "
                          f"{b['attention_s'] / b['time_s']:.0%} of the decode step at batch {s.batch}, context {s.context}")


class KVEdit(Technique):
    name = "kv-edit"
    layer = "step"
    summary = "after an edit inside the context, keep the cache: re-rotate the keys after it and prefill only the edited tokens"
    citation = "He et al., Let the Code LLM Edit Itself When You Edit the Code (PIE), arXiv:2407.03157"
    params = (
        Param("edit_position", 0.5, "fraction", "where the edit starts, as a fraction of the context", "set per task", 0.0, 1.0),
        Param("edit_tokens", 16, "tokens", "tokens inserted or replaced by the edit", "set per task", 1, 1 << 24),
        Param("metric", "speedup", "name", "speedup | flops_reduction", "-", choices=("speedup", "flops_reduction")),
    )

    def predict(self, s: Setting) -> Prediction:
        """Full recomputation prefills every token from the edit on (``N - p`` tokens over a prefix of ``p``). PIE prefills
        the ``E`` edited tokens over the same prefix and corrects the rotary position of the keys after them: a
        read and a write of those keys, ``(N - p - E) x kv_heads x head_dim`` elements per layer, and a rotation
        (6 FLOPs an element pair) -- memory-bound."""
        from hwmodels.calibration import calibration
        from sim.cost import time_op
        from sim.graph import Op, Sharding

        m, d, n, e = s.llm, s.gpu, s.context, self.edit_tokens
        start = min(int(round(self.edit_position * n)), n - 1)
        if start + e > n:
            raise InvalidValueError(f"an edit of {e} tokens at {start} does not fit a context of {n}")
        full = step_cost(m, d, steps.prefill(s.batch, n - start, start), s.precision, s.tp)
        edited = step_cost(m, d, steps.prefill(s.batch, e, start), s.precision, s.tp)
        elements = float(s.batch * (n - start - e) * max(m.num_kv_heads // s.tp, 1) * m.head_dim)
        rotate = Op(name="rerotate_keys", kind="memory", repeat=m.num_layers, flops=np.float64(3.0 * elements),
                    weight_bytes=np.float64(0.0), activation_bytes=np.float64(0.0),
                    kv_bytes=np.float64(2 * elements * s.precision.kv_bits / 8), dtype=s.precision.gemm_dtype)
        cal = calibration(d)
        rot = time_op(rotate, steps.decode(s.batch, n), m, Sharding(tp=s.tp), d, cal, cal.graph_launch_s or 0.0, "flash")
        rotate_s = float(rot.total_s)
        if self.metric == "flops_reduction":
            base_flops = float(full.flops)
            flops = float(edited.flops) + 3.0 * elements * m.num_layers
            return self.prediction("flops_reduction", 1 - flops / base_flops, s,
                                   {"what": f"recompute the {n - start} tokens from the edit on", "flops": base_flops},
                                   {"what": self.summary, "flops": flops}, {"baseline_flops": base_flops, "flops": flops},
                                   f"{n - start} tokens recomputed against {e} prefilled and {n - start - e} keys rotated: "
                                   f"{base_flops / 1e12:.3g} -> {flops / 1e12:.3g} TFLOP")
        t_full, t_new = float(full.time_s), float(edited.time_s) + rotate_s
        return self.prediction("speedup", t_full / t_new, s,
                               {"what": f"recompute the {n - start} tokens from the edit on", "time_s": t_full},
                               {"what": self.summary, "time_s": t_new, "prefill_s": float(edited.time_s), "rotate_s": rotate_s},
                               {"recompute_s": t_full, "edited_prefill_s": float(edited.time_s), "rotate_keys_s": rotate_s},
                               f"an edit of {e} tokens at {start} of {n}: recomputing {n - start} tokens takes "
                               f"{t_full * 1e3:.3g} ms; PIE prefills {e} ({float(edited.time_s) * 1e3:.3g} ms) and rotates "
                               f"{n - start - e} tokens' keys ({rotate_s * 1e3:.3g} ms)")


TECHNIQUES = (KVQuantization, KVSparsity, KVEdit)

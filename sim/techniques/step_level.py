"""Techniques that change what one step computes: fewer weight bits, fewer layers, fewer tokens, no KV cache.

Each is the step model (:func:`sim.cost.step_cost`) on a changed step or model,
against the unchanged one at the same setting:

- ``weight-quant``: weights in fewer bits (CBQ, Ding et al., arXiv:2312.07950;
  blockwise compression, BCT, arXiv:2304.01483): the GEMMs stream fewer bytes
  and, weight-only, dequantize on the fly (:mod:`sim.dequant`).
- ``weight-sparsity``: pruned weights that the GEMMs skip, 2:4 or whole blocks
  (LPViT, Xu et al., arXiv:2407.02068): less math and fewer weight bytes.
- ``layer-skip``: each token skips a fraction of the layers (unified layer
  skipping, Liu et al., arXiv:2404.06954): the per-layer work scales down.
- ``token-pruning``: a fraction of the prompt's tokens (e.g. vision tokens) is
  dropped before the layers that follow (MustDrop, Liu et al., arXiv:2411.10803;
  ZipVL, He et al., arXiv:2410.08584): a shorter prefill and a shorter cache;
  its ``speedup``, or the ``flops_reduction`` of the step (as MustDrop reports it).
- ``parallel-encoding``: context chunks are prefilled independently, each
  attending only to itself (APE, Yang et al., arXiv:2502.05431): attention
  pairs fall from ``T^2/2`` to ``T^2/(2n)`` for ``n`` chunks.
- ``linear-attention``: a recurrent state per head replaces the KV cache in
  decoding (gated linear attention, Yang et al., arXiv:2312.06635; H3, Fu et
  al., arXiv:2212.14052): a decode step reads and writes a ``d_k x d_v`` state
  per head instead of the whole cache.
- ``encoder-decoder``: the same layers split into an encoder over the prompt
  and a cross-attending decoder (Return of the Encoder, Elfeki et al.,
  arXiv:2501.16273): a shorter first token, fewer layers a decode step, a
  smaller cache.
"""

from __future__ import annotations

import numpy as np

from hwmodels.calibration import calibration
from hwmodels.errors import InvalidValueError
from sim import step as steps
from sim.cost import StepCost, step_cost
from sim.precision import Precision
from sim.techniques.base import Param, Prediction, Setting, Technique


def _b(cost: StepCost) -> dict:
    return {"time_s": float(cost.time_s), **{k + "_s": float(v) for k, v in cost.time_by_bound().items()}}


def _speedup(technique: Technique, s: Setting, base: StepCost, new_time_s: float, new: dict, explain: str,
             breakdown: dict | None = None) -> Prediction:
    b = _b(base)
    parts = {"baseline_time_s": b["time_s"], "technique_time_s": new_time_s, **(breakdown or {})}
    return technique.prediction("speedup", b["time_s"] / new_time_s, s, {"what": base.step.description, **b},
                                {"what": technique.summary, "time_s": new_time_s, **new}, parts, explain)


STEP = Param("step", "decode", "kind", "the step compared: decode (one token over the context) or prefill (the context)", "-",
             choices=("decode", "prefill"))


def _step(s: Setting, kind: str, tokens: int | None = None):
    if kind == "decode":
        return steps.decode(s.batch, tokens if tokens is not None else s.context)
    return steps.prefill(s.batch, max(1, tokens if tokens is not None else s.context))


class WeightQuantization(Technique):
    name = "weight-quant"
    layer = "step"
    summary = "weights in fewer bits: fewer bytes per GEMM, dequantized on the fly when weight-only"
    citation = "Ding et al., CBQ, arXiv:2312.07950; Frantar et al., GPTQ, arXiv:2210.17323"
    params = (Param("weight_bits", 4, "bits", "bits per weight (2, 3, 4, 8)", "set per paper", 2, 16),
              Param("activation_bits", 16, "bits", "16, or 8 for W8A8 (fp8 GEMMs)", "set per paper", 8, 16), STEP)

    def predict(self, s: Setting) -> Prediction:
        step = _step(s, self.step)
        base = step_cost(s.llm, s.gpu, step, s.precision, s.tp)
        p = Precision(self.weight_bits, self.activation_bits, s.precision.kv_bits)
        new = step_cost(s.llm, s.gpu, step, p, s.tp)
        return _speedup(self, s, base, float(new.time_s), _b(new),
                        f"{s.llm.name} weights in {self.weight_bits} bits: the {self.step} step streams "
                        f"{float(new.bytes) / float(base.bytes):.2f}x the bytes; {float(base.time_s) * 1e3:.3g} -> "
                        f"{float(new.time_s) * 1e3:.3g} ms")


class WeightSparsity(Technique):
    name = "weight-sparsity"
    layer = "step"
    summary = "pruned weights skipped by the GEMMs: 2:4 on sparse Tensor Cores, or whole blocks"
    citation = ("Xu et al., LPViT: Low-Power Semi-structured Pruning for Vision Transformers, arXiv:2407.02068; "
                "Mishra et al., Accelerating Sparse Deep Neural Networks (2:4 on Ampere), arXiv:2104.08378")
    params = (
        Param("pattern", "block", "name", "2:4 (half of every 4 weights, 2 index bits each, Tensor Cores at twice the rate) | "
              "block (whole blocks skipped)", "set per paper",
              choices=("2:4", "block")),
        Param("kept_fraction", 0.5, "fraction", "block pattern: the share of weight blocks kept", "set per paper", 0.01, 1.0),
        STEP,
    )

    def predict(self, s: Setting) -> Prediction:
        """Every GEMM of the step: its math times ``k`` and its weight bytes times ``k + index bytes``, with
        ``k = 1/2`` and 2 index bits per kept 16-bit weight for 2:4 (the layout of sparse Tensor Cores), or ``k`` the
        blocks kept (block indices are negligible). Attention, norms and the rest are unchanged. 2:4 takes the
        datasheets' sparse rate, twice the dense one; sparse GEMM libraries reach less of it."""
        if self.pattern == "2:4":
            d = s.gpu
            if d.vendor != "NVIDIA" or float(d.compute_capability) < 8.0:
                raise InvalidValueError(f"{d.name} has no sparse Tensor Cores (NVIDIA Ampere and later)")
            k, index = 0.5, 0.5 * 2 / s.precision.weight_bits
        else:
            k, index = self.kept_fraction, 0.0
        base = step_cost(s.llm, s.gpu, _step(s, self.step), s.precision, s.tp)
        gemm = rest = 0.0
        for o in base.ops:
            if o.op.kind != "gemm":
                rest += float(o.total_s)
                continue
            weights = float(o.op.weight_bytes / o.op.bytes)
            memory = float(o.memory_s) * (1 - weights + weights * (k + index))
            gemm += (max(float(o.compute_s) * k, memory + float(o.dequant_s)) + float(o.overhead_s)) * o.op.repeat
        rest += sum(float(c.total_s) for c in base.comms)
        new = gemm + rest
        return _speedup(self, s, base, new, {"gemm_s": gemm, "other_s": rest},
                        f"{self.pattern} sparsity keeps {k:.3g} of the GEMM math and {k + index:.3g} of the weight bytes: "
                        f"{self.step} {float(base.time_s) * 1e3:.3g} -> {new * 1e3:.3g} ms")


class LayerSkip(Technique):
    name = "layer-skip"
    layer = "step"
    summary = "each token runs only a fraction of the layers"
    citation = "Liu et al., Accelerating Inference in LLMs with a Unified Layer Skipping Strategy, arXiv:2404.06954"
    params = (Param("skip_fraction", 0.5, "fraction", "layers skipped per token", "set per paper (the paper's target speedups)", 0.0, 0.99), STEP)

    def predict(self, s: Setting) -> Prediction:
        base = step_cost(s.llm, s.gpu, _step(s, self.step), s.precision, s.tp)
        L = s.llm.num_layers
        kept = max(1, round(L * (1 - self.skip_fraction)))
        layer, once = (float(x) for x in base.layer_and_once_s())
        per_layer = layer * L  # all the layers
        new = once + per_layer * kept / L
        return _speedup(self, s, base, new, {"layers_run": kept},
                        f"{kept} of {L} layers per token: {per_layer * 1e3:.3g} ms of layers -> {per_layer * kept / L * 1e3:.3g} ms, "
                        f"plus {once * 1e3:.3g} ms of embedding and LM head either way")


class TokenPruning(Technique):
    name = "token-pruning"
    layer = "step"
    summary = "a fraction of the prompt's tokens (e.g. vision tokens) is dropped for the layers after a point"
    citation = "Liu et al., MustDrop, arXiv:2411.10803; He et al., ZipVL, arXiv:2410.08584"
    params = (Param("kept_fraction", 0.25, "fraction", "prompt tokens kept after pruning", "set per paper", 0.0, 1.0),
              Param("prunable_fraction", 1.0, "fraction", "share of the prompt that may be pruned (the vision tokens)", "set per paper", 0.0, 1.0),
              Param("after_layer_fraction", 0.0, "fraction", "share of the layers run on every token before pruning", "set per paper", 0.0, 1.0),
              STEP, Param("metric", "speedup", "name", "speedup | flops_reduction (1 - the step's FLOPs over the baseline's)", "-",
                          choices=("speedup", "flops_reduction")))

    def predict(self, s: Setting) -> Prediction:
        kept_tokens = max(1, round(s.context * (1 - self.prunable_fraction * (1 - self.kept_fraction))))
        base = step_cost(s.llm, s.gpu, _step(s, self.step), s.precision, s.tp)
        pruned = step_cost(s.llm, s.gpu, _step(s, self.step, kept_tokens), s.precision, s.tp)
        a = self.after_layer_fraction
        if self.metric == "flops_reduction":
            base_flops = float(base.flops)
            flops = a * base_flops + (1 - a) * float(pruned.flops)
            return self.prediction("flops_reduction", 1 - flops / base_flops, s,
                                   {"what": base.step.description, "flops": base_flops},
                                   {"what": self.summary, "flops": flops, "tokens_after_pruning": kept_tokens},
                                   {"baseline_flops": base_flops, "flops_after_pruning": flops},
                                   f"{s.context} -> {kept_tokens} tokens for {1 - a:.0%} of the layers: {self.step} "
                                   f"{base_flops / 1e12:.3g} -> {flops / 1e12:.3g} TFLOP")
        new = a * float(base.time_s) + (1 - a) * float(pruned.time_s)
        return _speedup(self, s, base, new, {"tokens_after_pruning": kept_tokens},
                        f"{s.context} -> {kept_tokens} tokens for {1 - a:.0%} of the layers: {self.step} "
                        f"{float(base.time_s) * 1e3:.3g} -> {new * 1e3:.3g} ms")


class ParallelEncoding(Technique):
    name = "parallel-encoding"
    layer = "step"
    summary = "context chunks prefilled independently, each attending only to itself"
    citation = "Yang et al., APE, arXiv:2502.05431"
    params = (Param("chunks", 8, "chunks", "independent context chunks", "set per paper", 1, 1 << 20),)

    def predict(self, s: Setting) -> Prediction:
        if s.context < self.chunks:
            raise InvalidValueError(f"a context of {s.context} tokens cannot be cut into {self.chunks} chunks")
        base = step_cost(s.llm, s.gpu, steps.prefill(s.batch, s.context), s.precision, s.tp)
        chunk = s.context // self.chunks
        new = step_cost(s.llm, s.gpu, steps.prefill(s.batch * self.chunks, chunk), s.precision, s.tp)
        return _speedup(self, s, base, float(new.time_s), _b(new),
                        f"{self.chunks} chunks of {chunk} tokens, attention pairs / {self.chunks}: prefill "
                        f"{float(base.time_s) * 1e3:.3g} -> {float(new.time_s) * 1e3:.3g} ms")


class LinearAttention(Technique):
    name = "linear-attention"
    layer = "step"
    summary = "a recurrent d_k x d_v state per head replaces the KV cache in decoding"
    citation = "Yang et al., Gated Linear Attention, arXiv:2312.06635; Fu et al., H3, arXiv:2212.14052"
    params = (Param("state_bytes_per_element", 4.0, "bytes", "state element size (fp32 accumulation)", "GLA's fp32 state", 1.0, 8.0),)

    def predict(self, s: Setting) -> Prediction:
        m = s.llm
        base = step_cost(m, s.gpu, steps.decode(s.batch, s.context), s.precision, s.tp)
        heads = m.num_heads // s.tp
        state = s.batch * heads * m.head_dim * m.head_dim * self.state_bytes_per_element
        bw = calibration(s.gpu).achievable_hbm_read_bytes_per_s(s.gpu)
        attention = [o for o in base.ops if o.op.kind == "attention"][0]
        old = float(attention.total_s)
        new_attn = m.num_layers * (2 * state / bw + float(attention.overhead_s))  # read and write the state
        new = float(base.time_s) - old + new_attn
        return _speedup(self, s, base, new, {"state_bytes_per_layer": state},
                        f"attention over {s.context} cached tokens ({old * 1e3:.3g} ms) becomes a state update of "
                        f"{state / 1e6:.3g} MB per layer ({new_attn * 1e3:.3g} ms)", {"attention_s": old, "state_update_s": new_attn})


def _layer_times(s: Setting, batch: int, context: int) -> tuple[float, float]:
    """Seconds of one decode step's per-layer work (one layer, collectives included) and of its once-per-step ops."""
    layer, once = step_cost(s.llm, s.gpu, steps.decode(batch, context), s.precision, s.tp).layer_and_once_s()
    return float(layer), float(once)


class BlockTransformer(Technique):
    name = "block-transformer"
    layer = "step"
    summary = "global layers attend over blocks of tokens once per block; local layers attend within the block"
    citation = "Ho et al., Block Transformer: Global-to-Local Language Modeling for Fast Inference, arXiv:2406.02657"
    params = (
        Param("block_length", 4, "tokens", "L_B, tokens per block", "the paper's block length 4 (official configs)", 1, 1024),
        Param("global_fraction", 0.5, "fraction", "share of the layers in the block (global) decoder; the rest decode tokens",
              "the paper splits the parameters evenly", 0.05, 0.95),
        Param("metric", "speedup", "name", "speedup (a decode step at the setting's batch) | throughput_ratio (each at its largest batch)", "-",
              choices=("speedup", "throughput_ratio")),
    )

    def _time(self, s: Setting, batch: int) -> tuple[float, dict]:
        L, lb = s.llm.num_layers, self.block_length
        g = max(1, round(L * self.global_fraction))
        layer_g, once = _layer_times(s, batch, max(1, s.context // lb))  # attends over context / L_B block embeddings
        layer_l, _ = _layer_times(s, batch, lb)  # attends over its block and one context embedding
        parts = {"global_per_token_s": g * layer_g / lb, "local_per_token_s": (L - g) * layer_l, "head_s": once}
        return sum(parts.values()), parts

    def predict(self, s: Setting) -> Prediction:
        from sim.memory import max_batch

        m, L, lb = s.llm, s.llm.num_layers, self.block_length
        g = max(1, round(L * self.global_fraction))
        if self.metric == "speedup":
            base = step_cost(m, s.gpu, steps.decode(s.batch, s.context), s.precision, s.tp)
            t, parts = self._time(s, s.batch)
            return _speedup(self, s, base, t, {}, f"{g} global layers over {s.context // lb} block embeddings, run once per "
                            f"{lb} tokens, and {L - g} local layers over {lb} tokens: {float(base.time_s) * 1e3:.3g} -> "
                            f"{t * 1e3:.3g} ms per token", parts)
        # KV per sequence: global layers hold context / L_B entries, local layers L_B
        scale = (g * s.context / lb + (L - g) * lb) / (L * (s.context + 1))
        b0 = int(max_batch(m, s.gpu, s.context, s.precision, s.tp))
        b1 = int(max_batch(m, s.gpu, s.context, s.precision, s.tp, kv_bytes_scale=scale))
        if b0 < 1:
            raise InvalidValueError(f"{m.name} at context {s.context} does not fit one sequence on {s.tp}x {s.gpu.name}")
        base = step_cost(m, s.gpu, steps.decode(b0, s.context), s.precision, s.tp)
        t, parts = self._time(s, b1)
        ratio = (b1 / t) / (b0 / float(base.time_s))
        return self.prediction("throughput_ratio", ratio, s,
                          {"what": f"vanilla, largest batch {b0}", "tokens_per_s": b0 / float(base.time_s)},
                          {"what": f"block transformer, largest batch {b1}", "tokens_per_s": b1 / t, **parts},
                          {"batch_baseline": b0, "batch_block": b1, "kv_bytes_ratio": scale, **parts},
                          f"the KV cache shrinks to {scale:.3g} of vanilla's (global layers keep one entry per block, local "
                          f"layers one block): batch {b0} -> {b1}, {b0 / float(base.time_s):,.0f} -> {b1 / t:,.0f} tokens/s "
                          "(at equal parameters; the paper compares at equal perplexity)")


class EncoderDecoder(Technique):
    name = "encoder-decoder"
    layer = "step"
    summary = "the same layers split into a bidirectional encoder over the prompt and a decoder with cross-attention to it"
    citation = "Elfeki et al., Return of the Encoder: Maximizing Parameter Efficiency for SLMs, arXiv:2501.16273"
    params = (
        Param("encoder_fraction", 0.5, "fraction", "share of the layers in the encoder", "set per model", 0.05, 0.95),
        Param("output_tokens", 128, "tokens", "tokens generated after the prompt (the decode steps' self-attention)", "set per task",
              1, 1 << 20),
        Param("metric", "speedup", "name", "ttft_speedup (first token) | speedup (a decode step at the batch) | "
              "throughput_ratio (each at its largest batch)", "-",
              choices=("ttft_speedup", "speedup", "throughput_ratio")),
    )

    def predict(self, s: Setting) -> Prediction:
        """Against the decoder-only model of the setting, with its ``L`` layers split into ``L_e`` encoder and
        ``L_d = L - L_e`` decoder layers of the same width:

        - first token: the encoder runs over the prompt ``n`` once, attending both ways (``b n^2`` pairs), the decoder
          projects the encoder's output to cross-attention K,V in each of its layers, then takes one decode step;
          the decoder-only model prefills all ``L`` layers;
        - a decode step: ``L_d`` layers, each attending to the prompt (cross) and to the tokens generated (self), so
          it reads ``L_d / L`` of the KV; its cross-attention's Q and O projections add ``2 d^2`` weights a layer;
        - the cache per sequence is ``L_d / L`` of the decoder-only one.

        GEMM work is costed in proportion to the weights it uses (the step model's layer times scaled by weight
        shares), which holds both when they stream (decode) and when they are compute-bound (prefill)."""
        from sim.memory import max_batch

        m, L = s.llm, s.llm.num_layers
        enc = max(1, min(L - 1, round(L * self.encoder_fraction)))
        dec = L - enc
        n, t = s.context, self.output_tokens
        layer_params = m.params_per_layer
        qo_share = 2 * m.hidden_size * m.hidden_size / layer_params  # cross-attention Q and O
        kv_share = 2 * m.hidden_size * m.num_kv_heads * m.head_dim / layer_params  # its K and V over the prompt
        mid = n + t // 2  # the decode steps' average context: the prompt plus half the answer

        def decode_layers(batch: int) -> tuple[float, float]:
            layer, once = _layer_times(s, batch, mid)
            return dec * layer * (1 + qo_share) + once, L * layer + once

        if self.metric == "ttft_speedup":
            b = s.batch
            causal = steps.prefill(b, n)
            both_ways = steps.Step("prefill", causal.seqs, causal.new_tokens, causal.kv_read_tokens, np.float64(b * n * n),
                                   causal.logit_rows, causal.max_kv_tokens, f"encoder over {n} tokens, both ways",
                                   causal=False)
            enc_layer, _ = step_cost(m, s.gpu, both_ways, s.precision, s.tp).layer_and_once_s()
            dec_layer, _ = step_cost(m, s.gpu, causal, s.precision, s.tp).layer_and_once_s()
            layer1, once1 = _layer_times(s, b, n)
            parts = {"encoder_s": enc * float(enc_layer), "cross_kv_s": dec * kv_share * float(dec_layer),
                     "first_decode_s": dec * layer1 * (1 + qo_share) + once1}
            new = sum(parts.values())
            base = float(step_cost(m, s.gpu, causal, s.precision, s.tp).time_s)
            return self.prediction("ttft_speedup", base / new, s, {"what": f"decoder-only prefill of {n} tokens", "time_s": base},
                                   {"what": self.summary, "time_s": new, **parts}, {"baseline_s": base, **parts},
                                   f"{enc} encoder layers over {n} tokens and {dec} decoder layers' cross K,V, then one step: "
                                   f"{new * 1e3:.3g} ms against a {L}-layer prefill of {base * 1e3:.3g} ms")
        if self.metric == "speedup":
            new, base = decode_layers(s.batch)
            return self.prediction("speedup", base / new, s, {"what": f"decoder-only step over {mid} tokens", "time_s": base},
                                   {"what": self.summary, "time_s": new}, {"baseline_s": base, "encoder_decoder_s": new,
                                                                           "decoder_layers": dec, "cross_qo_share": qo_share},
                                   f"{dec} of {L} layers per token, each with cross-attention's Q and O (+{qo_share:.0%} "
                                   f"weights): {base * 1e3:.3g} -> {new * 1e3:.3g} ms a step")
        b0 = int(max_batch(m, s.gpu, n + t, s.precision, s.tp))
        b1 = int(max_batch(m, s.gpu, n + t, s.precision, s.tp, kv_bytes_scale=dec / L))
        if b0 < 1:
            raise InvalidValueError(f"{m.name} at {n + t} tokens does not fit one sequence on {s.tp}x {s.gpu.name}")
        new, _ = decode_layers(b1)
        _, base = decode_layers(b0)
        ratio = (b1 / new) / (b0 / base)
        return self.prediction("throughput_ratio", ratio, s,
                               {"what": f"decoder-only, largest batch {b0}", "tokens_per_s": b0 / base},
                               {"what": f"encoder-decoder, largest batch {b1}", "tokens_per_s": b1 / new},
                               {"batch_baseline": b0, "batch_encoder_decoder": b1, "kv_bytes_ratio": dec / L},
                               f"the cache holds {dec} of {L} layers: batch {b0} -> {b1}, {b0 / base:,.0f} -> {b1 / new:,.0f} "
                               "tokens/s (the encoder's prefills are not counted on either side)")


TECHNIQUES = (WeightQuantization, WeightSparsity, LayerSkip, TokenPruning, ParallelEncoding, LinearAttention, BlockTransformer, EncoderDecoder)

"""Training-side techniques: optimizer-state memory and the bytes data-parallel workers exchange.

- ``8bit-optimizer``: optimizer states in 8 bits with one 32-bit absmax scale
  per block (block-wise dynamic quantization, Dettmers et al.,
  arXiv:2110.02861), for every parameter (bitsandbytes keeps tensors under 4096
  elements in 32 bits: in an LLM, the norms, a negligible share). Metric:
  ``memory_ratio``, 8-bit state bytes over 32-bit.
- ``streaming-diloco``: workers train alone for ``inner_steps`` and then
  exchange outer gradients, one fragment of the model at a time, quantized to a
  few bits (Douillard et al., arXiv:2501.18512); against data-parallel training
  that all-reduces 32-bit gradients every step. Metric: ``traffic_ratio``, bytes
  exchanged over the same steps, data-parallel over Streaming DiLoCo.
- ``grad-compression``: data-parallel gradients sent quantized or top-k
  sparsified, with error feedback (EControl, Gao et al., arXiv:2311.05645).
  Metric: ``traffic_ratio``; the breakdown has the two exchanges' times.
- ``gradient-coding``: redundant data shares so a step needs only the fastest
  ``n - s`` workers (gradient coding; sequential gradient coding, Krishnan et
  al., arXiv:2211.13802, with its lower load). Metric: ``speedup`` of the
  expected step under independent stragglers.
"""

from __future__ import annotations

from hwmodels.errors import InvalidValueError
from sim.techniques.base import Param, Prediction, Setting, Technique


class EightBitOptimizer(Technique):
    name = "8bit-optimizer"
    layer = "training"
    summary = "Adam's two states in 8 bits with block-wise absmax scales"
    citation = "Dettmers et al., 8-bit Optimizers via Block-wise Quantization, arXiv:2110.02861"
    params = (
        Param("state_bits", 8, "bits", "bits per state element", "the paper: 8", 1, 32),
        Param("block_size", 2048, "elements", "elements sharing one fp32 absmax scale", "the paper: blocks of 2048", 1, 1 << 24),
        Param("states", 2, "states", "states per parameter (Adam: 2)", "Adam", 1, 4),
    )

    def predict(self, s: Setting) -> Prediction:
        m = s.llm
        params = m.params_total
        base = params * self.states * 4.0
        new = params * self.states * (self.state_bits / 8 + 4.0 / self.block_size)
        return self.prediction("memory_ratio", new / base, s, {"what": "32-bit states", "bytes": base},
                          {"what": self.summary, "bytes": new}, {"state_bytes_32bit": base, "state_bytes_8bit": new},
                          f"{m.name}: {self.states} states x {params / 1e9:.3g}B parameters take {new / 1e9:.3g} GB in "
                          f"{self.state_bits} bits (+ a 4-byte scale per {self.block_size}) against {base / 1e9:.3g} GB in 32 bits")


class StreamingDiLoCo(Technique):
    name = "streaming-diloco"
    layer = "training"
    summary = "local steps between synchronizations, one model fragment at a time, outer gradients in few bits"
    citation = "Douillard et al., Streaming DiLoCo with overlapping communication, arXiv:2501.18512"
    params = (
        Param("inner_steps", 100, "steps", "H, local steps between two synchronizations of a fragment", "the paper: H = 100", 1, 1 << 20),
        Param("outer_bits", 4, "bits", "bits per outer-gradient element", "the paper: 4-bit (e3m0)", 1, 32),
        Param("gradient_bits", 32, "bits", "bits per gradient element of the data-parallel baseline", "fp32 all-reduce", 1, 32),
    )

    def predict(self, s: Setting) -> Prediction:
        # every parameter is synchronized once per H steps (fragments stagger it, not change it)
        ratio = self.inner_steps * self.gradient_bits / self.outer_bits
        params = s.llm.params_total
        return self.prediction("traffic_ratio", ratio, s,
                          {"what": f"data-parallel, {self.gradient_bits}-bit gradients every step",
                           "bytes_per_step": params * self.gradient_bits / 8},
                          {"what": self.summary, "bytes_per_step": params * self.outer_bits / 8 / self.inner_steps},
                          {"inner_steps": self.inner_steps, "bits_ratio": self.gradient_bits / self.outer_bits},
                          f"each parameter crosses the network once per {self.inner_steps} steps in {self.outer_bits} bits "
                          f"instead of every step in {self.gradient_bits}: {ratio:,.0f}x fewer bytes")


class GradientCompression(Technique):
    name = "grad-compression"
    layer = "training"
    summary = "each worker sends compressed gradients (a few bits, or the top-k with their indices); the error is fed back"
    citation = "Gao et al., EControl: Fast Distributed Optimization with Compression and Error Control, arXiv:2311.05645"
    params = (
        Param("bits", 8, "bits", "bits per value sent", "set per run", 1, 32),
        Param("kept_fraction", 1.0, "fraction", "top-k: the share of values sent, each with a 32-bit index (1: all, no index)",
              "set per run", 0.0, 1.0),
        Param("gradient_bits", 32, "bits", "bits per gradient element of the uncompressed baseline", "fp32 all-reduce", 1, 32),
        Param("workers", 8, "GPUs", "data-parallel workers, on the device's own node", "-", 2, 4096),
    )

    def predict(self, s: Setting) -> Prediction:
        """``traffic_ratio = gradient_bits / (kept x (bits + index_bits))``, the bytes each worker sends. The error
        feedback (EControl's error control) only changes what is sent, not how much. The exchange times are NCCL's
        (:func:`hwmodels.collective_time`): an all-reduce of the dense gradients against an all-gather of every
        worker's compressed ones, since compressed messages cannot be summed on the way."""
        import hwmodels as hw

        if self.kept_fraction <= 0:
            raise InvalidValueError("kept_fraction must be above 0")
        index_bits = 32 if self.kept_fraction < 1 else 0
        sent_bits = self.kept_fraction * (self.bits + index_bits)
        ratio = self.gradient_bits / sent_bits
        params = s.llm.params_total
        node = hw.device_node(s.gpu, self.workers)
        dense = float(hw.collective_time("all_reduce", params * self.gradient_bits / 8, node).time_s)
        compressed = float(hw.collective_time("all_gather", self.workers * params * sent_bits / 8, node).time_s)
        return self.prediction("traffic_ratio", ratio, s,
                               {"what": f"{self.gradient_bits}-bit all-reduce", "bytes_per_step": params * self.gradient_bits / 8,
                                "exchange_s": dense},
                               {"what": self.summary, "bytes_per_step": params * sent_bits / 8, "exchange_s": compressed},
                               {"bits_sent_per_element": sent_bits, "dense_all_reduce_s": dense,
                                "compressed_all_gather_s": compressed},
                               f"{sent_bits:.3g} bits a gradient element instead of {self.gradient_bits}: {ratio:.3g}x fewer bytes; "
                               f"over {self.workers} {s.gpu.name}: all-reduce {dense * 1e3:.3g} ms, all-gather of the "
                               f"compressed {compressed * 1e3:.3g} ms")


class GradientCoding(Technique):
    name = "gradient-coding"
    layer = "training"
    summary = "each worker computes redundant data shares so the step waits for the fastest n - s workers, not all n"
    citation = ("Tandon et al., Gradient Coding, arXiv:1612.03301; Krishnan et al., Sequential Gradient Coding for "
                "Straggler Mitigation, arXiv:2211.13802")
    params = (
        Param("workers", 16, "workers", "n, data-parallel workers", "set per run", 2, 1 << 20),
        Param("stragglers", 1, "workers", "s, stragglers tolerated per step", "set per run", 0, 1 << 20),
        Param("load", 0.0, "x the uncoded share", "work per worker over the uncoded 1/n (0: gradient coding's s + 1; "
              "sequential gradient coding spreads it over steps for less)", "the scheme's design", 0.0, 1 << 20),
        Param("straggler_probability", 0.05, "probability", "p, chance that a worker straggles in a step, independently",
              "set per cluster", 0.0, 1.0),
        Param("slowdown", 3.0, "x", "a straggler's time over a normal worker's", "set per cluster", 1.0, 1e6),
    )

    def predict(self, s: Setting) -> Prediction:
        """Expected step time over the uncoded one, the compute only (both send one gradient a worker). A worker takes
        ``load x t`` or ``slowdown x load x t``; a step lasts the normal time when at least the workers it waits for
        are fast, and the straggler time otherwise: ``E = load t (1 + (slowdown - 1) P[fast < k])``, with ``k = n``
        uncoded and ``k = n - s`` coded, ``fast ~ Binomial(n, 1 - p)``. Hardware-independent: ``t`` cancels."""
        from math import comb

        n, st, p = self.workers, self.stragglers, self.straggler_probability
        if st >= n:
            raise InvalidValueError(f"stragglers must be fewer than the {n} workers, got {st}")
        load = self.load or st + 1.0

        def p_short(k: int) -> float:  # P[fewer than k of n workers are fast]
            return sum(comb(n, j) * (1 - p) ** j * p ** (n - j) for j in range(k))

        uncoded = 1 + (self.slowdown - 1) * p_short(n)
        coded = load * (1 + (self.slowdown - 1) * p_short(n - st))
        return self.prediction("speedup", uncoded / coded, s,
                               {"what": f"uncoded: waits for all {n} workers", "expected_step": uncoded},
                               {"what": f"coded: load {load:g}, waits for {n - st}", "expected_step": coded},
                               {"p_uncoded_waits_for_a_straggler": p_short(n), "p_coded_waits": p_short(n - st),
                                "load": load},
                               f"{n} workers, each straggling {self.slowdown:g}x with probability {p:g}: uncoded steps wait "
                               f"for a straggler {p_short(n):.0%} of the time; carrying {load:g}x the work, the coded ones "
                               f"{p_short(n - st):.1%}")


TECHNIQUES = (EightBitOptimizer, StreamingDiLoCo, GradientCompression, GradientCoding)

"""The operator graph of one step: every op with its FLOPs and bytes, as numpy arrays.

Each :class:`Op` is one kernel's work on one GPU (after tensor-parallel
sharding), repeated ``repeat`` times per step (once per layer, or once for the
embedding and the head). Byte counts are split by what is read: weights,
activations, and the KV cache, each in its own precision, so that weight-only
quantization, FP8 activations and a low-bit KV cache change exactly the bytes
they should.

Conventions (minimum traffic, each operand read once, as in a roofline):
GEMM ``[M,K] x [K,N]``: ``2MNK`` FLOPs, weight bytes ``NK`` at weight precision,
activations ``MK + MN`` at activation precision. Attention: ``4 d`` FLOPs per
(query, key) pair and head (QK^T and PV), the KV cache read once per sequence
and the new tokens' K and V written once. Norms, RoPE and the MLP activation
read and write their inputs once. MoE: tokens go to ``k`` of ``E`` experts; the
expected number of distinct experts touched by ``M`` tokens under uniform
routing is ``E (1 - (1 - k/E)^M)``, and only their weights are read, by one
grouped GEMM per matrix; routing, the copy of each token's row per chosen
expert and the weighted sum back are ops of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwmodels.errors import InvalidValueError
from sim.model import ModelConfig
from sim.precision import Precision
from sim.step import Step

OP_KINDS = ("gemm", "attention", "memory")


@dataclass(frozen=True, eq=False)
class Routing:
    """How a grouped GEMM's rows fall into its groups: each of ``experts`` groups (this GPU's experts) gets
    ``Binomial(tokens, share)`` rows, as uniform top-k routing of ``tokens`` tokens over E experts does
    (``share = k / E``). The groups are uneven, and each is padded to whole tiles on its own."""

    tokens: np.ndarray
    share: float
    experts: float


@dataclass(frozen=True, eq=False)
class Op:
    """One kernel's cost record on one GPU. Arrays broadcast over the step's sweep axes."""

    name: str
    kind: str
    repeat: int
    flops: np.ndarray
    weight_bytes: np.ndarray
    activation_bytes: np.ndarray
    kv_bytes: np.ndarray = field(default_factory=lambda: np.float64(0.0))
    dtype: str = "bf16"
    kernels: int = 1
    #: GEMM dimensions (rows, columns, depth) and how many independent GEMMs, for tile quantization
    gemm_mnk: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    gemm_groups: np.ndarray = field(default_factory=lambda: np.float64(1.0))
    #: bits of weights dequantized on the fly to the activations' width (weight-only GEMMs), else None
    weight_only_bits: int | None = None
    #: one grouped-GEMM launch over several experts' weights (streams at the grouped rate when memory-bound)
    grouped: bool = False
    #: the distribution of the groups' rows, for their tile padding (None: ``gemm_groups`` even groups)
    routing: Routing | None = None

    @property
    def bytes(self) -> np.ndarray:
        return self.weight_bytes + self.activation_bytes + self.kv_bytes


@dataclass(frozen=True)
class Sharding:
    """Tensor-parallel split of one layer: heads, KV heads, FFN width and vocabulary per GPU."""

    tp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "ep"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidValueError(f"{name} must be a positive integer, got {v!r}")


def check_sharding(model: ModelConfig, sharding: Sharding) -> None:
    """Refuse layouts that cannot be built, saying why."""
    tp = sharding.tp
    if model.num_heads % tp:
        raise InvalidValueError(
            f"{model.name} has {model.num_heads} attention heads, which {tp}-way tensor parallelism "
            f"cannot split evenly; use a TP size dividing {model.num_heads}"
        )
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise InvalidValueError(
            f"{model.name} has {model.num_kv_heads} KV heads: TP={tp} must divide them or be a multiple of them"
        )
    if model.intermediate_size % tp:
        raise InvalidValueError(f"{model.name}'s FFN width {model.intermediate_size} is not divisible by TP={tp}")
    experts = getattr(model, "num_experts", 1)
    if sharding.ep > 1 and experts % sharding.ep:
        raise InvalidValueError(f"{model.name} has {experts} experts, not divisible by EP={sharding.ep}")


def _gemm(name, rows, n, k, p: Precision, repeat: int, groups=1.0, weight_copies=1.0, routing: Routing | None = None) -> Op:
    rows = np.asarray(rows, dtype=float)
    a = p.activation_bytes
    return Op(
        name=name,
        kind="gemm",
        repeat=repeat,
        flops=2.0 * rows * n * k,
        weight_bytes=np.asarray(weight_copies * n * k * p.weight_bytes, dtype=float),
        activation_bytes=(rows * k + rows * n) * a,
        dtype=p.gemm_dtype,
        gemm_mnk=(rows / groups, np.float64(n), np.float64(k)),
        gemm_groups=np.asarray(groups, dtype=float),
        weight_only_bits=p.weight_bits if p.weight_bits < p.activation_bits and p.gemm_dtype != "fp8" else None,
        grouped=routing is not None,
        routing=routing,
    )


def _memory(name, elements_read, elements_written, p: Precision, repeat: int, flops_per_element=1.0, kernels=1) -> Op:
    elements_read = np.asarray(elements_read, dtype=float)
    return Op(
        name=name,
        kind="memory",
        repeat=repeat,
        flops=flops_per_element * elements_read,
        weight_bytes=np.float64(0.0),
        activation_bytes=(elements_read + elements_written) * p.activation_bytes,
        dtype=p.gemm_dtype,
        kernels=kernels,
    )


#: the ops that run once per sequence producing logits (``step.logit_rows``), not per token
LOGIT_OPS = ("final_norm", "lm_head", "sampling")


def step_graph(model: ModelConfig, step: Step, precision: Precision = Precision(), sharding: Sharding = Sharding()) -> list[Op]:
    """The ops of ``step`` on one GPU of a ``sharding.tp``-way tensor-parallel group.

    Column-parallel QKV and up projections, row-parallel output and down
    projections (Shoeybi et al., Megatron-LM, arXiv:1909.08053); KV heads are
    replicated when there are fewer of them than GPUs; the LM head is split
    over the vocabulary. The all-reduces are communication, added by
    :mod:`sim.parallel`, not ops here.
    """
    check_sharding(model, sharding)
    m, p, tp = model, precision, sharding.tp
    L = m.num_layers
    d = m.head_dim
    heads = m.num_heads // tp
    kv_heads = max(m.num_kv_heads // tp, 1)
    q_dim, kv_dim = heads * d, kv_heads * d
    ffn = m.intermediate_size // tp
    h = m.hidden_size
    rows = step.new_tokens

    ops = [
        _memory("embedding", rows * h, rows * h, p, 1, flops_per_element=0.0),
        _memory("attn_norm", rows * h, rows * h, p, L, flops_per_element=4.0),
        _gemm("qkv_proj", rows, q_dim + 2 * kv_dim, h, p, L),
        _memory("rope", rows * (q_dim + kv_dim), rows * (q_dim + kv_dim), p, L, flops_per_element=4.0),
        Op(
            name="attention",
            kind="attention",
            repeat=L,
            flops=4.0 * d * heads * step.attention_pairs,
            weight_bytes=np.float64(0.0),
            activation_bytes=2.0 * rows * q_dim * p.activation_bytes,  # read Q, write O
            kv_bytes=(step.kv_read_tokens + rows) * 2 * kv_dim * p.kv_bytes,  # read the cache, write new K,V
            dtype=p.attention_dtype,
        ),
        _gemm("o_proj", rows, h, q_dim, p, L),
        _memory("mlp_norm", rows * h, rows * h, p, L, flops_per_element=4.0),
    ]
    ops += _mlp(m, rows, ffn, p, sharding)
    ops += [
        _memory("final_norm", step.logit_rows * h, step.logit_rows * h, p, 1, flops_per_element=4.0),
        _gemm("lm_head", step.logit_rows, -(-m.vocab_size // tp), h, p, 1),
        # softmax and sampling over the (sharded) vocabulary: read the logits, write probabilities
        _memory("sampling", step.logit_rows * m.vocab_size / tp, step.logit_rows, p, 1, flops_per_element=5.0, kernels=2),
    ]
    return ops


def _mlp(m: ModelConfig, rows, ffn: int, p: Precision, sharding: Sharding) -> list[Op]:
    L, h = m.num_layers, m.hidden_size
    up_width = (2 if m.gated_mlp else 1) * ffn
    experts = getattr(m, "num_experts", 1) or 1
    if experts <= 1:
        return [
            _gemm("mlp_up", rows, up_width, h, p, L),
            _memory("mlp_act", rows * up_width, rows * ffn, p, L, flops_per_element=4.0),
            _gemm("mlp_down", rows, h, ffn, p, L),
        ]
    k = getattr(m, "experts_per_token", 1)
    local_experts = experts / sharding.ep
    # Expected distinct experts (of this GPU's) touched by the step's tokens, uniform routing.
    touched = local_experts * (1.0 - (1.0 - k / experts) ** np.asarray(rows, dtype=float))
    expert_rows = rows * k / sharding.ep
    routing = Routing(tokens=np.asarray(rows, dtype=float), share=k / experts, experts=local_experts)
    # The kernels of TensorRT-LLM's MoE layer (cpp/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_kernels.cu):
    # top-k gating, the expert map (a sort of the (token, expert) pairs) and the grouped GEMMs' problem setup;
    # expandInputRowsKernel copies each token's row once per chosen expert, in expert order; two grouped GEMMs
    # with the activation between them; finalizeMoeRoutingKernel weights and sums each token's k expert rows.
    return [
        _gemm("moe_router", rows, experts, h, p, L),
        _memory("moe_route", rows * experts, 2.0 * rows * k, p, L, flops_per_element=4.0, kernels=3),
        _memory("moe_permute", expert_rows * h, expert_rows * h, p, L, flops_per_element=0.0),
        _gemm("moe_up", expert_rows, up_width, h, p, L, groups=touched, weight_copies=touched, routing=routing),
        _memory("moe_act", expert_rows * up_width, expert_rows * ffn, p, L, flops_per_element=4.0),
        _gemm("moe_down", expert_rows, h, ffn, p, L, groups=touched, weight_copies=touched, routing=routing),
        _memory("moe_combine", expert_rows * h, expert_rows / k * h, p, L, flops_per_element=2.0),
    ]

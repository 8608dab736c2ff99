"""Speculative and parallel decoding: tokens per round against the cost of a round.

Every technique here changes the decode loop the same way (Leviathan et al.,
arXiv:2211.17192; Chen et al., arXiv:2302.01318): a round drafts some tokens
(with a small model, extra heads, a shallow part of the model, or a lookup that
costs no GPU time), verifies ``T`` candidate tokens in one forward pass of the
target model, and keeps ``tau`` of them on average (the accepted ones plus the
one the target produces itself). Against plain decoding, one token per decode
step,

    speedup = tau * decode_s / round_s,   round_s = draft_s + verify_s

(``max(draft_s, verify_s)`` when drafting and verifying run at once on
different devices, as PEARL does). ``verify_s`` and the drafts' times come from
the step model (:func:`sim.cost.step_cost`) at the setting's batch and
context, so the same ``tau`` buys less at a large batch, where verifying ``T``
tokens per sequence is compute-bound, than at batch 1, where it costs about one
decode step. ``tau`` is the paper's own measurement (mean accepted tokens per
step) or follows from a per-token acceptance rate ``alpha`` and ``gamma``
drafted tokens: ``tau = (1 - alpha^(gamma+1)) / (1 - alpha)`` (Leviathan et
al., eq. 1).

Three more change the decode loop without a rejected draft: ``block-decoding``
keeps every token of a B-token pass (the same formula with ``tau = T = B``),
``superposed`` produces k drafts from one sequence's steps, and
``collaborative-decoding`` hands a next-scale image generator's fine scales to a
smaller model.
"""

from __future__ import annotations

import numpy as np

import hwmodels as hw
from hwmodels.errors import InvalidValueError
from sim import step as steps
from sim.cost import StepCost, step_cost, time_op
from sim.graph import Sharding, _gemm
from sim.model import get_model
from sim.techniques.base import Param, Prediction, Setting, Technique


def expected_tokens(alpha: float, gamma: int) -> float:
    """Mean tokens per round of a chain of ``gamma`` drafts each accepted with probability ``alpha``."""
    if alpha >= 1.0:
        return gamma + 1.0
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def _t(cost: StepCost) -> float:
    return float(cost.time_s)


def _bounds(cost: StepCost) -> dict:
    return {k + "_s": float(v) for k, v in cost.time_by_bound().items()}


#: both sides attend with FlashDecoding's split-KV kernel, which takes a few query rows per sequence as well as
#: one (``flash_attn_with_kvcache``): without splits a verification at batch 1 would leave most SMs idle
ATTENTION = "split-kv"


def decode_cost(s: Setting) -> StepCost:
    return step_cost(s.llm, s.gpu, steps.decode(s.batch, s.context), s.precision, s.tp, attention=ATTENTION)


def verify_cost(s: Setting, tokens: int, tree_pairs: float | None = None) -> StepCost:
    step = steps.verify(s.batch, s.context, tokens, tree=tree_pairs is not None, tree_pairs=tree_pairs)
    return step_cost(s.llm, s.gpu, step, s.precision, s.tp, attention=ATTENTION)


def draft_model_s(s: Setting, draft: str, steps_per_round: int, width: int = 1) -> tuple[float, str]:
    """``steps_per_round`` forward passes of a draft model on one GPU, each over ``width`` tokens per sequence."""
    model = get_model(draft)
    step = steps.decode(s.batch, s.context) if width == 1 else steps.verify(s.batch, s.context, width, tree=True, tree_pairs=width)
    one = step_cost(model, s.gpu, step, s.precision, attention=ATTENTION)
    return steps_per_round * _t(one), f"{steps_per_round} x {model.name} step ({width} token(s) per sequence)"


def heads_s(s: Setting, heads: int, rows_per_seq: int, hidden_layers: int = 1, own_lm_head: bool = True) -> tuple[float, str]:
    """Draft heads on the target's last hidden state: each head ``hidden_layers`` h x h layers and,
    when it has one, its own projection to the vocabulary (Medusa's heads do; Cai et al.,
    arXiv:2401.10774, sec. 2.1.1), over ``rows_per_seq`` rows per sequence."""
    m, d, p = s.llm, s.gpu, s.precision
    rows = s.batch * rows_per_seq
    sharding = Sharding(tp=s.tp)
    cal = hw.calibration(d)
    ops = [_gemm("head_mlp", rows, m.hidden_size // s.tp, m.hidden_size, p, heads * hidden_layers)]
    if own_lm_head:
        ops.append(_gemm("head_lm", rows, -(-m.vocab_size // s.tp), m.hidden_size, p, heads))
    total = sum(float(np.asarray(time_op(op, steps.decode(s.batch, s.context), m, sharding, d, cal,
                                         cal.graph_launch_s or 0.0, "flash").total_s)) for op in ops)
    return total, f"{heads} draft heads ({hidden_layers} hidden layer(s){' and an LM head' if own_lm_head else ''} each)"


def decode_loop(technique: Technique, s: Setting, tau: float, verify_tokens: int, draft_s: float, draft_what: str,
                tree_pairs: float | None = None, overlap: bool = False) -> Prediction:
    """The speedup of a round of ``draft_s`` drafting and a ``verify_tokens``-token verification
    that keeps ``tau`` tokens, over plain decoding at the same setting."""
    if tau < 1.0 or tau > verify_tokens + 1:
        raise InvalidValueError(f"tokens per round must lie in [1, verified tokens + 1 = {verify_tokens + 1}], got {tau:.3g}")
    base = decode_cost(s)
    ver = verify_cost(s, verify_tokens, tree_pairs)
    decode_s, verify_s = _t(base), _t(ver)
    round_s = max(draft_s, verify_s) if overlap else draft_s + verify_s
    speedup = tau * decode_s / round_s
    how = "drafting beside verification" if overlap else "drafting then verification"
    explain = (f"{tau:.2f} tokens per round of {round_s * 1e3:.3g} ms ({how}: draft {draft_s * 1e3:.3g} ms, {draft_what}; "
               f"verify {verify_tokens} tokens per sequence {verify_s * 1e3:.3g} ms = {verify_s / decode_s:.2f} decode steps) "
               f"against 1 token per {decode_s * 1e3:.3g} ms decode step")
    return technique.prediction(
        "speedup", speedup, s,
        baseline={"what": "autoregressive decoding, one token per step", "time_per_token_s": decode_s, "breakdown": _bounds(base)},
        technique_cost={"what": technique.summary, "time_per_token_s": round_s / tau, "round_s": round_s,
                        "tokens_per_round": tau, "verify_breakdown": _bounds(ver)},
        breakdown={"draft_s": draft_s, "verify_s": verify_s, "round_s": round_s, "tokens_per_round": tau,
                   "verify_over_decode": verify_s / decode_s},
        explain=explain,
    )


class DecodeLoopTechnique(Technique):
    """A decode-loop technique: tokens per round from the paper's measurement, or from acceptance and draft length."""

    layer = "decode-loop"

    def tau(self) -> float:
        if self.mean_accepted_tokens:
            return self.mean_accepted_tokens
        if "acceptance" in self.values:
            return expected_tokens(self.acceptance, self.draft_tokens)
        raise InvalidValueError(f"{self.name} needs mean_accepted_tokens (the paper's measured tokens per round)")


DRAFT_MODEL = Param("draft_model", "Llama-2-7B", "model", "the draft model (catalog name or config.json)", "set per paper")
TAU = Param("mean_accepted_tokens", 0.0, "tokens per round", "tokens kept per verification (accepted drafts plus the "
            "target's own token); 0: from acceptance and draft_tokens", "the paper's measurement for its setting", 0.0)


class ChainSpeculation(DecodeLoopTechnique):
    name = "spec-chain"
    summary = "a draft model proposes gamma tokens, the target verifies them in one pass"
    citation = "Leviathan et al., arXiv:2211.17192; Chen et al., arXiv:2302.01318"
    params = (
        DRAFT_MODEL,
        Param("draft_tokens", 4, "tokens", "gamma, tokens drafted per round", "Leviathan et al. use 3-7", 1, 64),
        Param("acceptance", 0.7, "probability", "alpha, per-token acceptance rate", "Leviathan et al., Table 3 range", 0.0, 1.0),
        TAU,
    )

    overlap = False  # drafting and verification one after the other

    def predict(self, s: Setting) -> Prediction:
        draft_s, what = draft_model_s(s, self.draft_model, self.draft_tokens)
        return decode_loop(self, s, self.tau(), self.draft_tokens + 1, draft_s, what, overlap=self.overlap)


class ParallelDraftVerify(ChainSpeculation):
    name = "pearl"
    summary = "the draft model keeps drafting while the target verifies (pre-verify, post-verify), on separate devices"
    citation = "Liu et al., PEARL: Parallel Speculative Decoding with Adaptive Draft Length, arXiv:2408.11850"
    overlap = True


class TreeSpeculation(DecodeLoopTechnique):
    name = "spec-tree"
    summary = "a draft model proposes a token tree level by level, the target verifies the tree with a tree mask"
    citation = "Miao et al., SpecInfer, arXiv:2305.09781; Xiong et al., DySpec, arXiv:2410.11744"
    params = (
        DRAFT_MODEL,
        Param("tree_tokens", 64, "tokens", "T, candidate tokens verified per round", "set per paper", 1, 4096),
        Param("tree_depth", 5, "levels", "draft forward passes per round (one per level)", "set per paper", 1, 256),
        TAU,
    )

    def predict(self, s: Setting) -> Prediction:
        width = max(1, round(self.tree_tokens / self.tree_depth))
        draft_s, what = draft_model_s(s, self.draft_model, self.tree_depth, width)
        return decode_loop(self, s, self.tau(), self.tree_tokens, draft_s, what,
                           tree_pairs=_tree_pairs(self.tree_tokens, self.tree_depth))


def _tree_pairs(tokens: int, depth: int) -> float:
    """(node, ancestor-or-self) pairs of a tree of ``tokens`` nodes spread as evenly as whole levels
    allow over ``depth`` levels (at most one per node: a tree no deeper than its nodes)."""
    depth = max(1, min(depth, tokens))
    sizes = [tokens // depth + (1 if level < tokens % depth else 0) for level in range(depth)]
    return float(sum(size * (level + 1) for level, size in enumerate(sizes)))


class DraftHeads(DecodeLoopTechnique):
    name = "draft-heads"
    summary = "extra decoding heads on the target's hidden state propose a tree of tokens (Medusa, Hydra, Clover)"
    citation = "Cai et al., Medusa, arXiv:2401.10774; Ankner et al., Hydra, arXiv:2402.05109; Xiao et al., Clover, arXiv:2405.00263"
    params = (
        Param("heads", 4, "heads", "draft heads (one per drafted position)", "Medusa's default of 4 heads (arXiv:2401.10774)", 1, 16),
        Param("head_layers", 1, "layers", "hidden h x h layers per head", "Medusa: one ResBlock per head", 0, 8),
        Param("sequential", 0, "0 or 1", "1: each head runs per tree node, conditioned on the previous token (Hydra)",
              "Ankner et al., sec. 3", 0, 1),
        Param("tree_tokens", 64, "tokens", "T, candidate tokens verified per round", "Medusa's 64-node tree", 1, 4096),
        TAU,
    )

    def predict(self, s: Setting) -> Prediction:
        rows = self.tree_tokens if self.sequential else 1
        draft_s, what = heads_s(s, self.heads, rows, self.head_layers)
        return decode_loop(self, s, self.tau(), self.tree_tokens, draft_s, what,
                           tree_pairs=_tree_pairs(self.tree_tokens, self.heads))


class SelfSpeculation(DecodeLoopTechnique):
    name = "self-spec"
    summary = "the target's first layers (plus an adapter) draft; the whole target verifies (early exit, layer skipping)"
    citation = "Liu et al., Kangaroo, arXiv:2404.18911; Elhoushi et al., LayerSkip, arXiv:2404.16710"
    params = (
        Param("draft_layers", 2, "layers", "layers of the target the draft runs (the early exit)", "Kangaroo: 2 layers on Vicuna-7B", 1, 512),
        Param("draft_tokens", 4, "tokens", "tokens drafted per round", "set per paper", 1, 64),
        TAU,
        Param("acceptance", 0.7, "probability", "per-token acceptance if mean_accepted_tokens is 0", "set per paper", 0.0, 1.0),
    )

    def predict(self, s: Setting) -> Prediction:
        tau = self.tau()
        m = s.llm
        if self.draft_layers >= m.num_layers:
            raise InvalidValueError(f"draft_layers must be fewer than {m.name}'s {m.num_layers} layers")
        layer, head = (float(x) for x in decode_cost(s).layer_and_once_s())
        draft_s = self.draft_tokens * (self.draft_layers * layer + head)
        return decode_loop(self, s, tau, self.draft_tokens + 1, draft_s,
                           f"{self.draft_tokens} x ({self.draft_layers} of {m.num_layers} layers + LM head)")


class DraftFree(DecodeLoopTechnique):
    name = "draft-free"
    summary = "candidates come from a lookup (the prompt, earlier outputs, an n-gram or token table), not from a GPU model"
    citation = ("Luo et al., Token Recycling, arXiv:2408.08696; Liu et al., ADED, arXiv:2407.08223; Dumitru et al., "
                "CopySpec, arXiv:2502.08923; Sun et al., Aggressive Decoding, arXiv:2205.10350; Teng et al., Speculative Jacobi "
                "Decoding, arXiv:2410.01699 (its drafts are the previous Jacobi iteration's outputs)")
    params = (
        Param("verify_tokens", 16, "tokens", "candidate tokens verified per round per sequence", "set per paper", 1, 4096),
        Param("tree", 1, "0 or 1", "1: the candidates form a tree (tree mask), 0: a chain", "set per paper", 0, 1),
        TAU,
    )

    def predict(self, s: Setting) -> Prediction:
        tau = self.tau()
        pairs = _tree_pairs(self.verify_tokens, max(1, round(tau))) if self.tree else None
        return decode_loop(self, s, tau, self.verify_tokens, 0.0, "a lookup on the host (no GPU time)",
                           tree_pairs=pairs)


class MultiDraft(DecodeLoopTechnique):
    name = "multi-draft"
    summary = "k candidate drafts from a draft model, verified together as a tree (SpecTr, Recursive Speculative Decoding)"
    citation = "Sun et al., SpecTr, arXiv:2310.15141; Jeon et al., Recursive Speculative Decoding, arXiv:2402.14160"
    params = (
        DRAFT_MODEL,
        Param("drafts", 4, "drafts", "k, candidate sequences drafted per round", "set per paper", 1, 256),
        Param("draft_tokens", 4, "tokens", "gamma, tokens per candidate", "set per paper", 1, 64),
        TAU,
    )

    def predict(self, s: Setting) -> Prediction:
        # k drafts decode side by side: gamma steps of the draft model at k times the batch
        draft_s, what = draft_model_s(s, self.draft_model, self.draft_tokens, self.drafts)
        tokens = self.drafts * self.draft_tokens
        pairs = self.drafts * self.draft_tokens * (self.draft_tokens + 1) / 2  # k chains sharing only the context
        return decode_loop(self, s, self.tau(), tokens, draft_s, what, tree_pairs=pairs)


class LongContextSpeculation(ChainSpeculation):
    name = "long-context-spec"
    summary = "the draft reads a short retrieved context while the target verifies over the whole one (RAPID)"
    citation = "Chen et al., Long-Context Inference with Retrieval-Augmented Speculative Decoding (RAPID), arXiv:2502.20330"
    params = ChainSpeculation.params + (
        Param("draft_context", 4096, "tokens", "context the draft model attends to (the retrieved part)", "set per paper", 0, 1 << 24),)

    def predict(self, s: Setting) -> Prediction:
        tau = self.tau()
        short = Setting(s.device, s.model, s.batch, min(s.context, self.draft_context), s.tp, s.precision)
        draft_s, what = draft_model_s(short, self.draft_model, self.draft_tokens)
        return decode_loop(self, s, tau, self.draft_tokens + 1, draft_s, f"{what} over {short.context} retrieved tokens")


class BlockDecoding(DecodeLoopTechnique):
    name = "block-decoding"
    summary = "a block of B tokens per forward pass, every one kept (semi-autoregressive: no draft, no rejection)"
    citation = ("Ren et al., Next Block Prediction, arXiv:2502.07737; Zhao et al., Context Perception Parallel Decoder "
                "(CPPD), arXiv:2307.12270")
    params = (Param("block_tokens", 16, "tokens", "B, tokens predicted together in one forward pass", "set per paper", 1, 4096),)

    def predict(self, s: Setting) -> Prediction:
        # a pass over B query positions that keeps all B: a verification with tau = B and nothing drafted
        # (the block's tokens attend causally here; bidirectionally within the block they add B(B-1)/2 pairs)
        b = self.block_tokens
        return decode_loop(self, s, float(b), b, 0.0, "none: the block is predicted, not drafted")


class SuperposedDecoding(Technique):
    name = "superposed"
    layer = "decode-loop"
    summary = "k drafts from one forward pass per token: their embeddings superposed, n-gram interpolation on the host picks each"
    citation = "Shen et al., Superposed Decoding, arXiv:2405.18400"
    params = (
        Param("drafts", 3, "drafts", "k, generations produced together", "the paper: k >= 3", 1, 4096),
        Param("baseline", "batched", "mode", "batched: the k drafts decoded as k sequences of one batch; sequential: one after "
              "another", "-",
              choices=("batched", "sequential")),
    )

    def predict(self, s: Setting) -> Prediction:
        """Per token, one decode step at the setting's batch (one superposed sequence per request; its n-gram lookups
        on the host are not charged) against ``k`` sequences per request decoded together, or ``k`` steps in turn."""
        k = self.drafts
        one = decode_cost(s)
        if self.baseline == "batched":
            base = decode_cost(Setting(s.device, s.model, s.batch * k, s.context, s.tp, s.precision))
            base_s, what = _t(base), f"{k} drafts as a batch of {s.batch * k} sequences"
        else:
            base, base_s, what = one, k * _t(one), f"{k} drafts one after another"
        t = _t(one)
        return self.prediction("speedup", base_s / t, s, {"what": what, "time_per_token_s": base_s, "breakdown": _bounds(base)},
                               {"what": self.summary, "time_per_token_s": t, "breakdown": _bounds(one)},
                               {"baseline_s": base_s, "superposed_s": t, "drafts": k},
                               f"{k} drafts per request: {what} take {base_s * 1e3:.3g} ms a token, one superposed "
                               f"step {t * 1e3:.3g} ms (and 1/{k} of the KV cache)")


class CollaborativeDecoding(Technique):
    name = "collaborative-decoding"
    layer = "decode-loop"
    summary = "next-scale generation: a large model drafts the coarse scales, a small one refines the fine scales"
    citation = "Chen et al., Collaborative Decoding Makes Visual Auto-Regressive Modeling Efficient (CoDe), arXiv:2411.17787"
    params = (
        Param("scales", "1,2,3,4,5,6,8,10,13,16", "side lengths", "token-map sides of the scales, coarse to fine (s x s "
              "tokens each)", "VAR at 256x256 (patch_nums of Tian et al., arXiv:2404.02905)"),
        Param("draft_steps", 8, "scales", "scales the large model generates before the small one takes over", "CoDe: 8 of 10",
              0, 64),
        Param("small_model", "Llama-2-7B", "model", "the refiner (catalog name or config.json); the setting's model drafts",
              "set per paper"),
    )

    def predict(self, s: Setting) -> Prediction:
        """Each scale is one forward pass over its ``s_k^2`` tokens attending to every coarser token (a prefill chunk
        on a prefix, the step model's). The baseline runs every scale on the large model; CoDe runs the first
        ``draft_steps`` on it and the rest on the small model, which first encodes the drafted tokens it did not see
        (one prefill over them). The batch is the setting's; classifier-free guidance would double it on both sides."""
        try:
            sides = [int(x) for x in str(self.scales).split(",")]
        except ValueError:
            raise InvalidValueError(f"scales must be comma-separated integers, got {self.scales!r}") from None
        if not sides or min(sides) < 1:
            raise InvalidValueError(f"scales must be positive, got {self.scales!r}")
        if self.draft_steps > len(sides):
            raise InvalidValueError(f"draft_steps {self.draft_steps} exceeds the {len(sides)} scales")
        small = get_model(self.small_model)
        tokens = [k * k for k in sides]
        prefix = np.concatenate(([0], np.cumsum(tokens)[:-1]))

        def scale_s(model, k: int) -> float:
            return float(step_cost(model, s.gpu, steps.prefill(s.batch, tokens[k], int(prefix[k])), s.precision, s.tp).time_s)

        base = [scale_s(s.llm, k) for k in range(len(sides))]
        d = self.draft_steps
        drafted = sum(tokens[:d])
        handover = (float(step_cost(small, s.gpu, steps.prefill(s.batch, drafted), s.precision, s.tp).time_s)
                    if 0 < d < len(sides) else 0.0)
        refine = [scale_s(small, k) for k in range(d, len(sides))]
        new = sum(base[:d]) + handover + sum(refine)
        return self.prediction("speedup", sum(base) / new, s,
                               {"what": f"{s.llm.name} over all {len(sides)} scales ({sum(tokens)} tokens)", "time_s": sum(base),
                                "per_scale_s": base},
                               {"what": self.summary, "time_s": new, "draft_s": sum(base[:d]), "handover_s": handover,
                                "refine_s": sum(refine)},
                               {"draft_s": sum(base[:d]), "handover_s": handover, "refine_s": sum(refine),
                                "refined_tokens": sum(tokens[d:])},
                               f"{s.llm.name} drafts {d} scales ({drafted} tokens, {sum(base[:d]) * 1e3:.3g} ms), {small.name} "
                               f"refines {len(sides) - d} ({sum(tokens[d:])} tokens, {sum(refine) * 1e3:.3g} ms after "
                               f"{handover * 1e3:.3g} ms encoding the draft) against {sum(base) * 1e3:.3g} ms")


TECHNIQUES = (ChainSpeculation, ParallelDraftVerify, TreeSpeculation, DraftHeads, SelfSpeculation, DraftFree, MultiDraft,
              LongContextSpeculation, BlockDecoding, SuperposedDecoding, CollaborativeDecoding)

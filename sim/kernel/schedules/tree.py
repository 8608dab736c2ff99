"""Tree verification (speculative decoding): ``T`` draft-tree tokens per sequence over a cached prefix.

As SpecInfer (Miao et al., arXiv:2305.09781) and FlashInfer's custom-mask
kernels verify a token tree: the ``T`` tree tokens of a sequence are the query
rows of one attention call over the prefix plus the tree itself, so the prefix
K/V is read once for all ``T`` queries (the queries packed into the tile rows)
and the tree part is attended under the tree's ancestor mask.

Built by construction on the split-KV schedule (:mod:`.split_kv`): with
``context = C`` (the KV length a decode step on the same shapes would have:
the ``C - 1`` cached prefix tokens plus one new token), a tree of ``T``
tokens is the split-KV kernel with ``query_tokens = T`` over ``C - 1 + T``
keys, causal (bottom-right aligned: row ``i`` sees the prefix and tree rows
``0..i``, the chain's mask, the upper bound of any tree's ancestor mask).
``T = 1`` is therefore *exactly* the decode step's program. The mask acts at
tile granularity, as in the kernels: a tree's pairs below the chain's do not
shorten any key block a tile row-block reads, so ``tree_pairs`` (the tree's
``(node, ancestor-or-self)`` pairs; default the chain's ``T (T + 1) / 2``)
changes the *useful* FLOPs reported in ``info``, not the time.
"""

from __future__ import annotations

from dataclasses import replace

from hwmodels.device import Device
from hwmodels.errors import InvalidValueError
from sim.kernel.schedules import split_kv
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.registry import Schedule, register


def tree_problem(problem: AttentionProblem) -> AttentionProblem:
    """The split-KV problem a tree verification is: ``T`` causal queries over ``context - 1 + T`` keys."""
    t = problem.tree_tokens or 1
    if problem.query_tokens != 1 or problem.prefix:
        raise InvalidValueError("tree: give the tree size as tree_tokens (query_tokens 1, prefix 0); "
                                f"got query_tokens={problem.query_tokens}, prefix={problem.prefix}")
    return replace(problem, query_tokens=t, context=problem.context - 1 + t, causal=t > 1, tree_tokens=0)


@register("tree")
def build(problem: AttentionProblem, device: Device, tree_pairs: int | None = None) -> Schedule:
    t = problem.tree_tokens or 1
    chain = t * (t + 1) // 2
    pairs = chain if tree_pairs is None else tree_pairs
    if isinstance(pairs, bool) or not isinstance(pairs, int) or not t <= pairs <= chain:
        raise InvalidValueError(f"tree: tree_pairs must be an integer between {t} (a star) and {chain} (a chain) "
                                f"for {t} tokens, got {tree_pairs!r}")
    sched = split_kv.build(tree_problem(problem), device)
    prefix = problem.context - 1
    useful_pairs = problem.batch * (t * prefix + pairs)
    info = {**sched.info, "tree_tokens": t, "prefix_tokens": prefix, "tree_pairs": pairs,
            "useful_pairs_per_head": float(useful_pairs),
            "useful_flops": 4.0 * problem.head_dim * problem.heads * useful_pairs}
    return Schedule(sched.program, sched.load_bytes_in_flight, info)

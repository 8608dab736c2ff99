"""What one forward step processes: how many sequences, new tokens, and cached tokens.

A step is summarised by the aggregates its cost depends on, each a numpy array
so that a sweep over batch and context is one vectorized evaluation:

- ``seqs``: sequences in the batch;
- ``new_tokens``: tokens run through the layers (the rows of every GEMM);
- ``kv_read_tokens``: KV-cache tokens each attention reads, summed over sequences
  (the prefix plus the new tokens);
- ``attention_pairs``: (query, key) pairs attention computes, summed over
  sequences, with the causal mask where it applies;
- ``logit_rows``: rows sent to the LM head (one per sequence, or one per
  verified token).

Constructors build the four step kinds: a prefill chunk over an existing
prefix, a ragged or uniform decode, a verification of T candidate tokens
(chain or tree), and a mixed batch of prefill chunks and decodes as
Sarathi-Serve builds them (Agrawal et al., arXiv:2403.02310).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.errors import InvalidValueError

STEP_KINDS = ("prefill", "decode", "verify", "mixed")


@dataclass(frozen=True, eq=False)
class Step:
    kind: str
    seqs: np.ndarray
    new_tokens: np.ndarray
    kv_read_tokens: np.ndarray
    attention_pairs: np.ndarray
    logit_rows: np.ndarray
    #: the context (KV length) each decoding sequence attends to; for the
    #: split-KV kernel model, which splits the longest one
    max_kv_tokens: np.ndarray
    description: str = ""
    #: whether each query sees only the keys up to itself (a prefill's mask); False: every key (an encoder)
    causal: bool = True

    @property
    def shape(self) -> tuple[int, ...]:
        return np.broadcast(self.seqs, self.new_tokens, self.kv_read_tokens).shape


def _ints(name: str, value, minimum: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise InvalidValueError(f"{name} must be integers, got {value!r}")
    if np.any(arr != np.round(arr)):
        raise InvalidValueError(f"{name} must be whole numbers, got {value!r}")
    if np.any(arr < minimum):
        raise InvalidValueError(f"{name} must be at least {minimum}, got {value!r}")
    return arr.astype(np.float64)


def _fmt(value) -> str:
    """A scalar as itself, an array as its range (formatting a whole sweep grid costs more than the step)."""
    arr = np.asarray(value)
    return str(value) if arr.ndim == 0 else f"{arr.min():g}..{arr.max():g}"


def _causal_pairs(new, prefix):
    """(query, key) pairs of ``new`` causal queries over ``prefix`` earlier keys: each
    query sees the prefix and the new tokens up to itself, ``new*prefix + new(new+1)/2``."""
    return new * prefix + new * (new + 1) / 2


def prefill(batch=1, tokens=2048, prefix=0) -> Step:
    """``batch`` sequences each adding a chunk of ``tokens`` on top of ``prefix`` cached tokens."""
    b, t, p = _ints("batch", batch, 1), _ints("tokens", tokens, 1), _ints("prefix", prefix, 0)
    return Step(
        kind="prefill",
        seqs=b,
        new_tokens=b * t,
        kv_read_tokens=b * (p + t),
        attention_pairs=b * _causal_pairs(t, p),
        logit_rows=b,  # only the last token's logits are needed to start decoding
        max_kv_tokens=p + t,
        description=f"prefill batch={_fmt(batch)} tokens={_fmt(tokens)} prefix={_fmt(prefix)}",
    )


def decode(batch=1, context=4096) -> Step:
    """``batch`` sequences each decoding one token over ``context`` cached tokens."""
    b, c = _ints("batch", batch, 1), _ints("context", context, 0)
    return Step(
        kind="decode",
        seqs=b,
        new_tokens=b,
        kv_read_tokens=b * (c + 1),
        attention_pairs=b * (c + 1),
        logit_rows=b,
        max_kv_tokens=c + 1,
        description=f"decode batch={_fmt(batch)} context={_fmt(context)}",
    )


def ragged_decode(contexts) -> Step:
    """One decoding token per sequence, each over its own context length."""
    c = _ints("contexts", contexts, 0).ravel()
    if c.size == 0:
        raise InvalidValueError("contexts must name at least one sequence")
    return Step(
        kind="decode",
        seqs=np.float64(c.size),
        new_tokens=np.float64(c.size),
        kv_read_tokens=np.sum(c + 1),
        attention_pairs=np.sum(c + 1),
        logit_rows=np.float64(c.size),
        max_kv_tokens=np.max(c) + 1,
        description=f"ragged decode of {c.size} sequences, contexts {int(c.min())}..{int(c.max())}",
    )


def verify(batch=1, context=4096, tokens=8, tree: bool = False, tree_pairs=None) -> Step:
    """Verification of ``tokens`` draft tokens per sequence over ``context`` cached ones.

    A chain of T tokens is causal among itself (``T(T+1)/2`` pairs). A tree of
    T tokens attends each node to its ancestors only: pass ``tree_pairs`` (the
    number of (node, ancestor-or-self) pairs of the tree) or, with ``tree=True``
    and no count, the chain's count is used as an upper bound. Every verified
    token produces logits (Leviathan et al., arXiv:2211.17192; Miao et al.,
    SpecInfer, arXiv:2305.09781).
    """
    b, c, t = _ints("batch", batch, 1), _ints("context", context, 0), _ints("tokens", tokens, 1)
    if tree_pairs is not None:
        inner = _ints("tree_pairs", tree_pairs, 1)
        if np.any(inner > t * (t + 1) / 2) or np.any(inner < t):
            raise InvalidValueError("tree_pairs must lie between T (a star) and T(T+1)/2 (a chain)")
    else:
        inner = t * (t + 1) / 2
    return Step(
        kind="verify",
        seqs=b,
        new_tokens=b * t,
        kv_read_tokens=b * (c + t),
        attention_pairs=b * (t * c + inner),
        logit_rows=b * t,
        max_kv_tokens=c + t,
        description=f"verify batch={_fmt(batch)} context={_fmt(context)} tokens={_fmt(tokens)}"
        + (" tree" if tree or tree_pairs is not None else " chain"),
    )


def mixed(prefill_chunks=(), decode_contexts=()) -> Step:
    """A Sarathi-Serve batch: prefill chunks ``[(tokens, prefix), ...]`` plus decodes ``[context, ...]``."""
    chunks = [(_ints("chunk tokens", t, 1), _ints("chunk prefix", p, 0)) for t, p in prefill_chunks]
    ctx = _ints("decode_contexts", list(decode_contexts), 0).ravel() if len(decode_contexts) else np.zeros(0)
    if not chunks and ctx.size == 0:
        raise InvalidValueError("a mixed batch needs at least one prefill chunk or decode")
    new = sum(float(t) for t, _ in chunks) + ctx.size
    kv = sum(float(t + p) for t, p in chunks) + float(np.sum(ctx + 1))
    pairs = sum(float(_causal_pairs(t, p)) for t, p in chunks) + float(np.sum(ctx + 1))
    longest = max([float(t + p) for t, p in chunks] + [float(np.max(ctx)) + 1 if ctx.size else 0.0])
    seqs = len(chunks) + ctx.size
    return Step(
        kind="mixed",
        seqs=np.float64(seqs),
        new_tokens=np.float64(new),
        kv_read_tokens=np.float64(kv),
        attention_pairs=np.float64(pairs),
        logit_rows=np.float64(seqs),
        max_kv_tokens=np.float64(longest),
        description=f"mixed: {len(chunks)} prefill chunks ({int(sum(float(t) for t, _ in chunks))} tokens) + {ctx.size} decodes",
    )

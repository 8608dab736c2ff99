"""Iteration-level schedulers: what each iteration of a replica runs.

Each policy looks at its replica's queues and returns a :class:`Batch` (prefill
chunks plus decodes), or ``None`` when there is nothing to run. Memory comes
from the replica's paged allocator, which preempts the most recently admitted
request when a decode cannot grow (vLLM's policy).

- ``static``: a batch is formed only when the replica is empty, its prompts are
  padded to the longest and it decodes until its longest output is done; its
  requests return together (request-level batching, as in FasterTransformer and
  Hugging Face ``generate``; Yu et al., Orca, OSDI 2022, sec. 2.2).
- ``vllm``: iteration-level (continuous) batching with prefills first: when
  requests wait and fit, an iteration runs only their whole prompts, stalling the
  decodes; otherwise it decodes every running request (Kwon et al., vLLM,
  arXiv:2309.06180; vLLM v0's default scheduler).
- ``sarathi``: stall-free batching with chunked prefills: every iteration carries
  all ongoing decodes, then fills a token budget with prefill chunks, ongoing
  prefills first, then new requests in arrival order (Agrawal et al.,
  Sarathi-Serve, arXiv:2403.02310, sec. 4).
- ``batchllm``: for large batches sharing prefixes: requests are grouped by
  prefix, groups with the larger ratio of decode to prefill tokens go first, a
  group's members wait for its prefix to be computed once and then share its
  blocks, batches are limited by KV memory rather than a sequence count, and
  decode attention reads each shared prefix once per group (Zheng et al.,
  BatchLLM, arXiv:2412.03594, abstract; its output lengths are
  taken as known, as BatchLLM estimates them for offline batches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCHEDULERS = ("static", "vllm", "sarathi", "batchllm")


@dataclass
class Batch:
    chunks: list[tuple[int, int]] = field(default_factory=list)  # (request, prompt tokens this iteration)
    decodes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: static batching: (sequences, padded length) of the whole batch, which runs padded
    padded: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.chunks) or self.decodes.size > 0


def schedule_static(rep) -> Batch | None:
    if rep.static_batch is not None:
        return rep.static_decode()
    if not rep.waiting:
        return None
    return rep.static_form()


def schedule_vllm(rep) -> Batch | None:
    rep.swap_in()
    if not rep.swapped:
        budget = rep.token_budget
        chunks: list[tuple[int, int]] = []
        while rep.waiting and len(rep.running) < rep.config.max_num_seqs:
            r = rep.waiting[0]
            if chunks and rep.state.target[r] > budget:  # whole prompts only: the next one waits for the next prefill
                break
            if not rep.admit(r):
                break
            rep.waiting.popleft()
            tokens = rep.prompt_left(r)
            chunks.append((r, tokens))
            budget -= tokens
        if chunks:
            return Batch(chunks=chunks)
    decodes = rep.grow_decodes()
    return Batch(decodes=decodes) if decodes.size else None


def schedule_chunked(rep) -> Batch | None:
    """Sarathi-Serve's stall-free schedule (BatchLLM uses it with its own admission order and limits)."""
    rep.swap_in()
    decodes = rep.grow_decodes()
    budget = rep.token_budget - decodes.size
    chunks: list[tuple[int, int]] = []
    for r in rep.prefilling():
        if budget <= 0:
            break
        t = min(rep.prompt_left(r), budget)
        chunks.append((r, t))
        budget -= t
    while budget > 0 and rep.waiting and not rep.swapped and len(rep.running) < rep.config.max_num_seqs:
        r = rep.waiting[0]
        if not rep.admit(r):
            break
        rep.waiting.popleft()
        t = min(rep.prompt_left(r), budget)
        chunks.append((r, t))
        budget -= t
    batch = Batch(chunks=chunks, decodes=decodes)
    return batch if batch else None


def batchllm_rank(w) -> np.ndarray:
    """Each request's place in BatchLLM's order: groups sharing a prefix kept together, groups (and
    requests without a prefix, each its own group) by their mean ratio of output to prompt tokens,
    largest first, so decode-heavy requests run beside the later prefill chunks; then by arrival."""
    ratio = w.output_tokens / w.prompt_tokens
    group_ratio = ratio.copy()
    shared = w.prefix_id >= 0
    if shared.any():
        _, inv = np.unique(w.prefix_id[shared], return_inverse=True)
        group_ratio[shared] = (np.bincount(inv, weights=ratio[shared]) / np.bincount(inv))[inv]
    group = np.where(shared, w.prefix_id, -1 - np.arange(len(w)))
    order = np.lexsort((w.arrival_s, group, -group_ratio))
    rank = np.empty(len(w), dtype=np.int64)
    rank[order] = np.arange(len(w))
    return rank


POLICIES = {"static": schedule_static, "vllm": schedule_vllm, "sarathi": schedule_chunked, "batchllm": schedule_chunked}

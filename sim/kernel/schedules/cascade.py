"""Shared-prefix cascade attention, as Hydragen (Juravsky et al., arXiv:2402.05099) computes it.

``batch`` sequences share a ``prefix`` of ``P`` tokens and each has its own
suffix of ``S = context - P`` tokens; one decode query per sequence.

1. **Prefix kernel** (Hydragen sec. 3, "inter-sequence batching"): one
   attention over the shared prefix with the ``batch`` queries of each head
   stacked as the rows of one matrix (a split-KV call on a problem of batch 1,
   ``query_tokens = batch``, over ``P`` keys): the prefix K/V is read once for
   all sequences and the matmuls have ``batch`` rows instead of 1.
2. **Suffix kernel**: a plain split-KV decode over each sequence's ``S``
   suffix keys (batch ``batch``).
3. **Merge** (Hydragen sec. 3, "attention decomposition"): the two partial
   results are combined by their log-sum-exps (:func:`.ring.build_merge`).

Each split-KV call may bring its own combine kernel; kernels run in stream
order with a launch gap each (``launch=``). The LSE of the prefix and suffix
outputs (``4`` bytes per row and head) is left out of the split-KV kernels'
stores. :func:`concat_programs` joins the programs.

Compare with ``split-kv`` on the same problem (every sequence reads the
whole prefix + suffix).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hwmodels.device import Device
from hwmodels.errors import InvalidValueError
from sim.kernel.program import Program, ProgramBuilder
from sim.kernel.schedules import split_kv
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.registry import Schedule, register
from sim.kernel.schedules.ring import build_merge


def concat_programs(programs) -> Program:
    """One stream of the kernels of ``programs``, in order (flag ids kept apart)."""
    kernels, kptr, cptr, kinds, amounts, flags, hits, dtypes = [], [0], [0], [], [], [], [], []
    n_ctas = n_phases = n_flags = 0
    for p in programs:
        kernels.extend(p.kernels)
        kptr.extend((p.kernel_ptr[1:] + n_ctas).tolist())
        cptr.extend((p.cta_ptr[1:] + n_phases).tolist())
        kinds.append(p.kind)
        amounts.append(p.amount)
        flags.append(np.where(p.flag >= 0, p.flag + n_flags, -1))
        hits.append(p.l2_hit)
        dtypes.append(p.dtype)
        n_ctas += p.n_ctas
        n_phases += p.n_phases
        n_flags += p.n_flags
    cat = np.concatenate
    return Program(tuple(kernels), np.array(kptr, np.int64), np.array(cptr, np.int64), cat(kinds).astype(np.int8),
                   cat(amounts).astype(np.float64), cat(flags).astype(np.int64), cat(hits).astype(np.float64),
                   cat(dtypes).astype(np.int8), n_flags)


@register("cascade")
def build(problem: AttentionProblem, device: Device) -> Schedule:
    p = problem
    if p.query_tokens != 1 or p.tree_tokens:
        raise InvalidValueError("cascade is a decode schedule: query_tokens 1, tree_tokens 0")
    if not 0 < p.prefix < p.context:
        raise InvalidValueError(f"cascade: prefix must lie between 1 and context - 1 ({p.context - 1}), got {p.prefix}")
    prefix_problem = replace(p, batch=1, query_tokens=p.batch, context=p.prefix, prefix=0, causal=False)
    suffix_problem = replace(p, context=p.context - p.prefix, prefix=0, causal=False)
    pre = split_kv.build(prefix_problem, device)
    suf = split_kv.build(suffix_problem, device)
    mb = ProgramBuilder()
    merge = build_merge(replace(p, prefix=0), device, mb, name="cascade_merge")
    program = concat_programs([pre.program, suf.program, mb.build()])
    info = {"prefix": {k: v for k, v in pre.info.items()}, "suffix": {k: v for k, v in suf.info.items()}, **merge,
            "prefix_tokens": p.prefix, "suffix_tokens": p.context - p.prefix}
    return Schedule(program, max(pre.load_bytes_in_flight, suf.load_bytes_in_flight), info)

"""Attention kernel models backed by the cycle-level kernel simulator (:mod:`sim.kernel`).

``engine-split-kv`` (FlashDecoding), ``engine-lean`` (LeanAttention),
``engine-flash`` (FlashAttention-2) and ``engine-tree`` (tree / chain
verification, the prefix read once for all T tokens) plug into the step model like the analytic
models of :mod:`sim.attention`, by name (``step_cost(..., attention="engine-lean")``,
``kernelab predict --attention engine-lean``).

Each element of the step's sweep axes becomes one
:class:`~sim.kernel.schedules.problem.AttentionProblem` -- ``batch`` = the
step's sequences, ``query_tokens`` = new tokens per sequence, ``context`` = the
KV length each attends to, causal unless it is a decode -- and is simulated
once, with no launch gap: the step model charges ``kernels x launch`` itself,
as for every op. Results are cached by (device, calibration, schedule,
problem), so a sweep pays for each distinct shape once and a repeated shape
costs a dictionary lookup.

The engine gives one time ``T`` per call. It is reported on the side the op's
roofline says binds (memory when ``bytes / B >= FLOPs / R``, else compute),
with the other side left at its roofline time, so ``max(compute, memory) = T``
and the breakdown still says which resource the kernel is bound by.

Ragged batches (sequences with different contexts) and mixed steps are refused:
the schedules take one context per call. Use the analytic ``split-kv`` there.
A tree's mask acts at tile granularity in the schedule, so a tree and a chain
of the same size cost the same.
"""

from __future__ import annotations

import numpy as np

from hwmodels.calibration import Calibration
from hwmodels.device import Device
from hwmodels.errors import InvalidValueError
from sim.attention import AttentionTime, _rates

#: step-model name -> kernel-simulator schedule
SCHEDULE_OF = {"engine-flash": "flash", "engine-split-kv": "split-kv", "engine-lean": "lean", "engine-tree": "tree"}
#: the step kinds each schedule covers
KINDS_OF = {"flash": ("decode", "prefill"), "split-kv": ("decode",), "lean": ("decode",), "tree": ("decode", "verify")}

_cache: dict[tuple, tuple[float, int]] = {}


def _problem(name: str, batch: int, heads: int, kv_heads: int, head_dim: int, query_tokens: int, context: int,
             dtype: str, kv_bits: int):
    """The schedule's problem for ``batch`` sequences of ``query_tokens`` new tokens each over ``context`` keys.

    The tree schedule takes a verification as ``tree_tokens = T`` over the
    decode-equivalent context (the ``context - T`` cached tokens plus one)."""
    from sim.kernel.schedules.problem import AttentionProblem

    common = dict(batch=batch, heads=heads, kv_heads=kv_heads, head_dim=head_dim, dtype=dtype, kv_bits=kv_bits)
    if name == "tree":
        return AttentionProblem(context=context - query_tokens + 1, tree_tokens=query_tokens, **common)
    if name != "flash" and query_tokens != 1:
        raise InvalidValueError(f"the {name} schedule is a decode kernel (one query token per sequence), "
                                f"got {query_tokens} per sequence; use engine-flash for prefill")
    return AttentionProblem(context=context, query_tokens=query_tokens, causal=query_tokens > 1, **common)


def simulated_time_s(schedule: str, device: Device, cal: Calibration, problem) -> tuple[float, int]:
    """(seconds, kernels) of one attention call in the engine, cached."""
    key = (repr(device), repr(cal), schedule, problem)
    hit = _cache.get(key)
    if hit is None:
        from sim.kernel.schedules.run import simulate_schedule

        result, program = simulate_schedule(schedule, problem, device, launch=0.0, cal=cal)
        hit = _cache[key] = (float(result.seconds), len(program.kernels))
    return hit


def _model(name: str):
    schedule = SCHEDULE_OF[name]

    def model(op, step, heads: int, kv_heads: int, head_dim: int, device: Device, cal: Calibration) -> AttentionTime:
        shape = step.shape
        seqs = np.broadcast_to(step.seqs, shape)
        new = np.broadcast_to(step.new_tokens, shape)
        context = np.broadcast_to(step.max_kv_tokens, shape)
        read = np.broadcast_to(step.kv_read_tokens, shape)
        if step.kind not in KINDS_OF[schedule]:
            raise InvalidValueError(f"{name} covers {' and '.join(KINDS_OF[schedule])} steps, not {step.kind} "
                                    "(engine-tree verifies, engine-flash prefills, engine-split-kv and engine-lean decode)")
        if np.any(read != seqs * context):
            raise InvalidValueError(f"{name} simulates one context per call; {step.description or step.kind} "
                                    "has sequences of different lengths (use the analytic split-kv model)")
        dtype = "fp8" if op.dtype == "fp8" else "bf16"
        # the graph's attention op reads the cache and writes the new K, V: (read + new) x 2 x kv_heads x d elements
        kv_bits = int(round(8 * float(np.max(op.kv_bytes / ((read + new) * 2 * kv_heads * head_dim)))))
        time_s = np.empty(shape)
        kernels = np.empty(shape)
        for idx in np.ndindex(shape):
            b, q = int(seqs[idx]), int(round(new[idx] / seqs[idx]))
            problem = _problem(schedule, b, heads, kv_heads, head_dim, q, int(context[idx]), dtype, kv_bits)
            time_s[idx], kernels[idx] = simulated_time_s(schedule, device, cal, problem)
        flops_per_s, bytes_per_s = _rates(op.dtype, device, cal)
        roof_compute = np.broadcast_to(op.flops / flops_per_s, shape)
        roof_memory = np.broadcast_to(op.bytes / bytes_per_s, shape)
        memory_bound = roof_memory >= roof_compute
        return AttentionTime(
            compute_s=np.where(memory_bound, roof_compute, time_s),
            memory_s=np.where(memory_bound, time_s, roof_memory),
            kernels=kernels,
            sm_fraction=np.ones(shape),
            extra_bytes=np.zeros(shape),
            note=f"cycle-level kernel simulator, schedule {schedule!r} (sim.kernel), cached per shape",
        )

    model.__name__ = name.replace("-", "_")
    model.__doc__ = f"The kernel simulator's {schedule!r} schedule as the step model's attention cost."
    return model


ENGINE_KERNELS = {name: _model(name) for name in SCHEDULE_OF}

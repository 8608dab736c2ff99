"""A step's main operations as roofline points: the GEMMs and attention of one layer, and the LM head.

These are the cost records of :func:`sim.graph.step_graph` (one instance each,
on one GPU), turned into :class:`hwmodels.Operation` so that the roofline plot
and the step model can never disagree. Norms, RoPE, activations and sampling
move few bytes and are left off the plot.
"""

from __future__ import annotations

from hwmodels.errors import InvalidValueError
from hwmodels.roofline import Operation
from sim import step as steps
from sim.graph import step_graph
from sim.model import ModelConfig
from sim.precision import Precision

STEP_KINDS = ("prefill", "decode")
_PRECISIONS = {"bf16": Precision(), "fp16": Precision(), "fp8": Precision(8, 8, 8)}


def step_operations(
    model: ModelConfig, kind: str, batch: int, context: int, tokens: int | None = None, dtype: str = "bf16"
) -> list[Operation]:
    """GEMM and attention operations of ``batch`` sequences in one step.

    ``context`` is the number of tokens already in the KV cache; a prefill step
    adds ``tokens`` new tokens per sequence (default: ``context`` tokens on an
    empty cache), a decode step adds one.
    """
    if kind not in STEP_KINDS:
        raise InvalidValueError(f"unknown step kind {kind!r}; known: {', '.join(STEP_KINDS)}")
    if dtype not in _PRECISIONS:
        raise InvalidValueError(f"roofline operations are drawn for {', '.join(_PRECISIONS)}; got {dtype!r}")
    if kind == "prefill":
        step = steps.prefill(batch, tokens, context) if tokens is not None else steps.prefill(batch, context, 0)
        tag = f"prefill B={batch} L={context} T={tokens if tokens is not None else context}"
    else:
        step = steps.decode(batch, context)
        tag = f"decode B={batch} L={context}"
    return [
        Operation(f"{op.name} [{tag}]", float(op.flops), {"hbm": float(op.bytes)}, dtype)
        for op in step_graph(model, step, _PRECISIONS[dtype])
        if op.kind in ("gemm", "attention")
    ]

"""Pipeline parallelism: stages of layers, micro-batches, and the bubble.

With ``pp`` stages of ``ceil(L/pp)`` layers (the first also embeds, the last
also runs the head) and the batch cut into ``m`` equal micro-batches, a
GPipe-style schedule (Huang et al., arXiv:1811.06965) takes

    time_s = (m + pp - 1) * (stage_s + p2p_s)

where ``stage_s`` is the slowest stage's time for one micro-batch and
``p2p_s`` the send of its activations to the next stage; the bubble fraction
is ``(pp - 1) / (m + pp - 1)``. Each stage runs the step's tensor-parallel
layers as :func:`sim.cost.step_cost` computes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

import hwmodels as hw
from hwmodels.errors import InvalidValueError
from sim.cost import CommTime, StepCost, step_cost
from sim.model import ModelConfig
from sim.parallel import pipeline_p2p
from sim.precision import Precision
from sim.step import Step


@dataclass(frozen=True, eq=False)
class PipelineCost:
    micro: StepCost  # one micro-batch through all layers on one GPU column
    pp: int
    microbatches: int
    layers_per_stage: int
    stage_s: np.ndarray
    p2p: CommTime

    @property
    def time_s(self) -> np.ndarray:
        return (self.microbatches + self.pp - 1) * (self.stage_s + self.p2p.time_s)

    @property
    def bubble_fraction(self) -> float:
        return (self.pp - 1) / (self.microbatches + self.pp - 1)

    @property
    def tokens_per_s(self) -> np.ndarray:
        return self.micro.step.new_tokens * self.microbatches / self.time_s


def _micro_step(step: Step, m: int) -> Step:
    scale = 1.0 / m
    return replace(
        step,
        seqs=step.seqs * scale,
        new_tokens=step.new_tokens * scale,
        kv_read_tokens=step.kv_read_tokens * scale,
        attention_pairs=step.attention_pairs * scale,
        logit_rows=step.logit_rows * scale,
        description=f"{step.description}, micro-batch 1/{m}",
    )


def pipeline_cost(
    model: ModelConfig, device: hw.Device, step: Step, precision: Precision = Precision(), tp: int = 1, pp: int = 2,
    microbatches: int | None = None, **kwargs,
) -> PipelineCost:
    """Cost of ``step`` over ``pp`` pipeline stages (each ``tp`` GPUs) with ``microbatches`` (default ``pp``)."""
    if isinstance(pp, bool) or not isinstance(pp, int) or pp < 1:
        raise InvalidValueError(f"pp must be a positive integer, got {pp!r}")
    if pp > model.num_layers:
        raise InvalidValueError(f"{model.name} has {model.num_layers} layers: it cannot be cut into {pp} pipeline stages")
    m = microbatches or pp
    if np.any(step.seqs % m):
        raise InvalidValueError(f"the batch of {step.seqs} sequences cannot be cut into {m} equal micro-batches")
    micro = step_cost(model, device, _micro_step(step, m), precision, tp=tp, **kwargs)
    per_stage = math.ceil(model.num_layers / pp)
    layer_s, once_s = micro.layer_and_once_s()
    stage_s = per_stage * layer_s + once_s  # the last stage: its layers plus the head (an upper bound)
    return PipelineCost(micro, pp, m, per_stage, stage_s, pipeline_p2p(model, device, micro.step, precision))

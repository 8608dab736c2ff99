"""What a deployment holds in each GPU's memory, and the largest batch that fits.

Per GPU of a ``tp x pp`` layout (with ``ep``-way expert and ``cp``-way context parallelism):

    weights     = (dense params / (tp x pp) + expert params / (tp x pp x ep)) x weight bytes
    kv_cache    = sequences x context x kv_bytes_per_token / (pp x kv_shards x cp)
                  (kv_shards = min(tp, kv_heads): KV heads are replicated beyond that)
    activations = the largest live set of one layer during the step (its widest
                  op's inputs and outputs plus the residual stream), from the
                  step graph, plus the fp32 logits of the sampled rows
    usable      = capacity x (1 - reserved_fraction)

``reserved_fraction`` defaults to 0.10, the share vLLM leaves for the CUDA
context, the allocator and library workspaces with its default
``gpu_memory_utilization=0.9`` (https://docs.vllm.ai/en/stable/configuration/engine_args.html).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import hwmodels as hw
from hwmodels.errors import KernelabError
from hwmodels.units import format_si
from sim import step as steps
from sim.graph import Sharding, step_graph
from sim.model import ModelConfig
from sim.precision import Precision

RESERVED_FRACTION = 0.10


class DoesNotFitError(KernelabError, ValueError):
    """The deployment needs more memory per GPU than the device has."""


@dataclass(frozen=True, eq=False)
class MemoryFootprint:
    """Bytes per GPU, arrays over the sweep axes."""

    weights_bytes: np.ndarray
    kv_cache_bytes: np.ndarray
    activation_bytes: np.ndarray
    usable_bytes: float
    capacity_bytes: float

    @property
    def total_bytes(self) -> np.ndarray:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes

    @property
    def fits(self) -> np.ndarray:
        return self.total_bytes <= self.usable_bytes

    @property
    def shortfall_bytes(self) -> np.ndarray:
        return np.maximum(self.total_bytes - self.usable_bytes, 0.0)

    def as_dict(self) -> dict:
        return {
            "weights_bytes": float(np.max(self.weights_bytes)),
            "kv_cache_bytes": float(np.max(self.kv_cache_bytes)),
            "activation_bytes": float(np.max(self.activation_bytes)),
            "total_bytes": float(np.max(self.total_bytes)),
            "usable_bytes": self.usable_bytes,
            "capacity_bytes": self.capacity_bytes,
            "fits": bool(np.all(self.fits)),
        }


def _kv_shards(model: ModelConfig, tp: int) -> int:
    return min(tp, model.num_kv_heads)


def weights_per_gpu(model: ModelConfig, precision: Precision, tp: int = 1, pp: int = 1, ep: int = 1) -> float:
    experts = model.num_layers * model.num_experts * model.mlp_params_per_expert if model.is_moe else 0
    dense = model.params_total - experts
    return (dense / (tp * pp) + experts / (tp * pp * ep)) * precision.weight_bytes


def kv_bytes_per_sequence_token(model: ModelConfig, precision: Precision, tp: int = 1, pp: int = 1, cp: int = 1) -> float:
    return model.kv_bytes_per_token(precision.kv_bits) / (pp * _kv_shards(model, tp) * cp)


def activation_bytes(model: ModelConfig, step: steps.Step, precision: Precision, tp: int = 1) -> np.ndarray:
    ops = step_graph(model, step, precision, Sharding(tp=tp))
    widest = np.max(np.broadcast_arrays(*[np.asarray(op.activation_bytes, dtype=float) for op in ops]), axis=0)
    residual = step.new_tokens * model.hidden_size * precision.activation_bytes
    logits = step.logit_rows * model.vocab_size / tp * 4.0
    return widest + residual + logits


def footprint(
    model: ModelConfig, device: hw.Device, step: steps.Step, precision: Precision = Precision(), tp: int = 1, pp: int = 1,
    reserved_fraction: float = RESERVED_FRACTION, ep: int = 1, cp: int = 1,
) -> MemoryFootprint:
    """Memory per GPU while running ``step`` (its sequences' whole KV cache resident)."""
    if not 0 <= reserved_fraction < 1:
        raise hw.InvalidValueError(f"reserved_fraction must be in [0, 1), got {reserved_fraction!r}")
    kv = step.kv_read_tokens * kv_bytes_per_sequence_token(model, precision, tp, pp, cp)
    return MemoryFootprint(
        weights_bytes=np.asarray(weights_per_gpu(model, precision, tp, pp, ep)),
        kv_cache_bytes=np.asarray(kv, dtype=float),
        activation_bytes=activation_bytes(model, step, precision, tp) / cp,
        usable_bytes=device.memory_bytes * (1 - reserved_fraction),
        capacity_bytes=device.memory_bytes,
    )


def check_fits(model: ModelConfig, device: hw.Device, step: steps.Step, precision: Precision = Precision(),
               tp: int = 1, pp: int = 1, reserved_fraction: float = RESERVED_FRACTION, ep: int = 1,
               cp: int = 1) -> MemoryFootprint:
    """The footprint, or :class:`DoesNotFitError` saying by how much it misses and what would help."""
    fp = footprint(model, device, step, precision, tp, pp, reserved_fraction, ep, cp)
    if not np.all(fp.fits):
        worst = int(np.argmax(fp.shortfall_bytes))
        pick = lambda a: float(np.ravel(np.broadcast_to(a, np.shape(fp.total_bytes)))[worst])  # noqa: E731
        hints = []
        if pick(fp.weights_bytes) > fp.usable_bytes:
            need = math.ceil(model.params_total * precision.weight_bytes / fp.usable_bytes)
            hints.append(f"the weights alone need at least {need} GPUs (tp x pp) at {precision.weight_bits}-bit, or fewer weight bits")
        else:
            hints.append("a smaller batch or context, a lower-bit KV cache, or more GPUs would fit")
        raise DoesNotFitError(
            f"{model.name} does not fit on {tp * pp * ep * cp}x {device.name} (tp={tp}, pp={pp}, ep={ep}, cp={cp}) for {step.description}: "
            f"weights {format_si(pick(fp.weights_bytes), 'B')} + KV cache {format_si(pick(fp.kv_cache_bytes), 'B')} "
            f"+ activations {format_si(pick(fp.activation_bytes), 'B')} = {format_si(pick(fp.total_bytes), 'B')} per GPU "
            f"> {format_si(fp.usable_bytes, 'B')} usable ({format_si(fp.capacity_bytes, 'B')} x {1 - reserved_fraction:.2f}); "
            f"short by {format_si(pick(fp.shortfall_bytes), 'B')}: " + "; ".join(hints)
        )
    return fp


def max_batch(model: ModelConfig, device: hw.Device, context, precision: Precision = Precision(), tp: int = 1,
              pp: int = 1, reserved_fraction: float = RESERVED_FRACTION, kv_bytes_scale: float = 1.0) -> np.ndarray:
    """The largest number of sequences of ``context`` tokens whose decode fits, per context (0 if none).

    Both the KV cache and a decode step's activations grow linearly in the
    batch, so the largest batch is ``floor((usable - weights) / per-sequence bytes)``.
    ``kv_bytes_scale`` scales the KV bytes per token of ``precision.kv_bits`` (a
    compressed cache with its scales and outliers, e.g. 4.25 / 16).
    """
    context = np.asarray(context, dtype=float)
    usable = device.memory_bytes * (1 - reserved_fraction)
    free = usable - weights_per_gpu(model, precision, tp, pp)
    per_seq = (context + 1) * kv_bytes_per_sequence_token(model, precision, tp, pp) * kv_bytes_scale
    per_seq = per_seq + activation_bytes(model, steps.decode(1, 0), precision, tp)
    return np.maximum(np.floor(free / per_seq), 0).astype(int)

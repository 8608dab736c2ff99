"""What a step costs on a device: each op's time, why, and the totals.

Per op (one kernel, on one GPU):

    compute_s  = FLOPs / (peak[dtype] * gemm_fraction[dtype])   (tile- and wave-quantized for GEMMs)
    memory_s   = bytes / (hbm_bytes_per_s * hbm_fraction)       (GEMMs: gemv_fraction, grouped ones grouped_gemm_fraction: measured weight-streaming rates)
    overhead_s = kernels * launch_s + fixed latencies         (CUDA-graph launch by default; e.g. a combine kernel's chain of loads)
    dequant_s  = a weight-only GEMM's dequantization issue time (sim.dequant; 0 otherwise)
    time_s     = max(compute_s, memory_s + dequant_s) + overhead_s

with the achievable fractions and launch costs from :mod:`hwmodels.calibration`
(device-global, measured, each with its source). GEMMs are quantized to
``tile_m x 128`` output tiles (``tile_m`` from 16 to 128 rows, see
:func:`tile_rows`, as tensor-core kernels pad rows to the MMA shape) and, when
there are at least as many tiles as SMs, to whole waves of tiles; with fewer
tiles than SMs the library is assumed to split K to fill the GPU, as cuBLAS
does for skinny GEMMs. Attention is timed by a pluggable kernel model
(:mod:`sim.attention`). Communication (tensor-parallel all-reduces) comes from
:mod:`sim.parallel` and lies on the critical path: each all-reduce waits for
the projection before it and the next layer waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

import hwmodels as hw
from hwmodels.calibration import Calibration
from sim.attention import default_kernel, get_attention_kernel
from sim.dequant import dequant_kernel, dequant_s
from sim.graph import Op, Routing, Sharding, step_graph
from sim.model import ModelConfig
from sim.precision import Precision
from sim.step import Step

TILE_N = 128
TILE_M_CHOICES = (16, 32, 64, 128)


@dataclass(frozen=True, eq=False)
class OpTime:
    """One op's time per instance (arrays over the sweep axes) and its cost record."""

    op: Op
    compute_s: np.ndarray
    memory_s: np.ndarray
    overhead_s: np.ndarray
    note: str = ""
    #: CUDA-core dequantization of a weight-only GEMM, issued after its loads, not beside them (sim.dequant)
    dequant_s: np.ndarray | float = 0.0

    @property
    def time_s(self) -> np.ndarray:
        return np.maximum(self.compute_s, self.memory_s + self.dequant_s) + self.overhead_s

    @property
    def total_s(self) -> np.ndarray:
        return self.time_s * self.op.repeat

    @property
    def bound(self) -> np.ndarray:
        """``compute``, ``memory`` or ``overhead`` (launch cost above both)."""
        busy = np.maximum(self.compute_s, self.memory_s + self.dequant_s)
        issue = np.maximum(self.compute_s, self.dequant_s)  # tensor-core work, or the dequantization's issue slots
        return np.where(self.overhead_s > busy, "overhead", np.where(issue >= self.memory_s, "compute", "memory"))


@dataclass(frozen=True, eq=False)
class CommTime:
    """A collective on the critical path, per instance."""

    name: str
    repeat: int
    message_bytes: np.ndarray
    time_s: np.ndarray
    explain: str

    @property
    def total_s(self) -> np.ndarray:
        return self.time_s * self.repeat


def tile_rows(rows) -> np.ndarray:
    """Rows of the output tile a GEMM of ``rows`` rows is padded to.

    Up to 128 rows: the smallest of 16, 32, 64, 128 that holds them (the MMA
    shape pads rows to 16). Beyond: 64 or 128, whichever pads less, 128 on a
    tie, as a library's tile search picks between its wide tiles.
    """
    rows = np.asarray(rows, dtype=float)
    small = np.full(rows.shape, 128.0)
    for t in (64.0, 32.0, 16.0):
        small = np.where(rows <= t, t, small)
    pad64, pad128 = np.ceil(rows / 64) * 64, np.ceil(rows / 128) * 128
    return np.where(rows <= 128, small, np.where(pad64 < pad128, 64.0, 128.0))


def _normal_sf(z: np.ndarray) -> np.ndarray:
    """P(Z > z) for a standard normal Z: erfc by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7)."""
    x = np.abs(z) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    upper = 0.5 * poly * np.exp(-x * x)  # P(Z > |z|)
    return np.where(z >= 0, upper, 1.0 - upper)


def expected_group_tiles(routing: Routing, tile: np.ndarray) -> np.ndarray:
    """Expected row tiles of all groups, ``experts x E[ceil(n / tile)]`` for ``n ~ Binomial(T, p)``.

    ``E[ceil(n/t)] = sum over j >= 0 of P(n > j t)``: the j = 0 term exactly,
    ``1 - (1 - p)^T`` (the chance the group has any row); the others by the
    normal approximation with continuity correction, ``P(n > x) ~ Q((x + 1/2 -
    Tp) / sqrt(T p (1 - p)))``, zero once ``x >= T``. Terms far below the mean
    are 1 and are counted, not summed.
    """
    tokens, p = np.asarray(routing.tokens, dtype=float), routing.share
    mean, sd = tokens * p, np.sqrt(np.maximum(tokens * p * (1.0 - p), 1e-12))
    tile = np.broadcast_to(np.asarray(tile, dtype=float), mean.shape)
    first_uncertain = np.maximum(np.floor((mean - 7.0 * sd) / tile), 1.0)  # j from here on is summed
    width = int(np.max(np.ceil(14.0 * sd / tile))) + 2 if mean.size else 2
    j = first_uncertain[..., None] + np.arange(width)
    x = j * tile[..., None]
    tail = np.where(x < tokens[..., None], _normal_sf((x + 0.5 - mean[..., None]) / sd[..., None]), 0.0)
    per_group = (1.0 - (1.0 - p) ** tokens) + (first_uncertain - 1.0) + tail.sum(axis=-1)
    return routing.experts * per_group


def gemm_compute_s(op: Op, device: hw.Device, flops_per_s: float) -> np.ndarray:
    """Tile- and wave-quantized GEMM compute time (see the module docstring); a routed grouped GEMM pads each
    uneven group to whole tiles (:func:`expected_group_tiles`)."""
    m, n, k = op.gemm_mnk
    tm = tile_rows(m)
    if op.routing is not None:
        tiles_m = expected_group_tiles(op.routing, tm)
    else:
        tiles_m = np.ceil(np.maximum(m, 1e-9) / tm) * op.gemm_groups
    tiles = tiles_m * np.ceil(n / TILE_N)
    padded_flops = 2.0 * tiles * tm * TILE_N * k
    sms = device.sm_count
    waves = np.ceil(tiles / sms)
    wave_factor = np.where(tiles >= sms, waves * sms / tiles, 1.0)
    return padded_flops * wave_factor / flops_per_s


def time_op(op: Op, step: Step, model: ModelConfig, sharding: Sharding, device: hw.Device, cal: Calibration,
            launch_s: float, attention: str) -> OpTime:
    bytes_per_s = device.hbm_bytes_per_s * cal.hbm_fraction
    if op.kind == "attention":
        kernel = get_attention_kernel(attention)
        heads = model.num_heads // sharding.tp
        kv_heads = max(model.num_kv_heads // sharding.tp, 1)
        at = kernel(op, step, heads, kv_heads, model.head_dim, device, cal)
        return OpTime(op, at.compute_s, at.memory_s, at.kernels * launch_s + at.latency_s, at.note)
    flops_per_s = device.peak(op.dtype) * cal.gemm_fraction[op.dtype]
    compute = gemm_compute_s(op, device, flops_per_s) if op.kind == "gemm" else op.flops / flops_per_s
    if op.kind == "gemm":  # a memory-bound GEMM streams its weights at the measured GEMV (or grouped-GEMM) rate
        bytes_per_s = cal.achievable_grouped_gemm_bytes_per_s(device) if op.grouped else cal.achievable_gemv_bytes_per_s(device)
    memory = op.bytes / bytes_per_s
    dequant, note = np.float64(0.0), ""
    if op.weight_only_bits is not None:
        kernel = dequant_kernel(op.weight_only_bits)
        if kernel is None:
            note = f"{op.weight_only_bits}-bit weight-only: dequantization not modelled (no measured kernel)"
        else:
            # its loads run as plain read streams, then it issues the dequantization (Nsight Compute, sim.dequant)
            weights = op.weight_bytes * 8.0 / op.weight_only_bits
            memory = (op.bytes + weights * kernel.scale_bytes_per_weight) / cal.achievable_hbm_read_bytes_per_s(device)
            dequant = dequant_s(weights, op.gemm_mnk[0], kernel, device)
            note = f"{kernel.kernel}: dequantization issued after the loads (sim.dequant)"
    return OpTime(op, np.asarray(compute, dtype=float), np.asarray(memory, dtype=float),
                  np.float64(op.kernels * launch_s), note, np.asarray(dequant, dtype=float))


def split_by_bound(op_times) -> dict[str, np.ndarray]:
    """Sum ``(OpTime, times)`` pairs into compute-bound, memory-bound and launch-overhead seconds."""
    out = {k: np.float64(0.0) for k in ("compute", "memory", "overhead")}
    for o, times in op_times:
        busy = np.maximum(o.compute_s, o.memory_s + o.dequant_s) * times
        is_compute = np.maximum(o.compute_s, o.dequant_s) >= o.memory_s
        out["compute"] = out["compute"] + np.where(is_compute, busy, 0.0)
        out["memory"] = out["memory"] + np.where(is_compute, 0.0, busy)
        out["overhead"] = out["overhead"] + o.overhead_s * times
    return out


@dataclass(frozen=True, eq=False)
class StepCost:
    """The time of one step on one GPU of the layout, with its breakdown."""

    model: ModelConfig
    device: hw.Device
    step: Step
    precision: Precision
    sharding: Sharding
    ops: list[OpTime]
    comms: list[CommTime] = field(default_factory=list)
    attention_kernel: str = ""

    @cached_property
    def time_s(self) -> np.ndarray:
        """Sum over ops and collectives; computed once, since every rate divides by it."""
        total = sum(o.total_s for o in self.ops)
        return total + sum((c.total_s for c in self.comms), np.float64(0.0))

    def time_by_bound(self) -> dict[str, np.ndarray]:
        """Step time split by what bounds each op: compute, memory, overhead, communication.

        An op's busy time goes to its bound (compute or memory); its launch
        overhead to ``overhead``; collectives to ``communication``. The parts
        add up to ``time_s``.
        """
        out = split_by_bound((o, o.op.repeat) for o in self.ops)
        out["communication"] = sum((c.total_s for c in self.comms), np.zeros(np.shape(self.time_s)))
        return out

    def layer_and_once_s(self) -> tuple[np.ndarray, np.ndarray]:
        """One layer's time (its ops and collectives) and the time of the ops that run once per step
        (embedding, final norm, LM head, sampling): ``time_s = num_layers * layer + once``. What a
        pipeline stage, an early exit or a skipped layer keeps or drops."""
        L = self.model.num_layers
        layer = sum((o.total_s for o in self.ops if o.op.repeat == L), np.float64(0.0))
        layer = (layer + sum((c.total_s for c in self.comms), np.float64(0.0))) / L
        return layer, sum((o.total_s for o in self.ops if o.op.repeat != L), np.float64(0.0))

    @property
    def flops(self) -> np.ndarray:
        return sum(o.op.flops * o.op.repeat for o in self.ops)

    @property
    def bytes(self) -> np.ndarray:
        return sum(o.op.bytes * o.op.repeat for o in self.ops)

    @property
    def tokens_per_s(self) -> np.ndarray:
        """New tokens processed per second by the whole tensor-parallel group."""
        return self.step.new_tokens / self.time_s

    @property
    def mfu(self) -> np.ndarray:
        """Model FLOPs utilization: FLOPs done / (time x dense peak), per GPU."""
        return self.flops / (self.time_s * self.device.peak(self.precision.gemm_dtype))

    @property
    def mbu(self) -> np.ndarray:
        """Model bandwidth utilization: bytes moved / (time x datasheet bandwidth), per GPU."""
        return self.bytes / (self.time_s * self.device.hbm_bytes_per_s)

    def as_dict(self, index: int | tuple = ()) -> dict:
        """A JSON-able summary of one point of the sweep (``index`` into the arrays)."""

        def f(x):
            return float(np.asarray(x)[index]) if np.ndim(x) else float(x)

        def s(x):
            return str(np.asarray(x)[index]) if np.ndim(x) else str(x)

        by_bound = self.time_by_bound()
        rf = hw.roofline(self.device, self.precision.gemm_dtype)
        ridge = rf.ridge_point("hbm")
        return {
            "device": self.device.name,
            "model": self.model.name,
            "step": self.step.kind,
            "description": self.step.description,
            "tp": self.sharding.tp,
            "attention_kernel": self.attention_kernel,
            "time_s": f(self.time_s),
            "tokens_per_s": f(self.tokens_per_s),
            "new_tokens": f(self.step.new_tokens),
            "flops": f(self.flops),
            "bytes": f(self.bytes),
            "mfu": f(self.mfu),
            "mbu": f(self.mbu),
            "breakdown": {k + "_s": f(v) for k, v in by_bound.items()},
            "ops": [
                {
                    "name": o.op.name,
                    "kind": o.op.kind,
                    "repeat": o.op.repeat,
                    "time_s": f(o.time_s),
                    "total_s": f(o.total_s),
                    "compute_s": f(o.compute_s),
                    "memory_s": f(o.memory_s),
                    "overhead_s": f(o.overhead_s),
                    "dequant_s": f(o.dequant_s),
                    "flops": f(o.op.flops),
                    "bytes": f(o.op.bytes),
                    "intensity_flops_per_byte": f(o.op.flops / o.op.bytes) if f(o.op.bytes) else None,
                    "bound": s(o.bound),
                    "roofline_level": "hbm",
                    "below_ridge": bool(f(o.op.flops / o.op.bytes) < ridge) if f(o.op.bytes) else False,
                    "note": o.note,
                }
                for o in self.ops
            ],
            "communication": [
                {"name": c.name, "repeat": c.repeat, "time_s": f(c.time_s), "total_s": f(c.total_s),
                 "message_bytes": f(c.message_bytes), "explain": c.explain}
                for c in self.comms
            ],
        }


def step_cost(
    model: ModelConfig,
    device: hw.Device,
    step: Step,
    precision: Precision = Precision(),
    tp: int = 1,
    attention: str | None = None,
    cuda_graphs: bool = True,
    ep: int = 1,
) -> StepCost:
    """Cost of ``step`` of ``model`` on ``device`` with ``tp``-way tensor parallelism.

    ``attention`` names an attention kernel model (default: split-KV for decode,
    FlashAttention for the rest). ``cuda_graphs`` chooses the per-kernel launch
    cost (CUDA-graph replay, as serving engines do for decode, or plain stream launches).
    """
    from sim.parallel import expert_parallel_comms, tensor_parallel_comms

    sharding = Sharding(tp=tp, ep=ep)
    cal = hw.calibration(device)
    launch = cal.graph_launch_s if cuda_graphs else cal.kernel_launch_s
    launch = launch or 0.0
    kernel = attention or default_kernel(step.kind)
    get_attention_kernel(kernel)
    ops = [time_op(op, step, model, sharding, device, cal, launch, kernel) for op in step_graph(model, step, precision, sharding)]
    comms = tensor_parallel_comms(model, device, step, precision, tp)
    comms += expert_parallel_comms(model, device, step, precision, ep)  # ``ep``: experts over ep GPUs (sim.parallel)
    return StepCost(model, device, step, precision, sharding, ops, comms, kernel)

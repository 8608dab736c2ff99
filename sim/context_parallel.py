"""Context (sequence) parallelism for long prefill: ring attention, TokenRing, LASP-2.

A prefill step of ``b`` sequences, each ``T`` new tokens over a cached prefix of
``P`` tokens, is split over ``cp`` GPUs (each itself ``tp`` GPUs of tensor
parallelism). Every GPU holds ``T/cp`` of each sequence's new tokens and
``P/cp`` of its cached KV.

**Non-attention work** (norms, projections, MLP, TP all-reduces) is what
:func:`sim.cost.step_cost` charges for the GPU's local ``b T / cp`` tokens (a
scaled step, as :mod:`sim.pipeline` scales micro-batches). The LM head runs on
the GPU holding each sequence's last token, ``b`` rows.

**Causal load balancing (zig-zag).** The new tokens are cut into ``2 cp``
chunks of ``c = T / (2 cp)`` and GPU ``i`` holds chunks ``i`` and
``2cp-1-i``, as Context Parallelism for Scalable Million-Token Inference
(Yang et al., arXiv:2411.01783) and Megatron-LM's context parallelism do
(Striped Attention, Brandon et al., arXiv:2311.09431, balances by striping
tokens instead). Then every ring round costs the same: the diagonal round
``2c^2 + c`` causal (query, key) pairs, every other round exactly ``2c^2``
(either both local chunks against the remote first chunk, or the local second
chunk against both remote chunks), plus ``(T/cp)(P/cp)`` pairs against the
remote share of the prefix -- summing to the step's ``T(T+1)/2 + TP``
pairs over ``cp`` GPUs. ``T`` must be a multiple of ``2 cp`` (``pad=True``
rounds it up and computes the padding; tokens/s counts only real tokens).
Each round is one attention kernel of :mod:`sim.attention` (FlashAttention-2
by default) on the local ``T/cp`` queries; the grid is taken as those queries
every round.

**Methods** (bytes per GPU per layer, ``h``/``kvh`` the GPU's query/KV heads
after TP, ``d`` head_dim, ``a``/``e_kv`` activation/KV bytes):

- ``pass-kv`` -- ring attention (Liu, Zaharia, Abbeel, arXiv:2310.01889) as
  pass-KV in arXiv:2411.01783: queries stay, KV blocks go round the ring,
  ``cp-1`` sends of ``2 b (T+P)/cp kvh d e_kv`` bytes; each received block's
  partial output is kept with its log-sum-exp and all are merged at the end.
- ``pass-q`` -- pass-Q of arXiv:2411.01783: KV stays, query blocks go round,
  ``cp-1`` sends of ``b T/cp h d a`` bytes; the partial outputs and their
  LSEs (``b T/cp h (d a + 4)`` bytes per block, the LSE in fp32) return to
  their owners in one all-to-all after the last round (buffer ``S = cp`` blocks),
  then merged.
- ``tokenring`` -- TokenRing (Wang et al., arXiv:2412.20501): queries go
  forward round the ring while, concurrently, each round's partial output and
  LSE go straight back to the query's owner, so the return traffic overlaps
  compute instead of following it; only the last output is exposed. The two
  flows use both link directions: costed with ``sendrecv_bidirectional``
  semantics (full-duplex links: what a GPU receives does not slow what it
  sends). Where the two outgoing flows share a GPU's egress (an NVSwitch or
  PCIe switch, or the NICs across nodes) one exchange moves their sum; on a
  full mesh they use different peers' links and take the longer of the two; on a
  physical ring the return flow of round ``s`` crosses ``min(s, cp-s)`` hops
  and loads each backward link that many times. The second-to-last output is
  sent during the last round or with the last output, whichever is faster.
- ``lasp2`` -- LASP-2 (Sun et al., arXiv:2502.07563), for *linear* attention
  only: contiguous chunks of ``T/cp`` (a linear attention's cost per token does
  not depend on its position, so no zig-zag), each GPU computes its chunk's
  memory state ``M = K^T V`` (``d x d`` per KV head, fp32), one all-gather of
  ``S = cp b kvh d^2 4`` bytes, overlapped with the intra-chunk attention;
  then ``O_inter = Q (sum of earlier states)``. The local kernel is chunkwise
  with tiles of ``B = 64`` (Lightning Attention-2 / GLA style): ``4 B d + 2
  d^2`` FLOPs per token and query head plus ``2 d^2`` per token and KV head.
  A softmax model is refused unless ``linear_attention=True`` (a what-if: the
  same shapes with linear attention in place of softmax). A cached prefix of a
  linear-attention model is a state, not KV: it adds no cost here.
- ``auto`` -- the choice rule of arXiv:2411.01783 between pass-KV and pass-Q:
  pass-KV when its per-round message is no larger than pass-Q's (equal
  precisions: ``T/(T+P) >= 2 kvh/h``, the new tokens dominate the cached ones)
  or when its KV exchange hides entirely under a round's attention; pass-Q
  otherwise. Both are evaluated with this model's own per-round times, and the
  choice (per sweep point) is reported with both candidates' times.

**Overlap is computed, not assumed**: each layer is a :class:`sim.timeline.Timeline`
of the compute stream (pre-attention ops, the ``cp`` attention rounds, the
final merge, post-attention ops) and the communication stream (the ring exchanges,
the all-to-all or all-gather, the TP all-reduces). Round ``r+1``'s send is
issued when round ``r``'s attention starts (double buffering, as
ring-flash-attention does) and round ``r+1``'s attention waits for its data.
With rounds of attention ``c`` (``c0`` the diagonal one), exchanges ``m`` and
a final merge ``g``, pass-KV's attention takes
``max(c0, m) + (cp-2) max(c, m) + c + g`` and pass-Q's the same plus its
all-to-all before the merge. Layers follow one another (layer ``l+1``'s KV
needs layer ``l``'s output), so

    time_s = once_s + L x layer makespan,
    exposed_communication_s = L x (layer makespan - layer compute-only path).

The final log-sum-exp merge (as xFormers' ``merge_attentions``, which
arXiv:2411.01783 uses, and TransformerEngine's output correction do) is one
elementwise kernel over the ``cp`` partial outputs of the local queries: it
reads ``cp x rows h (d a + 4)`` bytes (each partial output and its fp32 LSE),
writes ``rows h d a``, and does ``cp x rows h (2d + 4)`` FLOPs; cheap next to
the rounds, but on the compute stream after the last partial is in.

Communication is costed by :func:`hwmodels.collective_time` on
``hwmodels.device_node(device, cp)`` (or ``topology=``, e.g. a multi-node
:func:`hwmodels.topology.cluster`); with ``tp > 1`` each TP rank talks to its
peers in the other CP groups, which on a switch has the same per-GPU bandwidth.

**Limits.** ``auto`` is the paper's heuristic, not an oracle: it does not
weigh pass-Q's exposed all-to-all, so near its threshold it can pick the slower
method (both times are reported). TokenRing is never slower than pass-Q on a
switched node for long prefill, but the model shows two exceptions: on a full
mesh with communication-bound rounds (MI300X), pass-Q's final all-to-all uses
every link at once while TokenRing's per-round output sends use one peer's
link, and an output block (with its LSE) is a little larger than a query block;
and with sub-megabyte blocks NCCL's LL protocol makes many small sends dearer
than one all-to-all. Rounds in which the zig-zag kernel reads only half of the
remote block are charged the whole block's reads. Context-parallel *decode*
(pass-Q over a sharded KV cache, also in arXiv:2411.01783) is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

import hwmodels as hw
from hwmodels.errors import InvalidValueError, UnknownNameError
from hwmodels.topology import Cluster
from sim.attention import default_kernel, get_attention_kernel
from sim.cost import OpTime, StepCost, split_by_bound, step_cost, time_op
from sim.graph import Op, Sharding, step_graph
from sim.model import ModelConfig
from sim.precision import Precision
from sim.step import Step
from sim.timeline import Timeline

METHODS = ("pass-kv", "pass-q", "tokenring", "lasp2", "auto")
_ALIASES = {
    "passkv": "pass-kv",
    "ringattention": "pass-kv",
    "ring": "pass-kv",
    "passq": "pass-q",
    "tokenring": "tokenring",
    "lasp2": "lasp2",
    "auto": "auto",
}
LINEAR_TILE = 64  # chunkwise linear-attention tile (Lightning Attention-2, GLA)
LSE_BYTES = 4.0  # log-sum-exp and accumulators in fp32
STATE_BYTES = 4.0  # LASP-2 memory states in fp32

SOURCES = {
    "pass-kv": "ring attention (arXiv:2310.01889) as pass-KV of arXiv:2411.01783",
    "pass-q": "pass-Q of arXiv:2411.01783 (ring of queries, all-to-all of partial outputs)",
    "tokenring": "TokenRing (arXiv:2412.20501): queries forward, partial outputs back, concurrently",
    "lasp2": "LASP-2 (arXiv:2502.07563): one all-gather of the linear-attention memory states",
}


def normalize_method(method: str) -> str:
    if not isinstance(method, str):
        raise InvalidValueError(f"method must be a string, got {method!r}")
    key = method.strip().lower()
    canon = _ALIASES.get(key.replace("-", "").replace("_", "").replace(" ", ""))
    if canon is None:
        raise UnknownNameError("context-parallel method", method, METHODS)
    return canon


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True, eq=False)
class Exchange:
    """One communication task of a layer: ``round`` is the attention round it overlaps (``cp`` = after the last)."""

    name: str
    round: int
    message_bytes: np.ndarray
    time_s: np.ndarray
    what: str
    explain: str


@dataclass(frozen=True, eq=False)
class _Variant:
    timeline: Timeline
    exchanges: list[Exchange]


@dataclass(frozen=True, eq=False)
class MethodCost:
    """One method's layer schedule(s); with several variants the faster one is taken per sweep point."""

    method: str
    layers: int
    compute: list[tuple[str, OpTime, float]]  # (task, op time, multiplicity) on the compute stream, per layer
    once: list[OpTime]  # embedding, final norm, LM head, sampling: once per step
    variants: list[_Variant]
    round_compute_s: list[np.ndarray]

    def _pick(self, values: list) -> np.ndarray:
        if len(values) == 1:
            return np.asarray(values[0])
        return np.choose(self.variant, np.broadcast_arrays(*values))

    @property
    def variant(self) -> np.ndarray:
        spans = np.broadcast_arrays(*[v.timeline.makespan for v in self.variants])
        return np.argmin(np.stack(spans), axis=0)

    @property
    def layer_time_s(self) -> np.ndarray:
        return self._pick([v.timeline.makespan for v in self.variants])

    @property
    def layer_compute_s(self) -> np.ndarray:
        return self.variants[0].timeline.critical_path("compute")

    @property
    def layer_comm_busy_s(self) -> np.ndarray:
        return self._pick([v.timeline.busy("comm") for v in self.variants])

    @property
    def once_s(self) -> np.ndarray:
        return sum((o.total_s for o in self.once), np.float64(0.0))

    @property
    def time_s(self) -> np.ndarray:
        return self.once_s + self.layers * self.layer_time_s

    @property
    def exposed_communication_s(self) -> np.ndarray:
        return self.layers * (self.layer_time_s - self.layer_compute_s)

    @property
    def communication_busy_s(self) -> np.ndarray:
        return self.layers * self.layer_comm_busy_s

    def round_comm_s(self, cp: int) -> list[np.ndarray]:
        """The communication issued with each round (index ``cp``: after the last round)."""
        out = []
        for r in range(cp + 1):
            per = [sum((x.time_s for x in v.exchanges if x.round == r), np.float64(0.0)) for v in self.variants]
            out.append(self._pick(per))
        return out

    def time_by_bound(self) -> dict[str, np.ndarray]:
        out = split_by_bound([(o, mult * self.layers) for _, o, mult in self.compute] + [(o, o.op.repeat) for o in self.once])
        out["communication"] = self.exposed_communication_s
        return out


@dataclass(frozen=True, eq=False)
class ContextParallelCost:
    """A prefill step over ``cp`` GPUs (each ``tp`` GPUs): time, rounds, overlap, and the method used."""

    model: ModelConfig
    device: hw.Device
    step: Step  # the step as asked (tokens/s counts these tokens)
    computed_step: Step  # padded where ``pad=True`` rounded T up
    precision: Precision
    cp: int
    tp: int
    requested_method: str
    parts: dict[str, MethodCost]
    choice: np.ndarray  # the method used at each sweep point
    local: StepCost  # the non-attention work of one GPU's local tokens
    topology: str
    attention_kernel: str
    messages: dict[str, np.ndarray]  # per-GPU bytes of one block of each kind
    rule: dict[str, np.ndarray]  # auto's inputs

    # -- selection over the chosen method -----------------------------------
    def _full(self, x) -> np.ndarray:
        """``x`` broadcast to the sweep's shape (a float for a single point)."""
        shape = self.computed_step.shape
        return np.broadcast_to(np.asarray(x, dtype=float), shape).copy() if shape else np.float64(x)

    def _sel(self, fn) -> np.ndarray:
        names = list(self.parts)
        if len(names) == 1:
            return self._full(fn(self.parts[names[0]]))
        values = [self._full(fn(self.parts[m])) for m in names]
        return self._full(np.select([self.choice == m for m in names], values))

    @property
    def method(self) -> str | np.ndarray:
        """The method used: a string, or an array of them where ``auto`` chose differently across the sweep."""
        flat = np.unique(self.choice)
        return str(flat[0]) if flat.size == 1 else self.choice

    @property
    def time_s(self) -> np.ndarray:
        return self._sel(lambda p: p.time_s)

    @property
    def compute_only_s(self) -> np.ndarray:
        """The compute-only critical path: the step with every transfer taking no time."""
        return self._sel(lambda p: p.once_s + p.layers * p.layer_compute_s)

    @property
    def exposed_communication_s(self) -> np.ndarray:
        return self._sel(lambda p: p.exposed_communication_s)

    @property
    def communication_s(self) -> np.ndarray:
        """All communication time (busy time of the comm stream), hidden or not."""
        return self._sel(lambda p: p.communication_busy_s)

    @property
    def overlapped_communication_s(self) -> np.ndarray:
        return self.communication_s - self.exposed_communication_s

    @property
    def layer_time_s(self) -> np.ndarray:
        return self._sel(lambda p: p.layer_time_s)

    @property
    def round_compute_s(self) -> list[np.ndarray]:
        """Attention compute of each round of one layer (the final merge is not in any round)."""
        n = len(next(iter(self.parts.values())).round_compute_s)
        return [self._sel(lambda p, r=r: p.round_compute_s[r] if r < len(p.round_compute_s) else 0.0) for r in range(n)]

    @property
    def round_comm_s(self) -> list[np.ndarray]:
        """Communication issued with each round of one layer; the last entry is what follows the last round."""
        return [self._sel(lambda p, r=r: p.round_comm_s(self.cp)[r]) for r in range(self.cp + 1)]

    @property
    def round_s(self) -> list[np.ndarray]:
        """Each round's step in one layer, ``max(attention, exchange issued with it)``: what follows a round
        waits for both. What a per-round trace (as TokenRing's nsight timelines) shows."""
        return [np.maximum(c, m) for c, m in zip(self.round_compute_s, self.round_comm_s)]

    @property
    def tokens_per_s(self) -> np.ndarray:
        """New tokens (as asked, without padding) per second for the whole ``cp x tp`` group."""
        return self.step.new_tokens / self.time_s

    @property
    def alternatives(self) -> dict[str, np.ndarray]:
        return {m: p.time_s for m, p in self.parts.items()}

    def time_by_bound(self) -> dict[str, np.ndarray]:
        """compute, memory, overhead (launches) and the *exposed* communication; they add up to ``time_s``."""
        keys = ("compute", "memory", "overhead", "communication")
        return {k: self._sel(lambda p, k=k: p.time_by_bound()[k]) for k in keys}

    def reason(self, index: int | tuple = ()) -> str:
        """Why this method: the requested one, or auto's rule at sweep point ``index``."""

        def f(x):
            x = self._full(x)
            return float(x[index]) if np.ndim(x) else float(x)

        chosen = str(np.asarray(self.choice)[index]) if np.ndim(self.choice) else str(self.choice)
        if self.requested_method != "auto":
            return f"requested: {SOURCES[chosen]}"
        if self.cp == 1:
            return "cp=1: nothing to exchange, pass-KV and pass-Q coincide"
        r = self.rule
        size = (f"pass-KV's per-round KV message {f(r['kv_bytes']):.4g} B vs pass-Q's Q message {f(r['q_bytes']):.4g} B "
                f"(T/(T+P) = {f(r['new_fraction']):.4g}, 2 kvh/h = {f(r['threshold']):.4g})")
        hide = f"KV exchange {f(r['kv_send_s']) * 1e6:.4g} us vs a round's attention {f(r['round_s']) * 1e6:.4g} us"
        if chosen == "pass-kv":
            why = "its message is no larger" if f(r["kv_bytes"]) <= f(r["q_bytes"]) else "its exchange hides under the round"
            return f"auto (arXiv:2411.01783 rule) chose pass-KV: {why}; {size}; {hide}"
        return f"auto (arXiv:2411.01783 rule) chose pass-Q: pass-KV's message is larger and its exchange is not hidden; {size}; {hide}"

    def as_dict(self, index: int | tuple = ()) -> dict:
        """A JSON-able summary of one sweep point, with a ``breakdown`` like :meth:`sim.cost.StepCost.as_dict`'s."""

        def f(x):
            x = self._full(x)
            return float(x[index]) if np.ndim(x) else float(x)

        chosen = str(np.asarray(self.choice)[index]) if np.ndim(self.choice) else str(self.choice)
        part = self.parts[chosen]
        variant = np.broadcast_to(part.variant, self.computed_step.shape)
        v = int(variant[index]) if variant.ndim else int(variant)
        by = self.time_by_bound()
        breakdown = {k + "_s": f(x) for k, x in by.items()}
        breakdown["overlapped_communication_s"] = f(self.overlapped_communication_s)
        rc, rm = self.round_compute_s, self.round_comm_s
        return {
            "device": self.device.name,
            "model": self.model.name,
            "step": self.step.kind,
            "description": self.step.description,
            "cp": self.cp,
            "tp": self.tp,
            "gpus": self.cp * self.tp,
            "method_requested": self.requested_method,
            "method": chosen,
            "method_source": SOURCES[chosen],
            "choice_reason": self.reason(index),
            "topology": self.topology,
            "attention_kernel": self.attention_kernel if chosen != "lasp2" else "linear (chunkwise, LASP-2)",
            "load_balancing": ("contiguous chunks of T/cp (linear attention)" if chosen == "lasp2"
                               else "zig-zag: 2cp chunks, GPU i holds chunks i and 2cp-1-i (arXiv:2411.01783)"),
            "new_tokens": f(self.step.new_tokens),
            "computed_tokens": f(self.computed_step.new_tokens),
            "time_s": f(self.time_s),
            "tokens_per_s": f(self.tokens_per_s),
            "compute_only_s": f(self.compute_only_s),
            "exposed_communication_s": f(self.exposed_communication_s),
            "overlapped_communication_s": f(self.overlapped_communication_s),
            "layer_time_s": f(self.layer_time_s),
            "layers": self.model.num_layers,
            "breakdown": breakdown,
            "alternatives_time_s": {m: f(t) for m, t in self.alternatives.items()},
            "rounds": [
                {"round": r, "compute_s": f(rc[r]) if r < len(rc) else 0.0, "communication_s": f(rm[r])}
                for r in range(self.cp + 1)
                if r < len(rc) or f(rm[r])
            ],
            "communication": [
                {"name": x.name, "round": x.round, "what": x.what, "message_bytes": f(x.message_bytes),
                 "time_s": f(x.time_s), "explain": x.explain}
                for x in part.variants[v].exchanges
            ],
        }


# ---------------------------------------------------------------------------- helpers
def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _is_linear(model: ModelConfig) -> bool:
    return bool(getattr(model, "linear_attention", False)) or str(getattr(model, "attention_type", "")).lower() == "linear"


def _collective(op: str, message, topology) -> tuple[np.ndarray, str]:
    message = np.asarray(message, dtype=float)
    cost = hw.collective_time(op, message.ravel(), topology)
    return np.asarray(cost.time_s).reshape(message.shape), cost.explain(0)


def _flows_time(flows: list[tuple[np.ndarray, int]], topology, cp: int) -> tuple[np.ndarray, str]:
    """Concurrent sends of one GPU to different peers, ``(bytes, ring hops)`` each (see the module docstring)."""
    flows = [(np.asarray(b, dtype=float), h) for b, h in flows]
    topo = topology.node if isinstance(topology, Cluster) and topology.n_nodes == 1 else topology
    if len(flows) == 1 and flows[0][1] == 1:
        return _collective("sendrecv", flows[0][0], topology)
    if isinstance(topo, Cluster) or topo.kind == "switch":
        total = sum(b for b, _ in flows)
        t, why = _collective("sendrecv_bidirectional", total, topology)
        return t, why + f"; {len(flows)} flows share the GPU's egress"
    times, whys = [], []
    for b, h in flows:
        load = min(h, cp - h) if topo.kind == "ring" else 1
        t, why = _collective("sendrecv_bidirectional", b * load, topology)
        times.append(t)
        whys.append(why)
    idx = int(np.argmax([float(np.max(t)) for t in times]))
    return np.maximum.reduce(np.broadcast_arrays(*times)), whys[idx] + f"; {len(flows)} flows on separate links, the slowest shown"


def _merge_op(rows, heads: int, d: int, precision: Precision, parts: int, repeat: int) -> Op:
    """The final log-sum-exp merge of ``parts`` partial outputs of the local queries (one elementwise kernel)."""
    rows = np.asarray(rows, dtype=float)
    partial = rows * heads * (d * precision.activation_bytes + LSE_BYTES)
    return Op(
        name="lse_merge",
        kind="memory",
        repeat=repeat,
        flops=parts * rows * heads * (2.0 * d + 4.0),
        weight_bytes=np.float64(0.0),
        activation_bytes=parts * partial + rows * heads * d * precision.activation_bytes,
        dtype=precision.attention_dtype,
    )


def _linear_ops(rows, seqs, heads: int, kvh: int, d: int, cp: int, precision: Precision, repeat: int) -> dict[str, Op]:
    """LASP-2's three kernels per layer (FLOPs and bytes in the module docstring)."""
    a = precision.activation_bytes
    rows = np.asarray(rows, dtype=float)
    states = np.asarray(seqs, dtype=float) * kvh * d * d

    def op(name, flops, nbytes):
        return Op(name=name, kind="memory", repeat=repeat, flops=np.asarray(flops, dtype=float), weight_bytes=np.float64(0.0),
                  activation_bytes=np.asarray(nbytes, dtype=float), dtype=precision.attention_dtype)

    return {
        "state": op("lasp_state", 2.0 * d * d * kvh * rows, rows * 2 * kvh * d * a + states * STATE_BYTES),
        "intra": op("lasp_intra", rows * (heads * (4.0 * LINEAR_TILE * d + 2.0 * d * d) + kvh * 2.0 * d * d),
                    rows * (2 * heads + 2 * kvh) * d * a),
        "inter": op("lasp_inter", rows * heads * 2.0 * d * d + cp * states,
                    cp * states * STATE_BYTES + 3.0 * rows * heads * d * a),
    }


# ---------------------------------------------------------------------------- the model
def context_parallel_cost(
    model: ModelConfig,
    device: hw.Device,
    step: Step,
    cp: int,
    method: str = "pass-kv",
    precision: Precision = Precision(),
    tp: int = 1,
    *,
    topology=None,
    linear_attention: bool = False,
    pad: bool = False,
    attention: str | None = None,
    cuda_graphs: bool = True,
    **kwargs,
) -> ContextParallelCost:
    """Cost of a prefill ``step`` split over ``cp`` GPUs by ``method`` (see the module docstring).

    ``method``: ``pass-kv``, ``pass-q``, ``tokenring``, ``lasp2`` or ``auto``.
    ``topology`` overrides the CP group's ``hwmodels.device_node(device, cp)``:
    it describes the ``cp`` GPUs of one CP group, e.g. CP across nodes with TP
    inside them is ``hw.cluster(hw.hgx_node("nvlink4", 18, n_gpus=1), cp,
    "ib-ndr", 1)`` (one GPU per node, with its own NIC);
    ``linear_attention=True`` allows ``lasp2`` on a softmax model as a what-if;
    ``pad=True`` rounds ``T`` up to a multiple of ``2 cp`` (``cp`` for LASP-2)
    instead of refusing it. ``attention``, ``cuda_graphs`` and further keywords
    go to :func:`sim.cost.step_cost`.
    """
    cp = _positive_int("cp", cp)
    tp = _positive_int("tp", tp)
    requested = normalize_method(method)
    if step.kind != "prefill":
        raise InvalidValueError(f"context parallelism splits a prefill step; got a {step.kind} step (build one with sim.step.prefill)")
    if requested == "lasp2":
        if not (_is_linear(model) or linear_attention):
            raise InvalidValueError(
                f"LASP-2 parallelizes linear attention; {model.name} uses softmax attention. Use pass-kv, pass-q or "
                "tokenring, or pass linear_attention=True to cost it as if its attention were linear (a what-if)"
            )
    elif linear_attention:
        raise InvalidValueError("linear_attention=True is a what-if for method='lasp2' only")

    b = np.asarray(step.seqs, dtype=float)
    T = np.asarray(step.new_tokens, dtype=float) / b
    P = np.asarray(step.kv_read_tokens, dtype=float) / b - T
    granule = cp if requested == "lasp2" else 2 * cp
    if np.any(T % granule):
        if not pad:
            bad = np.unique(T[T % granule != 0] if np.ndim(T) else T)
            raise InvalidValueError(
                f"{int(bad[0])} tokens per sequence cannot be split into {granule} equal chunks "
                + ("(contiguous chunks, one per GPU)" if requested == "lasp2" else f"(zig-zag load balancing: 2 x cp = {granule})")
                + f"; use a multiple of {granule} (e.g. {int(math.ceil(bad[0] / granule) * granule)}) or pad=True"
            )
        T = np.ceil(T / granule) * granule
    computed = replace(
        step,
        new_tokens=b * T,
        kv_read_tokens=b * (T + P),
        attention_pairs=b * (T * P + T * (T + 1) / 2),
        max_kv_tokens=P + T,
        description=step.description + (" (padded)" if np.any(b * T != step.new_tokens) else ""),
    )

    m, p = model, precision
    L, d = m.num_layers, m.head_dim
    heads = m.num_heads // tp
    kvh = max(m.num_kv_heads // tp, 1)
    rows = b * T / cp  # local new tokens (all sequences)
    kernel = attention or default_kernel("prefill")
    get_attention_kernel(kernel)

    # Non-attention work of one GPU: step_cost on the local tokens (the head on b rows).
    local_step = replace(
        computed,
        new_tokens=rows,
        kv_read_tokens=b * (T + P) / cp,
        attention_pairs=computed.attention_pairs / cp,
        max_kv_tokens=(T + P) / cp,
        description=f"{step.description}: 1/{cp} of the tokens on one GPU",
    )
    local = step_cost(m, device, local_step, p, tp=tp, attention=kernel, cuda_graphs=cuda_graphs, **kwargs)
    names = [o.op.name for o in local.ops]
    att_i = names.index("attention")
    per_layer = [i for i, o in enumerate(local.ops) if o.op.repeat == L and o.op.kind != "attention"]
    pre = [local.ops[i] for i in per_layer if i < att_i]
    post = [local.ops[i] for i in per_layer if i > att_i]
    once = [o for i, o in enumerate(local.ops) if o.op.repeat != L]

    cal = hw.calibration(device)
    launch = (cal.graph_launch_s if cuda_graphs else cal.kernel_launch_s) or 0.0
    sharding = Sharding(tp=tp)
    topo = topology if topology is not None else hw.device_node(device, cp)
    topo_name = topo.name

    def timed(op: Op, st: Step) -> OpTime:
        return time_op(op, st, m, sharding, device, cal, launch, kernel)

    # One softmax attention round on the local T/cp queries against one block of (T+P)/cp keys.
    c = T / (2 * cp)
    block_pairs = (T / cp) * (P / cp)

    def round_op(r: int) -> OpTime:
        pairs = (2 * c * c + (c if r == 0 else 0.0) + block_pairs) * b
        # the local round is causal within its zig-zag chunks; the others are dense blocks (half a block's pairs)
        st = replace(computed, new_tokens=rows, kv_read_tokens=b * (T + P) / cp, attention_pairs=pairs,
                     max_kv_tokens=(T + P) / cp, causal=r == 0)
        op = next(o for o in step_graph(m, st, p, sharding) if o.kind == "attention")
        if r > 0:  # the new tokens' K and V are written once, in the local round
            op = replace(op, kv_bytes=op.kv_bytes * st.kv_read_tokens / (st.kv_read_tokens + rows))
        return timed(op, st)

    merge = timed(_merge_op(rows, heads, d, p, cp, L), local_step)

    # Per-GPU bytes of one block of each kind.
    kv_bytes = 2.0 * b * (T + P) / cp * kvh * d * p.kv_bytes
    q_bytes = rows * heads * d * p.activation_bytes
    o_bytes = rows * heads * (d * p.activation_bytes + LSE_BYTES)
    state_bytes = b * kvh * d * d * STATE_BYTES
    messages = {"kv_block": kv_bytes, "q_block": q_bytes, "out_block": o_bytes, "state": state_bytes}

    def layer_frame(tl: Timeline, items: list, attention_body) -> None:
        """pre ops -> attention body -> post ops with the layer's other collectives (TP all-reduces) in place."""
        last = None
        for o in pre:
            last = tl.add(f"pre:{o.op.name}", "compute", o.time_s, after=[last] if last else ())
            items.append((f"pre:{o.op.name}", o, 1.0))
        deps = attention_body(tl, [last] if last else [])
        tp_ar = [c for c in local.comms if c.name == "tp_all_reduce"]
        others = [c for c in local.comms if c.name != "tp_all_reduce"]
        first = True
        for o in post:
            t = tl.add(f"post:{o.op.name}", "compute", o.time_s, after=deps)
            items.append((f"post:{o.op.name}", o, 1.0))
            deps = [t]
            if first and tp_ar and o.op.name == "o_proj":
                deps = [tl.add("tp_all_reduce_attn", "comm", tp_ar[0].time_s, after=deps)]
                first = False
        for ar in tp_ar:
            extra = ar.repeat / L - (0 if first else 1)
            if extra > 0:
                deps = [tl.add("tp_all_reduce_mlp", "comm", ar.time_s * extra, after=deps)]
        for cm in others:
            deps = [tl.add(cm.name, "comm", cm.total_s / L, after=deps)]

    def build(name: str, body_factory, n_variants: int = 1) -> MethodCost:
        variants, items = [], []
        round_compute: list[np.ndarray] = []
        for v in range(n_variants):
            tl, its, exch, rc = Timeline(), [], [], []
            layer_frame(tl, its, body_factory(v, its, exch, rc))
            variants.append(_Variant(tl, exch))
            if v == 0:
                items, round_compute = its, rc
        return MethodCost(name, L, items, once, variants, round_compute)

    rounds = [round_op(0)] + ([round_op(1)] * (cp - 1) if cp > 1 else [])
    t_kv, why_kv = _collective("sendrecv", kv_bytes, topo)
    t_q, why_q = _collective("sendrecv", q_bytes, topo)

    def ring_body(kind: str):
        def factory(v, items, exch, rc):
            def body(tl: Timeline, deps: list) -> list:
                for r in range(cp):
                    send = None
                    if r + 1 < cp:
                        t, why, nbytes = (t_kv, why_kv, kv_bytes) if kind == "kv" else (t_q, why_q, q_bytes)
                        send = tl.add(f"{kind}_send_{r + 1}", "comm", t, after=deps)
                        exch.append(Exchange(send, r, nbytes, t, f"{'K,V' if kind == 'kv' else 'Q'} block for round {r + 1}", why))
                    a = tl.add(f"attn_round_{r}", "compute", rounds[r].time_s, after=deps)
                    items.append((a, rounds[r], 1.0))
                    rc.append(rounds[r].time_s)
                    deps = [a] + ([send] if send else [])
                if kind == "q" and cp > 1:
                    t, why = _collective("all_to_all", cp * o_bytes, topo)
                    a2a = tl.add("out_all_to_all", "comm", t, after=deps)
                    exch.append(Exchange(a2a, cp, cp * o_bytes, t, "partial outputs + LSE back to their owners (all-to-all)", why))
                    deps = [a2a]
                if cp > 1:
                    deps = [tl.add("lse_merge", "compute", merge.time_s, after=deps)]
                    items.append((deps[0], merge, 1.0))
                return deps
            return body
        return factory

    def tokenring_factory(v, items, exch, rc):
        def body(tl: Timeline, deps: list) -> list:
            for s in range(cp):
                flows, what = [], []
                if s + 1 < cp:
                    flows.append((q_bytes, 1))
                    what.append(f"Q block for round {s + 1} forward")
                if s - 1 >= 1 and not (v == 1 and s == cp - 1):
                    flows.append((o_bytes, s - 1))
                    what.append(f"round {s - 1}'s output + LSE back")
                x = None
                if flows:
                    t, why = _flows_time(flows, topo, cp)
                    nbytes = sum(f for f, _ in flows)
                    x = tl.add(f"exchange_{s}", "comm", t, after=deps)
                    exch.append(Exchange(x, s, nbytes, t, ", ".join(what), why))
                a = tl.add(f"attn_round_{s}", "compute", rounds[s].time_s, after=deps)
                items.append((a, rounds[s], 1.0))
                rc.append(rounds[s].time_s)
                deps = [a] + ([x] if x else [])
            if cp > 1:
                flows = [(o_bytes, cp - 1)]
                what = f"round {cp - 1}'s output + LSE back"
                if v == 1 and cp - 2 >= 1:
                    flows.append((o_bytes, cp - 2))
                    what += f", with round {cp - 2}'s"
                t, why = _flows_time(flows, topo, cp)
                last = tl.add("out_send_last", "comm", t, after=deps)
                exch.append(Exchange(last, cp, sum(f for f, _ in flows), t, what, why))
                g = tl.add("lse_merge", "compute", merge.time_s, after=[last])
                items.append((g, merge, 1.0))
                deps = [g]
            return deps
        return body

    def lasp_factory(v, items, exch, rc):
        lops = {k: timed(o, local_step) for k, o in _linear_ops(rows, b, heads, kvh, d, cp, p, L).items()}

        def body(tl: Timeline, deps: list) -> list:
            ag = None
            spent = np.float64(0.0)
            if cp > 1:
                st = tl.add("lasp_state", "compute", lops["state"].time_s, after=deps)
                items.append((st, lops["state"], 1.0))
                t, why = _collective("all_gather", cp * state_bytes, topo)
                ag = tl.add("state_all_gather", "comm", t, after=[st])
                exch.append(Exchange(ag, 0, cp * state_bytes, t, "memory states d x d per KV head (all-gather)", why))
                spent = spent + lops["state"].time_s
            a = tl.add("lasp_intra", "compute", lops["intra"].time_s, after=deps)
            items.append((a, lops["intra"], 1.0))
            spent = spent + lops["intra"].time_s
            if cp > 1:
                a = tl.add("lasp_inter", "compute", lops["inter"].time_s, after=[a, ag])
                items.append((a, lops["inter"], 1.0))
                spent = spent + lops["inter"].time_s
            rc.append(spent)
            return [a]
        return body

    builders = {
        "pass-kv": lambda: build("pass-kv", ring_body("kv")),
        "pass-q": lambda: build("pass-q", ring_body("q")),
        "tokenring": lambda: build("tokenring", tokenring_factory, n_variants=2 if cp > 2 else 1),
        "lasp2": lambda: build("lasp2", lasp_factory),
    }
    shape = computed.shape
    rule = {
        "kv_bytes": kv_bytes, "q_bytes": q_bytes, "new_fraction": T / (T + P),
        "threshold": np.float64(2.0 * kvh / heads), "kv_send_s": t_kv, "round_s": rounds[-1].time_s,
    }
    if requested == "auto":
        parts = {"pass-kv": builders["pass-kv"](), "pass-q": builders["pass-q"]()}
        use_kv = (kv_bytes <= q_bytes) | (t_kv <= rounds[-1].time_s) | (cp == 1)
        choice = np.where(np.broadcast_to(use_kv, np.broadcast_shapes(shape, np.shape(use_kv))), "pass-kv", "pass-q")
    else:
        parts = {requested: builders[requested]()}
        choice = np.full(shape, requested) if shape else np.str_(requested)
    return ContextParallelCost(
        model=m, device=device, step=step, computed_step=computed, precision=p, cp=cp, tp=tp,
        requested_method=requested, parts=parts, choice=choice, local=local, topology=topo_name,
        attention_kernel=kernel, messages=messages, rule=rule,
    )

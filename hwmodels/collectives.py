"""Collective communication cost: NCCL's alpha-beta tuning model on a described topology.

``collective_time(op, message_bytes, topology)`` returns a :class:`CollectiveCost`
that explains itself: time, its latency and bandwidth parts, the algorithm and
protocol chosen, algorithm and bus bandwidth, and which link bounds it.
``message_bytes`` may be an array; every field then is an array over sizes.

Conventions (nccl-tests ``doc/PERFORMANCE.md`` and ``src/*.cu``):

* ``S`` is the size nccl-tests reports: the buffer for all-reduce, the total
  (gathered) output for all-gather and the total input for reduce-scatter
  (``count * nranks``), a rank's whole send buffer for all-to-all, and the bytes
  one rank sends for send/recv;
* ``algbw = S / t``; ``busbw = algbw * F`` with ``F`` = ``2(n-1)/n`` (all-reduce),
  ``(n-1)/n`` (all-gather, reduce-scatter, all-to-all), ``1`` (send/recv).

The model (``B`` = a GPU's achievable egress bandwidth, links x NCCL per-link rate;
``n`` GPUs, ``g`` per node, ``k`` nodes):

* ring all-reduce ``t = L + 2(n-1)/n * S / B_p``; ring all-gather and
  reduce-scatter ``t = L + (n-1)/n * S / B_p``. Across nodes ``B`` is the smaller
  of the intra-node bandwidth and the node's NICs (each ring crosses every node
  boundary once per direction).
* tree all-reduce ``t = L + 2 S / (0.92 B_p)`` (reduce up and broadcast down,
  NCCL's ``busBw * .92`` and ratio ``.5``).
* NVLS all-reduce (NVLink SHARP, single node): each GPU's links carry
  ``S (n+1)/n`` per direction -- ``multimem.ld_reduce`` sends ``S`` out and
  brings its reduced ``S/n`` shard back, ``multimem.st`` sends ``S/n`` out and the
  switch multicasts ``S`` in (NCCL's NVLS search charges ``n+1`` channel
  bandwidths per GPU link, ``src/graph/search.cc``) -- at NCCL's NVLS efficiency
  (0.85 Hopper, 0.74 Blackwell): ``t = 25 us + (n+1)/n * S / (eff * B)``, i.e.
  ``busbw = 2(n-1)/(n+1) * eff * B`` -- NCCL's tuner formula
  ``nChannels * bw * eff * 2(nChannels-1)/nChannels`` with ``n`` channels of
  ``B/(n+1)``, before NCCL rounds ``bw`` down to its speed array. NVLS
  all-gather / reduce-scatter move ``S`` one way and ``S/n`` the other
  (maintainer, NVIDIA/nccl#1506): ``t = 25 us + S / (eff B)``.
* hierarchical all-reduce (two levels, explicit only): intra-node ring
  reduce-scatter, inter-node ring all-reduce of each GPU's ``S/g`` shard over its
  share of the NICs, intra-node ring all-gather, run one after another (the
  textbook 2D algorithm; an upper bound on time where the phases overlap).
* all-to-all (NCCL runs it as grouped send/recv): each GPU sends ``(n-1)/n S``;
  on a switch or full mesh ``t = (n-1)/n * S / B``; on a physical ring traffic is
  routed both ways around, loading each neighbour link with
  ``S * sum_d min(d, n-d) / (2n)``; across nodes the off-node part
  ``g (n-g)/n * S`` crosses each node's NICs while the on-node part moves
  concurrently.
* send/recv: ``t = L + S / B_pair`` (one peer's links; a GPU's NIC share across
  nodes); links are full duplex, so the bidirectional case takes the same time.

Latency ``L`` and protocol factors are NCCL's (``src/graph/tuning.cc``, read from
``interconnects.toml``): ``L = base[algo][proto] + steps * hw[class][algo][proto]``
with ``2(n-1)`` ring steps for all-reduce and ``n-1`` for all-gather and
reduce-scatter (network steps charged at the network latency), ``2((g-1) hw_intra
+ log2(k) hw_net)`` for the tree, ``25 us`` for NVLS. Protocols: Simple (``B``),
LL128 (``0.92 B``, NVLink only), LL (``min(0.5 B, llMaxBw)``). ``algorithm="auto"``
picks, per size, the fastest (algorithm, protocol) among those NCCL's tuner
considers (ring, tree, NVLS), as ``ncclTopoGetAlgoTime`` does. Not modelled:
NCCL's per-channel caps and size-dependent tree correction table, its
speed-array quantisation of channel bandwidth, CollNet/NVLS-Tree/PAT, and the
host-side limits of PCIe systems.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from hwmodels.errors import InvalidValueError, UnknownNameError
from hwmodels.interconnect import NcclTuning, nccl_tuning
from hwmodels.topology import Cluster, Topology

TopologyLike = Union[Topology, Cluster]

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "sendrecv", "sendrecv_bidirectional")
_OP_ALIASES = {
    "allreduce": "all_reduce",
    "allgather": "all_gather",
    "reducescatter": "reduce_scatter",
    "alltoall": "all_to_all",
    "send_recv": "sendrecv",
    "p2p": "sendrecv",
    "sendrecv_bidir": "sendrecv_bidirectional",
}
#: Algorithms each operation can run; "auto" chooses among ALGORITHMS_AUTO.
ALGORITHMS = {
    "all_reduce": ("ring", "tree", "nvls", "hierarchical"),
    "all_gather": ("ring", "nvls"),
    "reduce_scatter": ("ring", "nvls"),
    "all_to_all": ("direct",),
    "sendrecv": ("direct",),
    "sendrecv_bidirectional": ("direct",),
}
#: NCCL's tuner candidates (hierarchical is a what-if, chosen only when asked for).
ALGORITHMS_AUTO = ("ring", "tree", "nvls", "direct")
PROTOCOLS = ("ll", "ll128", "simple")
_PROTOCOL_NAMES = {"ll": "LL", "ll128": "LL128", "simple": "Simple"}


def normalize_op(op: str) -> str:
    """``"AllReduce"``, ``"all-reduce"`` and ``"all_reduce"`` all name ``all_reduce``."""
    if not isinstance(op, str):
        raise InvalidValueError(f"a collective is named by a string, got {op!r}")
    key = op.strip().lower().replace("-", "_").replace(" ", "_")
    key = _OP_ALIASES.get(key.replace("_", ""), _OP_ALIASES.get(key, key))
    if key not in OPS:
        raise UnknownNameError("collective", op, OPS)
    return key


def bus_bandwidth_factor(op: str, n_gpus: int) -> float:
    """nccl-tests' busbw / algbw: 2(n-1)/n all-reduce; (n-1)/n all-gather, reduce-scatter, all-to-all; 1 send/recv."""
    op = normalize_op(op)
    n = int(n_gpus)
    if n < 1:
        raise InvalidValueError(f"n_gpus must be at least 1, got {n_gpus!r}")
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


@dataclass(frozen=True, eq=False)
class CollectiveCost:
    """The predicted cost of one collective, and why.

    Array-valued when ``message_bytes`` was an array (one entry per size).
    ``time_s = latency_s + bandwidth_time_s``. ``bound_by`` names the links that
    bound the bandwidth term; ``bottleneck_bytes_per_s`` is their achievable rate
    before protocol factors.
    """

    op: str
    n_gpus: int
    topology: str
    message_bytes: float | np.ndarray
    time_s: float | np.ndarray
    latency_s: float | np.ndarray
    bandwidth_time_s: float | np.ndarray
    algorithm: str | np.ndarray
    protocol: str | np.ndarray
    algbw_bytes_per_s: float | np.ndarray
    busbw_bytes_per_s: float | np.ndarray
    bound_by: str | np.ndarray
    bottleneck_bytes_per_s: float | np.ndarray

    def explain(self, index: int = 0) -> str:
        """One line in words, for a scalar result or entry ``index`` of an array result."""

        def pick(value):
            return value if np.ndim(value) == 0 else np.asarray(value)[index]

        size, time, lat, bw = (float(pick(v)) for v in (self.message_bytes, self.time_s, self.latency_s, self.bandwidth_time_s))
        return (
            f"{self.op} of {size:.4g} B on {self.topology} ({self.n_gpus} GPUs): {pick(self.algorithm)}/{pick(self.protocol)}, "
            f"{time * 1e6:.4g} us = {lat * 1e6:.4g} us latency + {bw * 1e6:.4g} us transfer; "
            f"algbw {float(pick(self.algbw_bytes_per_s)) / 1e9:.4g} GB/s, "
            f"busbw {float(pick(self.busbw_bytes_per_s)) / 1e9:.4g} GB/s; "
            f"bound by {pick(self.bound_by)}"
        )


@dataclass(frozen=True)
class _Candidate:
    """One (algorithm, protocol): ``t = latency_s + S * seconds_per_byte``."""

    algorithm: str
    protocol: str
    latency_s: float
    seconds_per_byte: float
    bound_by: str
    bottleneck_bytes_per_s: float


# ---------------------------------------------------------------------------- helpers
def _protocols(topo: TopologyLike, algorithm: str) -> tuple[str, ...]:
    """Protocols NCCL enables: NVLS runs Simple only; LL128 is on only over NVLink-class links; p2p uses LL or Simple."""
    if algorithm == "nvls":
        return ("simple",)
    if algorithm == "direct":
        return ("ll", "simple")
    if topo.node.link.latency_class == "nvlink":
        return PROTOCOLS
    return ("ll", "simple")


def _ll_cap(topo: TopologyLike, tuning: NcclTuning) -> float:
    """NCCL's llMaxBw: per GPU generation on one node, per node count across nodes (Intel hosts)."""
    if topo.n_nodes == 1:
        cap = topo.node.link.ll_max_busbw_bytes_per_s
        return math.inf if cap is None else cap
    return tuning.ll_max_busbw_2_nodes_bytes_per_s if topo.n_nodes == 2 else tuning.ll_max_busbw_3plus_nodes_bytes_per_s


def _ring_rate(bw: float, protocol: str, cap: float, tuning: NcclTuning) -> float:
    """Ring (and p2p) bandwidth under a protocol: Simple B, LL128 0.92 B, LL min(0.5 B, llMaxBw)."""
    if protocol == "simple":
        return bw
    if protocol == "ll128":
        return tuning.factors["ring_ll128"] * bw
    return min(cap, tuning.factors["ring_ll"] * bw)


def _tree_rate(bw: float, protocol: str, cap: float, multi_node: bool, tuning: NcclTuning) -> float:
    """Tree all-reduce bus bandwidth: 0.92 B, then LL /3.8 (capped) or LL128 7/9 (one node) / 120/128."""
    rate = tuning.factors["tree_allreduce"] * bw
    if protocol == "ll":
        return min(cap, tuning.factors["tree_ll"] * rate)
    if protocol == "ll128":
        return rate * tuning.factors["tree_ll128_multi_node" if multi_node else "tree_ll128_single_node"]
    return rate


def _ring_latency(topo: TopologyLike, protocol: str, n_steps: int, n_inter_steps: int, tuning: NcclTuning) -> float:
    """NCCL ring latency: base + intra steps x hw[intra] + network steps x hw[net] (tuning.cc)."""
    intra = tuning.hw(topo.node.link.latency_class, "ring", protocol)
    base = tuning.base("ring", protocol)
    if topo.n_nodes == 1:
        return base + n_steps * intra
    overhead = tuning.net_overhead_s * (tuning.net_overhead_simple_multiplier if protocol == "simple" else 1.0)
    intra = max(intra, overhead)
    # With one GPU per node NCCL charges the tree's network latency ("latencies fully exposed").
    inter = tuning.hw("net", "tree" if topo.gpus_per_node == 1 else "ring", protocol)
    return base + (n_steps - n_inter_steps) * intra + n_inter_steps * inter


def _tree_latency(topo: TopologyLike, protocol: str, tuning: NcclTuning) -> float:
    """NCCL tree all-reduce latency: base + 2 ((g-1) hw[intra] + floor(log2 k) hw[net])."""
    intra = tuning.hw(topo.node.link.latency_class, "tree", protocol)
    inter = tuning.hw("net", "tree", protocol)
    depth = int(math.floor(math.log2(topo.n_nodes)))
    return tuning.base("tree", protocol) + 2 * ((topo.gpus_per_node - 1) * intra + depth * inter)


def _p2p_latency(topo: TopologyLike, protocol: str, tuning: NcclTuning) -> float:
    """One concurrent step of point-to-point sends: ring base + one hop over the slowest class crossed."""
    cls = "net" if topo.n_nodes > 1 else topo.node.link.latency_class
    return tuning.base("ring", protocol) + tuning.hw(cls, "ring", protocol)


def _ring_bound(topo: TopologyLike) -> tuple[float, str]:
    """The bandwidth a ring gets per GPU: intra-node links, or the node's NICs if smaller."""
    intra = topo.node.per_gpu_bytes_per_s
    if isinstance(topo, Cluster) and topo.n_nodes > 1 and topo.node_nic_bytes_per_s < intra:
        return topo.node_nic_bytes_per_s, topo.describe_bound()
    return intra, topo.node.describe_bound()


def _a2a_seconds_per_byte(node: Topology, bw: float) -> float:
    """Seconds per byte of S for an all-to-all inside one level whose GPUs each drive ``bw``."""
    n = node.n_gpus
    if n == 1:
        return 0.0
    if node.kind == "ring" and n > 2:
        hops = sum(min(d, n - d) for d in range(1, n))
        return hops / (n * bw)  # per directed neighbour link: S*hops/(2n) over bw/2
    return (n - 1) / n / bw


# ---------------------------------------------------------------------------- candidates
def _candidates(op: str, topo: TopologyLike, tuning: NcclTuning) -> list[_Candidate]:
    n = topo.n_gpus
    g = topo.gpus_per_node
    k = topo.n_nodes
    multi = k > 1
    cap = _ll_cap(topo, tuning)
    out: list[_Candidate] = []

    if op in ("all_reduce", "all_gather", "reduce_scatter"):
        bw, bound = _ring_bound(topo)
        traffic = 2 * (n - 1) / n if op == "all_reduce" else (n - 1) / n
        steps = 2 * (n - 1) if op == "all_reduce" else n - 1
        inter_steps = (2 * (k - 1) if op == "all_reduce" else k - 1) if multi else 0
        for p in _protocols(topo, "ring"):
            rate = _ring_rate(bw, p, cap, tuning)
            out.append(_Candidate("ring", p, _ring_latency(topo, p, steps, inter_steps, tuning), traffic / rate, bound, bw))

    if op == "all_reduce":
        bw, bound = _ring_bound(topo)
        for p in _protocols(topo, "tree"):
            rate = _tree_rate(bw, p, cap, multi, tuning)
            out.append(_Candidate("tree", p, _tree_latency(topo, p, tuning), 2.0 / rate, bound, bw))

    if op in ("all_reduce", "all_gather", "reduce_scatter") and isinstance(topo, Topology) and topo.nvls:
        bw = topo.per_gpu_bytes_per_s
        rate = topo.link.nvls_efficiency * bw
        traffic = (n + 1) / n if op == "all_reduce" else 1.0
        latency = tuning.base("nvls", "simple") + tuning.hw("nvlink", "nvls", "simple")
        out.append(_Candidate("nvls", "simple", latency, traffic / rate, topo.describe_bound() + " with NVLink SHARP", bw))

    if op == "all_reduce" and isinstance(topo, Cluster) and multi:
        node = topo.node
        nic_per_gpu = topo.node_nic_bytes_per_s / g
        intra_cap = math.inf if node.link.ll_max_busbw_bytes_per_s is None else node.link.ll_max_busbw_bytes_per_s
        inter_view = Cluster(Topology("switch", 1, node.link, 1), k, topo.nic, 1)  # one GPU per node: the inter phase
        for p in _protocols(topo, "ring"):
            intra_rate = _ring_rate(node.per_gpu_bytes_per_s, p, intra_cap, tuning)
            intra_s = 2 * (g - 1) / g / intra_rate  # reduce-scatter + all-gather of S inside the node
            inter_rate = _ring_rate(nic_per_gpu, p, cap, tuning)
            inter_s = 2 * (k - 1) / k / g / inter_rate  # all-reduce of the S/g shard across nodes
            latency = 2 * _ring_latency(node, p, g - 1, 0, tuning) if g > 1 else 0.0
            latency += _ring_latency(inter_view, p, 2 * (k - 1), 2 * (k - 1), tuning)
            if inter_s >= intra_s:
                bound, limit = topo.describe_bound() + f" ({g} GPUs share it)", topo.node_nic_bytes_per_s
            else:
                bound, limit = node.describe_bound(), node.per_gpu_bytes_per_s
            out.append(_Candidate("hierarchical", p, latency, intra_s + inter_s, bound, limit))

    if op == "all_to_all":
        node = topo.node
        for p in _protocols(topo, "direct"):
            intra_s = _a2a_seconds_per_byte(node, _ring_rate(node.per_gpu_bytes_per_s, p, cap, tuning)) * g / n
            bound, limit = node.describe_bound(), node.per_gpu_bytes_per_s
            spb = intra_s
            if multi:
                inter_s = g * (n - g) / n / _ring_rate(topo.node_nic_bytes_per_s, p, math.inf, tuning)
                if inter_s >= intra_s:
                    spb, bound, limit = inter_s, topo.describe_bound(), topo.node_nic_bytes_per_s
            out.append(_Candidate("direct", p, _p2p_latency(topo, p, tuning), spb, bound, limit))

    if op in ("sendrecv", "sendrecv_bidirectional"):
        if multi:
            bw = topo.gpu_nic_bytes_per_s
            bound = f"{topo.nic.name}: {bw / 1e9:.4g} GB/s NIC share of one GPU (inter-node)"
        else:
            bw = topo.pair_bytes_per_s
            bound = (
                f"{topo.link.name}: {topo.links_per_pair:g} x {topo.link.achievable_bytes_per_s_per_direction / 1e9:.4g} GB/s "
                f"between the pair"
            )
        for p in _protocols(topo, "direct"):
            out.append(_Candidate("direct", p, _p2p_latency(topo, p, tuning), 1.0 / _ring_rate(bw, p, cap, tuning), bound, bw))
    return out


# ---------------------------------------------------------------------------- entry point
def _check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise InvalidValueError(f"{kind} must be a string, got {value!r}")
    key = value.strip().lower()
    if key not in allowed:
        raise UnknownNameError(kind, value, allowed)
    return key


def collective_time(
    op: str,
    message_bytes: float | np.ndarray,
    topology: TopologyLike,
    algorithm: str = "auto",
    protocol: str = "auto",
) -> CollectiveCost:
    """Predicted time of one collective of ``message_bytes`` (nccl-tests' S) on ``topology``.

    ``op``: all_reduce, all_gather, reduce_scatter, all_to_all, sendrecv,
    sendrecv_bidirectional. ``algorithm``: "auto" (NCCL's choice among ring, tree,
    NVLS) or one of :data:`ALGORITHMS` for the op. ``protocol``: "auto", "ll",
    "ll128" or "simple". One GPU, or zero bytes, costs nothing.
    """
    op = normalize_op(op)
    if not isinstance(topology, (Topology, Cluster)):
        raise InvalidValueError(f"topology must be a Topology or Cluster (see hwmodels.topology), got {type(topology).__name__}")
    algorithm = _check_choice("algorithm", algorithm, ("auto",) + ALGORITHMS[op])
    protocol = _check_choice("protocol", protocol, ("auto",) + PROTOCOLS)
    sizes = np.asarray(message_bytes, dtype=float)
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise InvalidValueError(f"message_bytes must be finite and non-negative, got {message_bytes!r}")
    scalar = sizes.ndim == 0
    sizes = np.atleast_1d(sizes)

    topo = topology.node if isinstance(topology, Cluster) and topology.n_nodes == 1 else topology
    if algorithm == "nvls" and not (isinstance(topo, Topology) and topo.nvls):
        raise InvalidValueError(
            f"NVLS needs a single NVSwitch domain with NVLink SHARP (NVLink4 or later, nvls=True); {topology.name} has none"
        )
    if algorithm == "hierarchical" and not isinstance(topo, Cluster):
        raise InvalidValueError(
            "the hierarchical all-reduce needs two levels: build the topology with hwmodels.topology.cluster()"
        )

    n = topo.n_gpus
    if n == 1:
        candidates = [_Candidate("none", "none", 0.0, 0.0, "a single GPU: nothing to communicate", math.inf)]
    else:
        candidates = _candidates(op, topo, nccl_tuning())
        if algorithm == "auto":
            candidates = [c for c in candidates if c.algorithm in ALGORITHMS_AUTO]
        else:
            candidates = [c for c in candidates if c.algorithm == algorithm]
        if protocol != "auto":
            usable = sorted({c.protocol for c in candidates})
            candidates = [c for c in candidates if c.protocol == protocol]
            if not candidates:
                raise InvalidValueError(
                    f"protocol {protocol!r} is not used by {algorithm} {op} on {topology.name}; usable: {', '.join(usable)}"
                )

    latency = np.array([c.latency_s for c in candidates])[:, None]
    spb = np.array([c.seconds_per_byte for c in candidates])[:, None]
    times = latency + spb * sizes[None, :]
    best = np.argmin(times, axis=0)
    moving = sizes > 0
    lat = np.where(moving, latency[best, 0], 0.0)
    bw_time = np.where(moving, spb[best, 0] * sizes, 0.0)
    time = lat + bw_time
    algbw = np.divide(sizes, time, out=np.zeros_like(sizes), where=time > 0)
    busbw = algbw * bus_bandwidth_factor(op, n)

    def chosen(values: list, empty: str) -> np.ndarray:
        return np.where(moving, np.array(values)[best], empty)

    algorithms = chosen([c.algorithm for c in candidates], "none")
    protocols = chosen([_PROTOCOL_NAMES.get(c.protocol, c.protocol) for c in candidates], "none")
    bounds = chosen([c.bound_by for c in candidates], "no bytes to move")
    bottleneck = np.array([c.bottleneck_bytes_per_s for c in candidates])[best]

    def out(array):
        return array[0].item() if scalar else array

    return CollectiveCost(
        op=op,
        n_gpus=n,
        topology=topology.name,
        message_bytes=out(sizes),
        time_s=out(time),
        latency_s=out(lat),
        bandwidth_time_s=out(bw_time),
        algorithm=out(algorithms),
        protocol=out(protocols),
        algbw_bytes_per_s=out(algbw),
        busbw_bytes_per_s=out(busbw),
        bound_by=out(bounds),
        bottleneck_bytes_per_s=out(bottleneck),
    )

"""Frozen descriptions of how GPUs are wired: ring, full mesh, switch, and two-level clusters.

A :class:`Topology` is one level: ``n_gpus`` GPUs, each with ``links_per_gpu``
links of one type (:class:`~hwmodels.interconnect.Link`), wired as

* ``"switch"`` -- every link goes to a switch (NVSwitch, a PCIe switch or root
  complex); any pair of GPUs can use all of a GPU's links. ``nvls=True`` when the
  switch reduces in hardware (NVLink SHARP, NVSwitch gen3 and later);
* ``"full_mesh"`` -- links spread evenly over the ``n_gpus - 1`` peers
  (``links_per_gpu / (n_gpus - 1)`` per pair: MI300X xGMI, 4xV100 SXM2);
* ``"ring"`` -- links split between the two neighbours (both go to the single
  peer when ``n_gpus == 2``, e.g. two PCIe cards joined by an NVLink bridge).

A :class:`Cluster` is two levels: ``n_nodes`` identical nodes, each with
``nics_per_node`` NICs on one switched network.

Builders take plain values, as the device catalog gives them
(``device.link_name``, ``device.link_count``, ``device.pcie_gen``)::

    hgx_node("nvlink4", links_per_gpu=18)                 # 8xH100 SXM, NVLS on
    pcie_box(5, n_gpus=8)                                  # 8 PCIe Gen5 cards
    cluster(hgx_node("nvlink3", 12), n_nodes=4, nic="ib-hdr", nics_per_node=8)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.errors import InvalidValueError
from hwmodels.interconnect import Link, get_link, pcie_link

TOPOLOGY_KINDS = ("switch", "full_mesh", "ring")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Topology:
    """One level of GPUs (a node, or one scale-up domain).

    All bandwidths are achievable (NCCL-model) rates per direction; the
    ``datasheet`` variants use the line rate.
    """

    kind: str
    n_gpus: int
    link: Link
    links_per_gpu: int
    nvls: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in TOPOLOGY_KINDS:
            raise InvalidValueError(f"topology kind must be one of {', '.join(TOPOLOGY_KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "n_gpus", _positive_int("n_gpus", self.n_gpus))
        object.__setattr__(self, "links_per_gpu", _positive_int("links_per_gpu", self.links_per_gpu))
        if not isinstance(self.link, Link):
            object.__setattr__(self, "link", get_link(self.link))
        if self.kind == "full_mesh" and self.n_gpus > 1 and self.links_per_gpu < self.n_gpus - 1:
            raise InvalidValueError(
                f"a full mesh of {self.n_gpus} GPUs needs at least {self.n_gpus - 1} links per GPU "
                f"(one per peer), got {self.links_per_gpu}"
            )
        if self.nvls:
            if self.kind != "switch":
                raise InvalidValueError(f"NVLS (NVLink SHARP) reduces inside an NVSwitch; a {self.kind} topology has none")
            if not self.link.supports_nvls:
                raise InvalidValueError(
                    f"NVLS needs an NVSwitch of NVLink4 or later; {self.link.name} switches do not reduce in hardware"
                )
        if not self.name:
            object.__setattr__(self, "name", f"{self.n_gpus}x {self.kind} {self.links_per_gpu}x{self.link.name}")

    # ------------------------------------------------------------------ shape
    @property
    def n_nodes(self) -> int:
        return 1

    @property
    def gpus_per_node(self) -> int:
        return self.n_gpus

    @property
    def node(self) -> Topology:
        return self

    # ------------------------------------------------------------------ bandwidths
    @property
    def per_gpu_bytes_per_s(self) -> float:
        """Achievable egress (= ingress) bandwidth of one GPU over all its links: ``links_per_gpu * achievable``.

        Multi-channel rings and all-to-all reach it on every kind: a switch takes all
        links, a full mesh is covered by n-1 rings, a physical ring by one ring each way.
        """
        return self.links_per_gpu * self.link.achievable_bytes_per_s_per_direction

    @property
    def per_gpu_datasheet_bytes_per_s(self) -> float:
        return self.links_per_gpu * self.link.bytes_per_s_per_direction

    @property
    def links_per_pair(self) -> float:
        """Links one GPU can use towards a single peer."""
        if self.kind == "switch" or self.n_gpus <= 2:
            return float(self.links_per_gpu)
        if self.kind == "full_mesh":
            return self.links_per_gpu / (self.n_gpus - 1)
        return self.links_per_gpu / 2  # ring: the links towards one neighbour

    @property
    def pair_bytes_per_s(self) -> float:
        """Achievable bandwidth from one GPU to one peer (a neighbour, on a ring)."""
        return self.links_per_pair * self.link.achievable_bytes_per_s_per_direction

    def describe_bound(self) -> str:
        """Which links bound intra-node traffic, in words."""
        return (
            f"{self.link.name}: {self.links_per_gpu} x {self.link.achievable_bytes_per_s_per_direction / 1e9:.4g} GB/s "
            f"per GPU (intra-node)"
        )


@dataclass(frozen=True)
class Cluster:
    """Two levels: ``n_nodes`` copies of ``node`` joined by ``nics_per_node`` NICs each.

    The network between nodes is taken as non-blocking (a fat tree), so each
    node can drive all its NICs at once.
    """

    node: Topology
    n_nodes: int
    nic: Link
    nics_per_node: int
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.node, Topology):
            raise InvalidValueError(f"a cluster's node must be a Topology, got {type(self.node).__name__}")
        object.__setattr__(self, "n_nodes", _positive_int("n_nodes", self.n_nodes))
        object.__setattr__(self, "nics_per_node", _positive_int("nics_per_node", self.nics_per_node))
        if not isinstance(self.nic, Link):
            object.__setattr__(self, "nic", get_link(self.nic))
        if not self.name:
            object.__setattr__(
                self, "name", f"{self.n_nodes} nodes x ({self.node.name}), {self.nics_per_node}x{self.nic.name} per node"
            )

    @property
    def n_gpus(self) -> int:
        return self.node.n_gpus * self.n_nodes

    @property
    def gpus_per_node(self) -> int:
        return self.node.n_gpus

    @property
    def node_nic_bytes_per_s(self) -> float:
        """Achievable bandwidth out of (and into) one node: ``nics_per_node * nic.achievable``."""
        return self.nics_per_node * self.nic.achievable_bytes_per_s_per_direction

    @property
    def node_nic_datasheet_bytes_per_s(self) -> float:
        return self.nics_per_node * self.nic.bytes_per_s_per_direction

    @property
    def gpu_nic_bytes_per_s(self) -> float:
        """NIC bandwidth one GPU can use on its own: its share of the node's NICs, at least one NIC."""
        nics = max(1.0, self.nics_per_node / self.gpus_per_node)
        return nics * self.nic.achievable_bytes_per_s_per_direction

    def describe_bound(self) -> str:
        return (
            f"{self.nic.name}: {self.nics_per_node} x {self.nic.achievable_bytes_per_s_per_direction / 1e9:.4g} GB/s "
            f"per node (inter-node)"
        )


# ---------------------------------------------------------------------- builders
def switch(link: Link | str, n_gpus: int, links_per_gpu: int, *, nvls: bool | None = None, name: str = "") -> Topology:
    """GPUs whose links all go to one switch. ``nvls=None`` turns NVLS on where the link generation supports it."""
    link = get_link(link)
    return Topology("switch", n_gpus, link, links_per_gpu, link.supports_nvls if nvls is None else bool(nvls), name)


def full_mesh(link: Link | str, n_gpus: int, links_per_gpu: int, *, name: str = "") -> Topology:
    """Every GPU linked directly to every other, ``links_per_gpu / (n_gpus - 1)`` links per pair."""
    return Topology("full_mesh", n_gpus, get_link(link), links_per_gpu, False, name)


def ring(link: Link | str, n_gpus: int, links_per_gpu: int, *, name: str = "") -> Topology:
    """GPUs in a physical ring, half the links to each neighbour (all to the peer when ``n_gpus == 2``)."""
    return Topology("ring", n_gpus, get_link(link), links_per_gpu, False, name)


def hgx_node(link_name: str, links_per_gpu: int, n_gpus: int = 8, *, nvls: bool | None = None) -> Topology:
    """An NVSwitch node (HGX/DGX): ``hgx_node("nvlink4", 18)`` is 8xH100 SXM with NVLS available."""
    link = get_link(link_name)
    if link.kind != "nvlink":
        raise InvalidValueError(f"an HGX node is wired with NVLink, got {link.name} ({link.kind})")
    return switch(link, n_gpus, links_per_gpu, nvls=nvls, name=f"HGX {n_gpus}x{links_per_gpu}x{link.name}")


def pcie_box(pcie_gen: int, n_gpus: int) -> Topology:
    """GPUs that talk only over their PCIe x16 slots, through a PCIe switch or the root complex.

    The host's own limits (CPU memory bandwidth, the socket interconnect) are not modelled.
    """
    link = pcie_link(pcie_gen)
    return Topology("switch", n_gpus, link, 1, False, f"PCIe box {n_gpus}x{link.name}")


def cluster(node: Topology, n_nodes: int, nic: Link | str, nics_per_node: int) -> Cluster:
    """``n_nodes`` copies of ``node`` on a non-blocking network, ``nics_per_node`` NICs each."""
    return Cluster(node, n_nodes, get_link(nic), nics_per_node)


def device_node(device, n_gpus: int, *, kind: str | None = None) -> Topology:
    """The usual node of ``n_gpus`` catalog devices, wired as their links suggest.

    ``kind=None`` picks: NVLink parts on an NVSwitch (HGX/DGX; NVLS where the
    generation has it), xGMI parts as a full mesh (MI300X platforms wire all 8
    GPUs pairwise), anything else over PCIe. ``kind`` may force "switch",
    "full_mesh", "ring" or "pcie".
    """
    has_link = device.link_name is not None and device.link_count is not None
    if kind is None:
        if not has_link:
            kind = "pcie"
        else:
            kind = {"nvlink": "switch", "xgmi": "full_mesh"}.get(get_link(device.link_name).kind, "switch")
    if kind == "pcie":
        if device.pcie_gen is None:
            raise InvalidValueError(f"{device.name} has no PCIe generation in the catalog")
        return pcie_box(device.pcie_gen, n_gpus)
    if not has_link:
        raise InvalidValueError(f"{device.name} has no GPU-to-GPU link in the catalog; use kind='pcie'")
    builders = {"switch": switch, "full_mesh": full_mesh, "ring": ring}
    if kind not in builders:
        raise InvalidValueError(f"unknown node kind {kind!r}; known: pcie, {', '.join(builders)}")
    return builders[kind](device.link_name, n_gpus, device.link_count, name=f"{n_gpus}x{device.name} {kind} {device.link_name}")

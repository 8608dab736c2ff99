"""Link types (NVLink, xGMI, PCIe, InfiniBand, Ethernet) and their alpha-beta cost.

Every link type lives in ``hwmodels/data/interconnects.toml`` with two bandwidths
kept apart:

* ``bytes_per_s_per_direction`` -- the datasheet line rate of one link, one direction;
* ``achievable_bytes_per_s_per_direction`` -- what one link delivers to a collective
  library, from NCCL's own topology model (``src/graph/topo.h``: e.g. SM90_NVLINK_BW
  = 20.6 GB/s per NVLink4 link) or a maintainer statement (24 GB/s per 200G NIC).

The cost of moving ``n`` bytes over ``k`` parallel links of one type is the
alpha-beta form ``latency_s + n / (k * achievable_bytes_per_s_per_direction)``
(:func:`transfer_time_s`). ``latency_s`` is NCCL's per-hop latency for the link's
class (``hwLatencies[class][Ring][LL]`` in ``src/graph/tuning.cc``): 0.6 us over
NVLink, 1.0 us over PCIe, 2.7 us over the network.

The file also carries the NCCL tuning constants (base and per-step latencies per
algorithm and protocol, protocol bandwidth factors) that :mod:`hwmodels.collectives`
uses; :func:`nccl_tuning` returns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from hwmodels.datafile import Sourced, load_toml, read_sourced, read_sources
from hwmodels.errors import DataFileError, InvalidValueError
from hwmodels.registry import Registry
from hwmodels.units import to_si

#: Physical families of links.
LINK_KINDS = ("nvlink", "xgmi", "pcie", "infiniband", "ethernet")
#: NCCL's hardware-latency classes (``NCCL_HW_NVLINK``, ``NCCL_HW_PCI``, ``NCCL_HW_NET``).
LATENCY_CLASSES = ("nvlink", "pci", "net")
#: NCCL protocols, in NCCL's order.
PROTOCOLS = ("ll", "ll128", "simple")

DATA_FILE = resources.files("hwmodels") / "data" / "interconnects.toml"


@dataclass(frozen=True)
class Link:
    """One type of link: a single NVLink lane group, one PCIe x16 slot, one NIC port.

    Bandwidths are per link and per direction; links are full duplex, so both
    directions carry that rate at once (8xH200 nvbandwidth: 396 GB/s one way,
    784 GB/s both ways, ml-engineering network chapter).
    """

    name: str
    kind: str
    latency_class: str
    bytes_per_s_per_direction: float
    achievable_bytes_per_s_per_direction: float
    latency_s: float
    nvls_efficiency: float | None = None
    ll_max_busbw_bytes_per_s: float | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    provenance: Mapping[str, Sourced] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if self.kind not in LINK_KINDS:
            raise InvalidValueError(f"link {self.name!r}: kind must be one of {', '.join(LINK_KINDS)}, got {self.kind!r}")
        if self.latency_class not in LATENCY_CLASSES:
            raise InvalidValueError(
                f"link {self.name!r}: latency_class must be one of {', '.join(LATENCY_CLASSES)}, got {self.latency_class!r}"
            )
        for attr in ("bytes_per_s_per_direction", "achievable_bytes_per_s_per_direction"):
            value = getattr(self, attr)
            if not (math.isfinite(value) and value > 0):
                raise InvalidValueError(f"link {self.name!r}: {attr} must be positive, got {value!r}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise InvalidValueError(f"link {self.name!r}: latency_s must be non-negative, got {self.latency_s!r}")
        if self.nvls_efficiency is not None and not 0 < self.nvls_efficiency <= 1:
            raise InvalidValueError(f"link {self.name!r}: nvls_efficiency must be in (0, 1], got {self.nvls_efficiency!r}")

    @property
    def efficiency(self) -> float:
        """Achievable over datasheet bandwidth (0.82 for NVLink4: 20.6 / 25)."""
        return self.achievable_bytes_per_s_per_direction / self.bytes_per_s_per_direction

    @property
    def supports_nvls(self) -> bool:
        """Whether NVSwitches of this link generation reduce in the switch (NVLink SHARP)."""
        return self.nvls_efficiency is not None


@dataclass(frozen=True)
class NcclTuning:
    """NCCL's tuning-model constants (``src/graph/tuning.cc``), in SI units.

    ``base_latency_s[(algorithm, protocol)]`` is the fixed cost of one operation;
    ``hw_latency_s[(latency_class, algorithm, protocol)]`` the cost per pipelined
    step over that class of link; ``factors`` the protocol bandwidth multipliers
    (``ring_ll``, ``ring_ll128``, ``tree_allreduce``, ``tree_ll``,
    ``tree_ll128_single_node``, ``tree_ll128_multi_node``).
    """

    base_latency_s: Mapping[tuple[str, str], float]
    hw_latency_s: Mapping[tuple[str, str, str], float]
    factors: Mapping[str, float]
    ll_max_busbw_2_nodes_bytes_per_s: float
    ll_max_busbw_3plus_nodes_bytes_per_s: float
    net_overhead_s: float
    net_overhead_simple_multiplier: float
    provenance: Mapping[str, Sourced] = field(default_factory=dict, compare=False, repr=False)

    def base(self, algorithm: str, protocol: str) -> float:
        return self.base_latency_s[(algorithm, protocol)]

    def hw(self, latency_class: str, algorithm: str, protocol: str) -> float:
        return self.hw_latency_s[(latency_class, algorithm, protocol)]


_LINK_FIELDS: tuple[tuple[str, str, bool, bool], ...] = (
    # (file key, Link field, required, allow zero)
    ("per_direction_gb_per_s", "bytes_per_s_per_direction", True, False),
    ("achievable_per_direction_gb_per_s", "achievable_bytes_per_s_per_direction", True, False),
    ("latency_us", "latency_s", True, True),
    ("nvls_efficiency", "nvls_efficiency", False, False),
    ("nccl_ll_max_busbw_gb_per_s", "ll_max_busbw_bytes_per_s", False, False),
)


def parse_links(doc: dict[str, Any], path: Any) -> dict[str, tuple[Link, tuple[str, ...]]]:
    """The ``[links.*]`` tables of an interconnect file as Link objects keyed by name."""
    sources = read_sources(doc, path)
    table = doc.get("links")
    if not isinstance(table, dict) or not table:
        raise DataFileError(path, "links", "missing: define at least one [links.<name>] table")
    out: dict[str, tuple[Link, tuple[str, ...]]] = {}
    for name, entry in table.items():
        prefix = f"links.{name}."
        if not isinstance(entry, dict):
            raise DataFileError(path, f"links.{name}", "must be a table")
        for key in ("kind", "latency_class"):
            if not isinstance(entry.get(key), str):
                raise DataFileError(path, prefix + key, "missing or not a string")
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise DataFileError(path, prefix + "aliases", "must be a list of strings")
        values: dict[str, float] = {}
        provenance: dict[str, Sourced] = {}
        for key, attr, required, allow_zero in _LINK_FIELDS:
            sourced = read_sourced(entry, key, path, sources, prefix=prefix, required=required, allow_zero=allow_zero)
            if sourced is not None:
                values[attr] = to_si(key, sourced.value)[0]
                provenance[attr] = sourced
        try:
            link = Link(
                name=name,
                kind=entry["kind"],
                latency_class=entry["latency_class"],
                aliases=tuple(aliases),
                description=str(entry.get("description", "")),
                provenance=provenance,
                **values,
            )
        except InvalidValueError as exc:
            raise DataFileError(path, f"links.{name}", str(exc)) from None
        out[name] = (link, link.aliases)
    return out


def parse_nccl_tuning(doc: dict[str, Any], path: Any) -> NcclTuning:
    """The ``[nccl_tuning]`` tables of an interconnect file."""
    sources = read_sources(doc, path)
    tuning = doc.get("nccl_tuning")
    if not isinstance(tuning, dict):
        raise DataFileError(path, "nccl_tuning", "missing")
    provenance: dict[str, Sourced] = {}

    def number(table: dict[str, Any], key: str, prefix: str, required: bool = True) -> float | None:
        sourced = read_sourced(table, key, path, sources, prefix=prefix, required=required, allow_zero=True)
        if sourced is None:
            return None
        provenance[prefix + key] = sourced
        return to_si(key, sourced.value)[0]

    base: dict[tuple[str, str], float] = {}
    for algorithm, table in tuning.get("base_latency", {}).items():
        for protocol in PROTOCOLS:
            value = number(table, f"{protocol}_us", f"nccl_tuning.base_latency.{algorithm}.", required=False)
            if value is not None:
                base[(algorithm, protocol)] = value
    hw: dict[tuple[str, str, str], float] = {}
    for latency_class, by_algorithm in tuning.get("hw_latency", {}).items():
        if latency_class not in LATENCY_CLASSES:
            known = ", ".join(LATENCY_CLASSES)
            raise DataFileError(path, f"nccl_tuning.hw_latency.{latency_class}", f"unknown class; known: {known}")
        for algorithm, table in by_algorithm.items():
            for protocol in PROTOCOLS:
                value = number(table, f"{protocol}_us", f"nccl_tuning.hw_latency.{latency_class}.{algorithm}.", required=False)
                if value is not None:
                    hw[(latency_class, algorithm, protocol)] = value
    for algorithm in ("ring", "tree"):
        for protocol in PROTOCOLS:
            if (algorithm, protocol) not in base:
                raise DataFileError(path, f"nccl_tuning.base_latency.{algorithm}.{protocol}_us", "missing")
            for latency_class in LATENCY_CLASSES:
                if (latency_class, algorithm, protocol) not in hw:
                    raise DataFileError(path, f"nccl_tuning.hw_latency.{latency_class}.{algorithm}.{protocol}_us", "missing")
    factor_names = ("ring_ll", "ring_ll128", "tree_allreduce", "tree_ll", "tree_ll128_single_node", "tree_ll128_multi_node")
    factors_table = tuning.get("factors", {})
    factors = {name: number(factors_table, name, "nccl_tuning.factors.") for name in factor_names}
    multi = tuning.get("multi_node", {})
    prefix = "nccl_tuning.multi_node."
    return NcclTuning(
        base_latency_s=MappingProxyType(base),
        hw_latency_s=MappingProxyType(hw),
        factors=MappingProxyType(factors),
        ll_max_busbw_2_nodes_bytes_per_s=number(multi, "ll_max_busbw_2_nodes_gb_per_s", prefix),
        ll_max_busbw_3plus_nodes_bytes_per_s=number(multi, "ll_max_busbw_3plus_nodes_gb_per_s", prefix),
        net_overhead_s=number(multi, "net_overhead_us", prefix),
        net_overhead_simple_multiplier=number(multi, "net_overhead_simple_multiplier", prefix),
        provenance=MappingProxyType(provenance),
    )


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    with resources.as_file(DATA_FILE) as path:
        return load_toml(path)


def _load_links() -> dict[str, tuple[Link, tuple[str, ...]]]:
    return parse_links(_document(), str(DATA_FILE))


LINKS: Registry[Link] = Registry("link", _load_links)


@lru_cache(maxsize=1)
def nccl_tuning() -> NcclTuning:
    """NCCL's tuning constants, read once from ``interconnects.toml``."""
    return parse_nccl_tuning(_document(), str(DATA_FILE))


def get_link(name: str | Link) -> Link:
    """A link type by name or alias, case-insensitively (``"NVLink4"``, ``"ib-hdr"``, ``"pcie5"``).

    Unknown names raise :class:`~hwmodels.errors.UnknownNameError` listing close matches.
    """
    if isinstance(name, Link):
        return name
    if not isinstance(name, str):
        raise InvalidValueError(f"a link is named by a string, got {name!r}")
    return LINKS.get(name)


def links() -> list[str]:
    """Names of the known link types, in file order."""
    return LINKS.names()


def pcie_link(generation: int) -> Link:
    """The x16 PCIe link of a generation (3, 4, 5 or 6), as device files give ``pcie_gen``."""
    if isinstance(generation, bool) or not isinstance(generation, (int, np.integer)):
        raise InvalidValueError(f"pcie generation must be an integer such as 4 or 5, got {generation!r}")
    return get_link(f"pcie{int(generation)}")


def transfer_time_s(
    link: Link | str,
    n_bytes: float | np.ndarray,
    *,
    n_links: int = 1,
    bidirectional: bool = False,
) -> float | np.ndarray:
    """Alpha-beta time to move ``n_bytes`` over ``n_links`` parallel links of one type.

    ``t = latency_s + n_bytes / (n_links * achievable_bytes_per_s_per_direction)``,
    and 0 for 0 bytes. ``n_bytes`` is what each endpoint sends; with
    ``bidirectional=True`` both endpoints send ``n_bytes`` at once, which on a
    full-duplex link takes the same time (twice the bytes move). Accepts an array
    of sizes and returns an array.
    """
    link = get_link(link)
    if isinstance(n_links, bool) or not isinstance(n_links, (int, np.integer)) or n_links < 1:
        raise InvalidValueError(f"n_links must be a positive integer, got {n_links!r}")
    if not isinstance(bidirectional, (bool, np.bool_)):
        raise InvalidValueError(f"bidirectional must be True or False, got {bidirectional!r}")
    sizes = np.asarray(n_bytes, dtype=float)
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise InvalidValueError(f"n_bytes must be finite and non-negative, got {n_bytes!r}")
    time = np.where(sizes > 0, link.latency_s + sizes / (n_links * link.achievable_bytes_per_s_per_direction), 0.0)
    return float(time) if time.ndim == 0 else time

"""What the machine is: devices, memory levels, interconnects, collectives and rooflines.

The public surface, assembled once::

    import hwmodels as hw
    h100 = hw.get_device("H100-SXM")              # catalog names are case-insensitive
    fast = hw.derive(h100, "H100-2xHBM", scale={"hbm_bytes_per_s": 2})
    rf = hw.roofline(h100, "bf16")
    hw.place(hw.Operation.gemm("proj", 1, 4096, 4096), rf).bound   # 'memory'
    hw.collective_time("all_reduce", 1 << 30, hw.device_node(h100, 8)).busbw_bytes_per_s
"""

from __future__ import annotations

from pathlib import Path

from hwmodels.calibration import Calibration, calibration
from hwmodels.collectives import CollectiveCost, collective_time
from hwmodels.catalog import CATALOG
from hwmodels.datafile import Source, Sourced
from hwmodels.device import DTYPE_BYTES, DTYPES, Device
from hwmodels.errors import DataFileError, ExportError, InvalidValueError, KernelabError, UnknownNameError
from hwmodels.host import HOST_NAME, host_device
from hwmodels.interconnect import Link, get_link, links
from hwmodels.roofline import LEVELS, Ceiling, Operation, Placement, Roofline, place, roofline
from hwmodels.topology import Cluster, Topology, cluster, device_node, full_mesh, hgx_node, pcie_box, ring, switch
from hwmodels.whatif import derive, load_device_file

__all__ = [
    "CATALOG",
    "DTYPES",
    "DTYPE_BYTES",
    "LEVELS",
    "Calibration",
    "Ceiling",
    "Cluster",
    "CollectiveCost",
    "DataFileError",
    "ExportError",
    "Device",
    "InvalidValueError",
    "KernelabError",
    "Link",
    "Operation",
    "Placement",
    "Roofline",
    "Source",
    "Sourced",
    "Topology",
    "UnknownNameError",
    "calibration",
    "cluster",
    "collective_time",
    "derive",
    "device_names",
    "device_node",
    "full_mesh",
    "get_device",
    "get_link",
    "hgx_node",
    "host_device",
    "links",
    "load_device_file",
    "pcie_box",
    "place",
    "ring",
    "roofline",
    "switch",
]

_HOST_NAMES = {HOST_NAME, "host", "cpu"}


def device_names(include_host: bool = True) -> list[str]:
    """Catalog device names, then the host CPU."""
    return CATALOG.names() + ([HOST_NAME] if include_host else [])


def get_device(name: str | Path | Device) -> Device:
    """A device by catalog name (case-insensitive), ``host-cpu``, or the path of a device/what-if TOML file."""
    if isinstance(name, Device):
        return name
    text = str(name)
    if text.endswith(".toml") or Path(text).is_file():
        return load_device_file(text)
    if text.strip().lower() in _HOST_NAMES:
        return host_device()
    try:
        return CATALOG.get(text)
    except UnknownNameError:
        raise UnknownNameError("device", text, device_names()) from None

"""What this build of kernels_cuda can run: backends() and require_cuda()."""

from __future__ import annotations

import copy
import functools
from typing import Any

from ._errors import CudaUnavailableError
from ._loader import extension


def _version_text(version: int) -> str | None:
    """CUDA's integer versions (13000) as "13.0"; None for 0 (absent)."""
    if version <= 0:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def _architectures(text: str) -> list[str]:
    return [arch for arch in text.split(",") if arch]


@functools.lru_cache(maxsize=1)
def _report() -> dict[str, Any]:
    ext = extension()
    report: dict[str, Any] = {
        "extension_built": ext.module is not None,
        "extension_path": ext.path,
        "cpu": ext.module is not None,
        "cuda_compiled": False,
        "cuda_architectures": [],
        "cuda_compiler_version": None,
        "cuda_runtime_version": None,
        "cuda_driver_version": None,
        "cuda_usable": False,
        "devices": [],
        "reason": None,
    }
    if ext.module is None:
        report["reason"] = f"kernels_cuda's compiled extension is unavailable: {ext.error}"
        return report

    build = ext.module.BUILD_INFO
    report["cuda_compiled"] = bool(build["cuda_compiled"])
    report["cuda_architectures"] = _architectures(build["cuda_architectures"])
    report["cuda_compiler_version"] = build["cuda_compiler_version"] or None
    try:
        runtime = ext.module.cuda_runtime_report()
    except Exception as exc:  # backends() answers questions; it does not raise
        report["reason"] = f"querying the CUDA runtime failed: {exc}"
        return report
    report["cuda_runtime_version"] = _version_text(runtime["runtime_version"])
    report["cuda_driver_version"] = _version_text(runtime["driver_version"])
    report["devices"] = runtime["devices"]
    report["reason"] = runtime["reason"]
    report["cuda_usable"] = report["cuda_compiled"] and runtime["reason"] is None
    return report


def backends() -> dict[str, Any]:
    """Report what this build can run; never raises. Keys (stable):

    - ``extension_built`` (bool): the compiled module kernels_cuda._ext imported.
    - ``extension_path`` (str | None): the file it was loaded from.
    - ``cpu`` (bool): the CPU kernels (e.g. triad_cpu) can run.
    - ``cuda_compiled`` (bool): the extension holds CUDA kernels.
    - ``cuda_architectures`` (list[str]): what they were compiled for, as
      given to CMake, e.g. ``["80", "90"]``; empty without CUDA.
    - ``cuda_compiler_version`` (str | None): nvcc's version at build, "13.0.88".
    - ``cuda_runtime_version`` (str | None): the linked CUDA runtime, "13.0".
    - ``cuda_driver_version`` (str | None): the newest CUDA version the
      installed driver supports, "13.0"; None when no driver was found.
    - ``cuda_usable`` (bool): CUDA work can run on at least one device.
    - ``devices`` (list[dict]): one per visible device, with ``index``,
      ``name``, ``compute_capability`` (tuple, e.g. (9, 0)), ``sm_count``,
      ``memory_bytes``, ``clock_hz``, ``memory_clock_hz``,
      ``memory_bus_width_bits``, ``l2_bytes``, ``shared_memory_per_sm_bytes``,
      ``shared_memory_per_block_optin_bytes``, ``registers_per_sm``,
      ``max_threads_per_sm``, ``warp_size``, ``pci_bus_id``,
      ``kernels_supported`` (bool: this build has code the device runs) and
      ``reason`` (str | None: why not).
    - ``reason`` (str | None): why CUDA is not usable; None when it is.

    The runtime is asked once per process; each call returns a fresh copy.
    """
    return copy.deepcopy(_report())


def require_cuda() -> dict[str, Any]:
    """Return backends() if CUDA is usable; else raise CudaUnavailableError
    saying why (not compiled, no driver, no device, no kernel image)."""
    check_cuda()
    return backends()


def check_cuda() -> None:
    """require_cuda() without the report: the check before every kernel call
    (backends()' deep copy would cost more than a small kernel)."""
    report = _report()
    if not report["cuda_usable"]:
        raise CudaUnavailableError(f"CUDA is not usable: {report['reason']}")

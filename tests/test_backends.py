"""kernels_cuda.backends() / require_cuda() / cuda_stream_bandwidth(): what
the build reports, that import never needs a GPU, driver or even the
compiled module, and that asking for CUDA where it cannot run raises."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kernels_cuda

KEYS = {
    "extension_built": bool,
    "extension_path": (str, type(None)),
    "cpu": bool,
    "cuda_compiled": bool,
    "cuda_architectures": list,
    "cuda_compiler_version": (str, type(None)),
    "cuda_runtime_version": (str, type(None)),
    "cuda_driver_version": (str, type(None)),
    "cuda_usable": bool,
    "devices": list,
    "reason": (str, type(None)),
}

DEVICE_KEYS = {
    "index": int,
    "name": str,
    "compute_capability": tuple,
    "sm_count": int,
    "memory_bytes": int,
    "clock_hz": int,
    "memory_clock_hz": int,
    "memory_bus_width_bits": int,
    "l2_bytes": int,
    "shared_memory_per_sm_bytes": int,
    "shared_memory_per_block_optin_bytes": int,
    "registers_per_sm": int,
    "max_threads_per_sm": int,
    "warp_size": int,
    "pci_bus_id": str,
    "kernels_supported": bool,
    "reason": (str, type(None)),
}

REPORT = kernels_cuda.backends()
needs_no_cuda = pytest.mark.skipif(REPORT["cuda_usable"], reason="CUDA is usable here")


def run_python(code, env_extra=None, flags=()):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=120,
    )


def test_public_surface():
    assert sorted(kernels_cuda.__all__) == sorted(
        ["CudaUnavailableError", "ExtensionNotBuiltError", "backends",
         "cuda_stream_bandwidth", "require_cuda", "triad_cpu",
         # attention (issue 5): CPU twins now, one API for CPU and GPU
         "attention_lean_partition", "attention_ring_layout", "attention_schedule_splits",
         "block_attention", "lean_attention", "merge_attention", "ring_attention",
         "split_kv_attention", "tree_attention"]
    )
    assert issubclass(kernels_cuda.CudaUnavailableError, RuntimeError)
    assert issubclass(kernels_cuda.ExtensionNotBuiltError, RuntimeError)


def test_keys_and_types():
    assert set(REPORT) == set(KEYS)
    for key, kind in KEYS.items():
        assert isinstance(REPORT[key], kind), (key, REPORT[key])
    assert all(isinstance(arch, str) for arch in REPORT["cuda_architectures"])


def test_report_is_consistent():
    if REPORT["cuda_usable"]:
        assert REPORT["reason"] is None
        assert any(d["kernels_supported"] for d in REPORT["devices"])
    else:
        assert isinstance(REPORT["reason"], str) and REPORT["reason"].strip()
    if REPORT["cuda_compiled"]:
        assert REPORT["extension_built"]
        assert REPORT["cuda_architectures"], "compiled CUDA must name its architectures"
        assert REPORT["cuda_runtime_version"] and REPORT["cuda_compiler_version"]
    else:
        assert REPORT["cuda_architectures"] == []
        assert REPORT["cuda_runtime_version"] is None
        assert REPORT["cuda_driver_version"] is None
        assert REPORT["devices"] == []
        assert not REPORT["cuda_usable"]
    if REPORT["extension_built"]:
        assert REPORT["cpu"] and Path(REPORT["extension_path"]).is_file()


def test_device_entries():
    for device in REPORT["devices"]:
        assert set(device) == set(DEVICE_KEYS)
        for key, kind in DEVICE_KEYS.items():
            assert isinstance(device[key], kind), (key, device[key])
        assert (device["reason"] is None) == device["kernels_supported"]


def test_returns_a_fresh_copy():
    first = kernels_cuda.backends()
    first["devices"].append("junk")
    first["cuda_usable"] = "junk"
    assert kernels_cuda.backends() == REPORT


@needs_no_cuda
def test_require_cuda_raises_with_the_reason():
    with pytest.raises(kernels_cuda.CudaUnavailableError, match="CUDA is not usable") as info:
        kernels_cuda.require_cuda()
    assert REPORT["reason"] in str(info.value)


@needs_no_cuda
def test_stream_bandwidth_raises_without_cuda():
    with pytest.raises(kernels_cuda.CudaUnavailableError, match="CUDA is not usable"):
        kernels_cuda.cuda_stream_bandwidth(1 << 20)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n_bytes": 7}, ValueError),
        ({"n_bytes": -1}, ValueError),
        ({"n_bytes": 1.5e6}, TypeError),
        ({"n_bytes": None}, TypeError),
        ({"n_bytes": True}, TypeError),
        ({"n_bytes": 1024, "repeats": 0}, ValueError),
        ({"n_bytes": 1024, "warmup": -1}, ValueError),
        ({"n_bytes": 1024, "device": -1}, ValueError),
    ],
)
def test_stream_bandwidth_bad_arguments(kwargs, error):
    with pytest.raises(error):
        kernels_cuda.cuda_stream_bandwidth(**kwargs)


def test_import_and_backends_with_no_visible_device():
    """Hiding every device is how a GPU machine looks without one."""
    result = run_python(
        """
        import kernels_cuda
        r = kernels_cuda.backends()
        assert not r["cuda_usable"] and r["reason"], r
        try:
            kernels_cuda.require_cuda()
        except kernels_cuda.CudaUnavailableError as e:
            print("raised:", e)
        """,
        env_extra={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "raised: CUDA is not usable" in result.stdout


def test_import_without_the_compiled_extension(tmp_path):
    """A source tree that was never built: import works, backends() says
    why, CPU and CUDA calls raise clear errors. Run isolated (-I -S) with
    only the package's Python files, so no installed _ext can be found."""
    package = Path(kernels_cuda.__file__).parent
    copy = tmp_path / "kernels_cuda"
    copy.mkdir()
    for source in package.glob("*.py"):
        shutil.copy(source, copy / source.name)
    result = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import kernels_cuda
        r = kernels_cuda.backends()
        assert r["extension_built"] is False and r["cpu"] is False, r
        assert r["cuda_compiled"] is False and r["cuda_usable"] is False, r
        assert "not built" in r["reason"], r["reason"]
        for call, error in [
            (lambda: kernels_cuda.triad_cpu(None, None, 1.0), kernels_cuda.ExtensionNotBuiltError),
            (kernels_cuda.require_cuda, kernels_cuda.CudaUnavailableError),
            (lambda: kernels_cuda.cuda_stream_bandwidth(1024), kernels_cuda.CudaUnavailableError),
        ]:
            try:
                call()
            except error as e:
                print("raised:", type(e).__name__, e)
            else:
                raise AssertionError("no error")
        """,
        flags=("-I", "-S"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("raised:") == 3, result.stdout


# --- on a machine with a usable GPU -------------------------------------------


@pytest.mark.gpu
def test_gpu_devices_are_described():
    report = kernels_cuda.require_cuda()
    device = next(d for d in report["devices"] if d["kernels_supported"])
    assert device["compute_capability"] >= (8, 0)
    assert device["sm_count"] > 0 and device["memory_bytes"] > 0 and device["l2_bytes"] > 0
    assert report["cuda_driver_version"] is not None


@pytest.mark.gpu
@pytest.mark.parametrize("n_bytes", [8, 8 * 19 + 5, 8 * 100003, 256 << 20])
def test_gpu_stream_bandwidth_is_correct(n_bytes):
    result = kernels_cuda.cuda_stream_bandwidth(n_bytes, repeats=5, warmup=1)
    n_elements = n_bytes // 8
    assert result["n_elements"] == n_elements
    assert result["bytes_moved"] == 3 * 8 * n_elements
    assert result["max_abs_error"] <= 1e-12
    assert 0 < result["time_s_min"] <= result["time_s"] <= result["time_s_max"]
    assert result["bytes_per_s"] == pytest.approx(result["bytes_moved"] / result["time_s"])
    assert result["device"] == kernels_cuda.backends()["devices"][0]["name"]


@pytest.mark.gpu
def test_gpu_stream_bandwidth_bad_device():
    count = len(kernels_cuda.backends()["devices"])
    with pytest.raises(ValueError, match="device"):
        kernels_cuda.cuda_stream_bandwidth(1024, device=count)


@pytest.mark.skipif(not (os.environ.get("CI") and shutil.which("nvcc")), reason="only where CI installed with nvcc on PATH")
def test_ci_with_nvcc_compiles_the_cuda_kernels_for_sm80_and_sm90():
    info = kernels_cuda.backends()
    assert info["cuda_compiled"], info["reason"]
    assert {"80", "90"} <= set(info["cuda_architectures"])

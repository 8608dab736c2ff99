"""Roofline math: ceilings, ridge points, and the placement of operations."""

import math

import numpy as np
import pytest

import hwmodels as hw

DEVICES = hw.CATALOG.names()


@pytest.mark.parametrize("name", DEVICES)
def test_ridge_point_is_peak_over_bandwidth_at_every_level(name):
    d = hw.get_device(name)
    dtype = "bf16" if "bf16" in d.peak_flops_per_s else d.dtypes[0]
    rf = hw.roofline(d, dtype)
    for c in rf.ceilings:
        assert rf.ridge_point(c.level) == pytest.approx(d.peak(dtype) / c.bytes_per_s)
    assert rf.ridge_point("hbm") == pytest.approx(d.ridge_point(dtype))


@pytest.mark.parametrize("name", DEVICES)
def test_inner_levels_are_faster_so_their_ridges_come_first(name):
    rf = hw.roofline(hw.get_device(name), "fp32")
    bw = [c.bytes_per_s for c in rf.ceilings]
    assert [c.level for c in rf.ceilings] in (["hbm", "l2", "smem"], ["hbm", "smem"])
    assert bw == sorted(bw)


def test_l2_roof_exists_only_where_a_same_vendor_device_measured_it():
    assert "l2" in [c.level for c in hw.roofline(hw.get_device("H100-SXM")).ceilings]
    for amd in ("MI300X", "MI250X"):
        assert hw.calibration(hw.get_device(amd)).l2_bytes_per_s is None
        assert [c.level for c in hw.roofline(hw.get_device(amd)).ceilings] == ["hbm", "smem"]


@pytest.mark.parametrize("name", DEVICES)
def test_attainable_is_min_of_compute_roof_and_memory_slope(name):
    d = hw.get_device(name)
    rf = hw.roofline(d, "fp32")
    ridge = rf.ridge_point()
    intensity = np.array([ridge / 10, ridge, ridge * 10])
    got = rf.attainable_flops_per_s(intensity)
    assert got[0] == pytest.approx(ridge / 10 * d.hbm_bytes_per_s)
    assert got[1] == pytest.approx(d.peak("fp32"))
    assert got[2] == pytest.approx(d.peak("fp32"))


@pytest.mark.parametrize("name", DEVICES)
def test_calibrated_roofs_never_exceed_datasheet_roofs(name):
    d = hw.get_device(name)
    dtype = d.dtypes[0]
    peak, achievable = hw.roofline(d, dtype), hw.roofline(d, dtype, calibrated=True)
    assert achievable.peak_flops_per_s <= peak.peak_flops_per_s
    assert achievable.ceiling("hbm").bytes_per_s <= peak.ceiling("hbm").bytes_per_s


def test_decode_gemv_is_memory_bound_and_big_gemm_compute_bound_on_h100():
    rf = hw.roofline(hw.get_device("H100-SXM"), "bf16")
    gemv = hw.place(hw.Operation.gemm("gemv", 1, 4096, 4096), rf)
    gemm = hw.place(hw.Operation.gemm("gemm", 8192, 8192, 8192), rf)
    assert (gemv.bound, gemv.level) == ("memory", "hbm")
    assert gemv.time_s == pytest.approx((4096 * 4096 + 2 * 4096) * 2 / 3.35e12)
    assert gemm.bound == "compute"
    assert gemm.time_s == pytest.approx(2 * 8192**3 / 989.4e12)
    assert gemm.attainable_flops_per_s == pytest.approx(989.4e12)


def test_an_operation_bound_by_l2_names_that_level():
    rf = hw.roofline(hw.get_device("A100-SXM-80GB"), "bf16")
    l2_bw = rf.ceiling("l2").bytes_per_s
    op = hw.Operation("l2-heavy", 1e6, {"hbm": 1e3, "l2": l2_bw * 1e-3, "smem": 1e3})
    p = hw.place(op, rf)
    assert (p.bound, p.level) == ("memory", "l2")
    assert p.time_s == pytest.approx(1e-3)


def test_gemm_cost_record_counts_2mnk_and_each_operand_once():
    op = hw.Operation.gemm("g", 3, 5, 7, dtype="fp16")
    assert op.flops == 2 * 3 * 5 * 7
    assert op.hbm_bytes == (3 * 7 + 7 * 5 + 3 * 5) * 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="x", flops=-1, bytes_by_level={"hbm": 1}), "non-negative"),
        (dict(name="x", flops=1, bytes_by_level={}), "device-memory"),
        (dict(name="x", flops=1, bytes_by_level={"hbm": 0}), "positive"),
        (dict(name="x", flops=1, bytes_by_level={"hbm": 1, "l3": 1}), "unknown level"),
        (dict(name="x", flops=math.nan, bytes_by_level={"hbm": 1}), "non-negative"),
    ],
)
def test_bad_operations_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(hw.InvalidValueError, match=message):
        hw.Operation(**kwargs)


def test_dtype_without_a_peak_lists_the_ones_there_are():
    with pytest.raises(hw.InvalidValueError, match="fp32"):
        hw.roofline(hw.get_device("V100-SXM2"), "fp8")


def test_placing_on_a_roofline_of_another_dtype_is_refused():
    rf = hw.roofline(hw.get_device("H100-SXM"), "fp8")
    with pytest.raises(hw.InvalidValueError, match="bf16"):
        hw.place(hw.Operation.gemm("g", 2, 2, 2, "bf16"), rf)


def test_negative_intensity_is_refused():
    rf = hw.roofline(hw.get_device("H100-SXM"))
    with pytest.raises(hw.InvalidValueError):
        rf.attainable_flops_per_s([-1.0])

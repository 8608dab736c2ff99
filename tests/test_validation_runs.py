"""The step model's pieces against kernelab's own H100 run (sim/data/measured/kernelab_h100_2026-11-25).

The bounds are the errors the model reaches today plus a small margin, so a
regression fails; what the model does not capture yet is a strict xfail that
names the cause."""

import json
from importlib import resources

import pytest

from sim import validation_runs as vr

GEMMS = vr.gemm_comparisons()
LONG = [c for c in GEMMS if c.measured_s >= 100e-6]  # fixed per-kernel costs (~10 µs) are under a tenth
CLASSES = vr.class_comparisons()


def test_the_run_is_of_the_card_it_is_compared_with():
    env = json.loads((resources.files("sim") / "data" / "measured" / vr.RUN / "environment.json").read_text())
    assert env["device_name"] == "NVIDIA H100 80GB HBM3" and vr.RUN_DEVICE == "H100-SXM"
    assert env["sm_count"] == 132


def test_every_row_is_compared():
    assert len(GEMMS) == len(vr.read_csv("gemm.csv")) > 150
    assert len(vr.step_comparisons()) == len(vr.read_csv("llama_step.csv")) >= 20
    assert {c.bound for c in CLASSES} == {"gemm", "attention", "other"}


def test_compute_bound_gemms_are_within_six_percent_median():
    rows = [c for c in LONG if c.bound == "compute"]
    s = vr.stats(rows)
    assert s["rows"] >= 60
    assert s["median_abs_error"] <= 0.06
    assert s["max_abs_error"] <= 0.25  # tf32 16384^3, run while the clock had dropped to 1155 MHz


def test_long_memory_bound_gemms_are_within_fifteen_percent_median():
    rows = [c for c in LONG if c.bound == "memory"]
    s = vr.stats(rows)
    assert s["rows"] >= 15
    assert s["median_abs_error"] <= 0.15 and s["max_abs_error"] <= 0.25


def test_short_memory_bound_gemms_are_predicted_too_fast():
    """The analytic GEMM has no per-kernel ramp-up and tail and lets a 48-CTA GEMV draw the whole HBM."""
    rows = vr.memory_bound_gemms(GEMMS)
    assert vr.stats(rows)["median_error"] < -0.15


@pytest.mark.xfail(strict=True, reason="short memory-bound GEMMs: ramp-up, tail and under-filled grids are the "
                                       "kernel engine's to model; the step model does not use it for GEMMs yet")
def test_short_memory_bound_gemms_within_fifteen_percent():
    assert vr.stats(vr.memory_bound_gemms(GEMMS))["median_abs_error"] <= 0.15


@pytest.mark.parametrize("comparison", [c for c in CLASSES if c.bound == "gemm"], ids=lambda c: c.label)
def test_the_gemm_time_of_a_whole_step_is_within_twelve_percent(comparison):
    assert abs(comparison.error) <= 0.12


@pytest.mark.xfail(strict=True, reason="attention: FlashAttention-2 issues mma.sync on Hopper (measured 184-355 "
                                       "TFLOP/s, modelled at the cuBLAS rate) and split-KV's combine kernel and "
                                       "fixed costs are missing at short contexts")
def test_the_attention_time_of_a_whole_step_is_within_twenty_percent():
    assert all(abs(c.error) <= 0.20 for c in CLASSES if c.bound == "attention")


@pytest.mark.xfail(strict=True, reason="the run's eager PyTorch leaves RoPE, SiLU-mul and residual adds unfused "
                                       "(about 25 kernels a layer); the step model assumes fused engines")
def test_whole_steps_are_within_ten_percent_median():
    assert vr.stats(vr.step_comparisons())["median_abs_error"] <= 0.10

"""The step model's pieces against kernelab's own GPU runs (sim/data/measured/kernelab_*).

The bounds are the errors the model reaches today plus a small margin, so a
regression fails; what the model does not capture yet is a strict xfail that
names the cause."""

import json
from functools import cache
from importlib import resources

import pytest

from sim import validation_runs as vr

RUNS = pytest.mark.parametrize("run", sorted(vr.RUNS))
CARD = {"H100-SXM": "NVIDIA H100 80GB HBM3", "H200": "NVIDIA H200"}


@cache
def gemms(run):
    return vr.gemm_comparisons(run)


@cache
def classes(run):
    return vr.class_comparisons(run)


def long_gemms(run, bound):
    """GEMMs of at least 100 µs: the ~10 µs fixed cost of a kernel is under a tenth of them."""
    return [c for c in gemms(run) if c.measured_s >= 100e-6 and c.bound == bound]


@RUNS
def test_the_run_is_of_the_card_it_is_compared_with(run):
    env = json.loads((resources.files("sim") / "data" / "measured" / run / "environment.json").read_text())
    assert env["device_name"] == CARD[vr.RUNS[run]]
    assert env["sm_count"] == 132


@RUNS
def test_every_row_is_compared(run):
    assert len(gemms(run)) == len(vr.read_csv("gemm.csv", run)) > 150
    assert len(vr.step_comparisons(run)) == len(vr.read_csv("llama_step.csv", run)) >= 20
    assert len(vr.step_comparisons(run, ops="compiled")) == len(vr.read_csv("llama_step_compiled.csv", run)) >= 10
    assert {c.bound for c in classes(run)} == {"gemm", "attention", "other"}


@RUNS
def test_compute_bound_gemms_are_within_nine_percent_median(run):
    s = vr.stats(long_gemms(run, "compute"))
    assert s["rows"] >= 60
    assert s["median_abs_error"] <= 0.09  # H200 fp8: its calibration is MAMF's best shape, 10% above typical ones
    assert s["max_abs_error"] <= 0.25  # tf32 16384^3, run while the clock had dropped far below 1980 MHz


@RUNS
def test_long_memory_bound_gemms_are_within_fifteen_percent_median(run):
    s = vr.stats(long_gemms(run, "memory"))
    assert s["rows"] >= 10
    assert s["median_abs_error"] <= 0.15 and s["max_abs_error"] <= 0.25


@RUNS
def test_short_memory_bound_gemms_are_predicted_too_fast(run):
    """The analytic GEMM has no per-kernel ramp-up and tail and lets a 48-CTA GEMV draw the whole HBM."""
    assert vr.stats(vr.memory_bound_gemms(gemms(run)))["median_error"] < -0.15


@RUNS
@pytest.mark.xfail(strict=True, reason="short memory-bound GEMMs: ramp-up, tail and under-filled grids are the "
                                       "kernel engine's to model; the step model does not use it for GEMMs yet")
def test_short_memory_bound_gemms_within_fifteen_percent(run):
    assert vr.stats(vr.memory_bound_gemms(gemms(run)))["median_abs_error"] <= 0.15


@RUNS
def test_the_gemm_time_of_each_profiled_step_is_within_thirteen_percent(run):
    rows = [c for c in classes(run) if c.bound == "gemm"]
    assert len(rows) == 4
    assert all(abs(c.error) <= 0.13 for c in rows), [(c.label, round(c.error, 3)) for c in rows]


@RUNS
@pytest.mark.xfail(strict=True, reason="attention: inside the steps FA2 prefill runs at ~184 TFLOP/s, below the "
                                       "~276 it reaches alone at the same size (modelled: the standalone rate), and "
                                       "split-KV's fixed costs at short contexts are under-counted")
def test_the_attention_time_of_each_profiled_step_is_within_twenty_percent(run):
    assert all(abs(c.error) <= 0.20 for c in classes(run) if c.bound == "attention")


@RUNS
def test_whole_compiled_steps_are_within_twenty_percent_median_and_too_fast(run):
    s = vr.stats(vr.step_comparisons(run, ops="compiled"))
    assert s["rows"] >= 10
    assert s["median_abs_error"] <= 0.20 and s["max_abs_error"] <= 0.36
    assert s["median_error"] < 0  # the attention misses above all go one way


@RUNS
def test_fusing_the_elementwise_ops_brings_the_measured_steps_toward_the_model(run):
    eager = vr.stats(vr.step_comparisons(run))
    compiled = vr.stats(vr.step_comparisons(run, ops="compiled"))
    assert compiled["median_abs_error"] < eager["median_abs_error"] - 0.05


@RUNS
@pytest.mark.xfail(strict=True, reason="whole steps inherit the attention misses above and the GEMV ramp-up")
def test_whole_compiled_steps_are_within_ten_percent_median(run):
    assert vr.stats(vr.step_comparisons(run, ops="compiled"))["median_abs_error"] <= 0.10

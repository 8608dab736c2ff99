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
    """GEMMs of at least 100 µs (the ~10 µs fixed cost of a kernel is under a tenth of them), less the row
    each run's GEMV streaming rate was read from."""
    return [c for c in gemms(run) if c.measured_s >= 100e-6 and c.bound == bound and c.label != vr.GEMV_CALIBRATION_ROW]


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
def test_long_memory_bound_gemms_are_within_nine_percent_median(run):
    """At the GEMV rate measured on one 1 GB row of the same run (reached: H100 4.8%, H200 7.7%)."""
    s = vr.stats(long_gemms(run, "memory"))
    assert s["rows"] >= 10
    assert s["median_abs_error"] <= 0.09 and s["max_abs_error"] <= 0.20


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
def test_the_gemm_time_of_each_profiled_step_is_within_ten_percent(run):
    rows = [c for c in classes(run) if c.bound == "gemm"]
    assert len(rows) == 4
    assert all(abs(c.error) <= 0.10 for c in rows), [(c.label, round(c.error, 3)) for c in rows]


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


def _ncu(metric, path="ncu_int4-g32.csv"):
    import csv

    file = resources.files("sim") / "data" / "measured" / vr.RUN / path
    lines = [line for line in file.read_text().splitlines() if line.startswith('"')]
    return [float(r["Metric Value"].replace(",", "")) for r in csv.DictReader(lines) if r["Metric Name"] == metric]


def test_the_int4_kernel_time_is_its_loads_plus_its_issue_time():
    """Nsight Compute's own duration of tinygemm at one token against the W4A16 model (no launch, no timer floor)."""
    import numpy as np

    import hwmodels as hw
    from sim.cost import time_op
    from sim.graph import Op

    durations = [d * 1e-9 for d in _ncu("Duration")]
    clock = float(np.median(_ncu("SM Frequency")))
    h100 = hw.get_device("H100-SXM")
    at_run_clock = hw.derive(h100, "H100-SXM@run-clock", set={"clock_hz": clock})
    n, k = 22016, 4096
    op = Op("gemm", "gemm", 1, np.float64(2 * n * k), np.float64(n * k / 2), np.float64(2 * (k + n)),
            gemm_mnk=(np.float64(1), np.float64(n), np.float64(k)), weight_only_bits=4)
    t = time_op(op, None, None, None, at_run_clock, hw.calibration(at_run_clock), 0.0, "flash")
    assert float(t.time_s) == pytest.approx(float(np.median(durations)), rel=0.08)
    assert 0.8 < float(t.dequant_s) / float(t.memory_s) < 1.25  # the two halves of the measured time


def test_long_int4_gemms_at_one_token_are_within_ten_percent():
    rows = [c for c in vr.weight_only_comparisons() if " 1x" in c.label and c.measured_s >= 80e-6]
    assert len(rows) >= 2
    assert all(abs(c.error) <= 0.10 for c in rows), [(c.label, round(c.error, 3)) for c in rows]


@pytest.mark.xfail(strict=True, reason="tinygemm at 8 tokens takes 1.4-1.7x its 1-token time; the model charges one "
                                       "16-row tile for both (no instruction count was measured at 8 tokens)")
def test_int4_gemms_at_eight_tokens_within_twenty_percent():
    rows = [c for c in vr.weight_only_comparisons() if " 8x" in c.label]
    assert vr.stats(rows)["median_abs_error"] <= 0.20

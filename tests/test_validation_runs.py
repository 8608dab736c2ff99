"""The step model's pieces against kernelab's own GPU runs (sim/data/measured/kernelab_*).

The bounds are the errors the model reaches today plus a small margin, so a
regression fails; what the model does not capture yet is a strict xfail that
names the cause."""

import json
from functools import cache
from importlib import resources

import pytest

import hwmodels as hw
from sim import step as steps
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
@pytest.mark.xfail(strict=True, reason="attention: inside the profiled steps FA2 prefill runs at 140-190 TFLOP/s, "
                                       "below the 206 it reaches alone at the same grid (modelled: the standalone "
                                       "grid), and split-KV's fixed costs at short contexts are under-counted")
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


@pytest.mark.parametrize("run", [
    "kernelab_h100_2026-11-25",
    pytest.param("kernelab_h200_2026-11-25", marks=pytest.mark.xfail(
        strict=True, reason="H200: -14% median; its decode steps inherit the attention misses above and the GEMV "
                            "ramp-up, which its faster HBM makes a larger part of each step")),
])
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


# --- mixture of experts (sim/data/measured/moe/) ----------------------------------

MOE_RUNS = pytest.mark.parametrize("run", sorted(vr.MOE_RUNS))


@cache
def moe_gemms(run):
    return vr.moe_gemm_comparisons(run)


def test_the_moe_runs_are_of_both_hopper_cards():
    assert sorted(vr.MOE_RUNS.values()) == ["H100-SXM", "H200"]


@MOE_RUNS
def test_random_routing_touches_as_many_experts_as_uniform_routing_expects(run):
    """The step model's E (1 - (1 - k/E)^M) against the experts the run's router actually chose, a mean over 16
    layers: at 4 tokens one layer's count has a standard deviation of about 0.8, its 16-layer mean about 0.2."""
    rows = vr._moe_csv("moe_step.csv", run)
    assert len(rows) == 8
    for r in rows:
        assert float(r["touched_experts_mean"]) == pytest.approx(vr.expected_touched_experts(r), abs=0.5)


@MOE_RUNS
def test_every_moe_row_is_compared(run):
    assert len(moe_gemms(run)) == len(vr._moe_csv("moe_gemm.csv", run)) == 28
    assert len(vr.moe_step_comparisons(run)) == 8
    assert len(vr.moe_expert_comparisons(run)) == 2


@MOE_RUNS
def test_grouped_expert_gemms_from_4_to_1024_rows_per_expert_are_within_twelve_percent(run):
    """At the grouped streaming rate read from one row of the same run (excluded), and the dense compute rate."""
    rows = [c for c in moe_gemms(run) if " grouped " in c.label and c.label != vr.GROUPED_CALIBRATION_ROW
            and 4 <= int(c.label.split()[-1].split("x")[1]) <= 1024]
    assert len(rows) == 9
    assert all(abs(c.error) <= 0.12 for c in rows), [(c.label, round(c.error, 3)) for c in rows]


def test_the_grouped_gemm_streams_slower_than_cublas_on_the_h200_and_the_model_says_so():
    """Eight experts' gate+up weights in one grouped launch take longer than eight times one expert through cuBLAS
    on the H200, and the model's grouped rate (read off the run) is below its GEMV rate there, not on the H100."""
    import hwmodels as hw

    for run, device in vr.MOE_RUNS.items():
        dev = hw.get_device(device)
        cal = hw.calibration(dev)
        ratio = cal.achievable_grouped_gemm_bytes_per_s(dev) / cal.achievable_gemv_bytes_per_s(dev)
        assert ratio < 0.75 if device == "H200" else ratio == pytest.approx(1.0, abs=0.03)
    rows = {(r["impl"], r["shape"], r["rows_per_expert"]): float(r["time_s"])
            for r in vr._moe_csv("moe_gemm.csv", "h200_2026-11-26")}
    assert rows[("grouped", "mixtral-8x7b.w13", "16")] > 1.1 * 8 * rows[("cublas_one_expert", "mixtral-8x7b.w13", "16")]


@MOE_RUNS
def test_the_expert_gemms_of_a_decode_step_are_within_five_percent(run):
    rows = [c for c in vr.moe_expert_comparisons(run) if " decode " in c.label]
    assert len(rows) == 1 and abs(rows[0].error) <= 0.05


@MOE_RUNS
def test_moe_decode_steps_from_batch_4_are_within_twenty_two_percent_and_too_fast(run):
    rows = [c for c in vr.moe_step_comparisons(run) if " decode " in c.label and " batch 1 " not in c.label]
    assert len(rows) == 4
    assert all(-0.22 <= c.error < 0 for c in rows), [(c.label, round(c.error, 3)) for c in rows]


@MOE_RUNS
def test_uneven_groups_cost_more_than_even_ones_and_the_model_says_so(run):
    """Routed tokens split unevenly over the experts; each group is padded to whole tiles on its own. Measured:
    from 512 tokens on, the routed groups take longer than the same rows split evenly; the model's
    binomial tile count (sim.cost.expected_group_tiles) never predicts less time for them, and more where the
    extra tiles add a wave (2048 tokens)."""
    comparisons = {c.label.split(" (")[0]: c for c in vr.moe_routed_comparisons(run)}
    assert len(comparisons) == 16
    for shape in ("w13", "w2"):
        for tokens in (512, 2048, 8192):
            routed = comparisons[f"mixtral-8x7b.{shape} routed {tokens} tokens"]
            even = comparisons[f"mixtral-8x7b.{shape} even {tokens} tokens"]
            assert routed.measured_s > 1.03 * even.measured_s
            assert routed.predicted_s >= even.predicted_s
        assert (comparisons[f"mixtral-8x7b.{shape} routed 2048 tokens"].predicted_s
                > 1.05 * comparisons[f"mixtral-8x7b.{shape} even 2048 tokens"].predicted_s)


@MOE_RUNS
def test_routed_grouped_gemms_that_are_compute_bound_are_within_twenty_five_percent(run):
    rows = [c for c in vr.moe_routed_comparisons(run) if " routed " in c.label and c.bound == "compute"]
    assert len(rows) == 4
    assert all(-0.25 <= c.error < 0 for c in rows), [(c.label, round(c.error, 3)) for c in rows]


@MOE_RUNS
def test_the_expert_gemms_of_a_prefill_step_are_within_twenty_percent_and_too_fast(run):
    """With the uneven groups' tiles counted (without them: -22% on the H200, -28% on the H100)."""
    rows = [c for c in vr.moe_expert_comparisons(run) if " prefill " in c.label]
    assert len(rows) == 1 and -0.20 <= rows[0].error < 0


@MOE_RUNS
@pytest.mark.xfail(strict=True, reason="the grouped kernel at 470-540 rows per expert runs 12-25% below the "
                                       "calibrated GEMM rate even with its tiles counted (routed rows above), and "
                                       "the SM clock falls under the load (1620-1740 MHz read after the prefills)")
def test_the_expert_gemms_of_a_prefill_step_are_within_ten_percent(run):
    rows = [c for c in vr.moe_expert_comparisons(run) if " prefill " in c.label]
    assert all(abs(c.error) <= 0.10 for c in rows)


@MOE_RUNS
def test_compiling_the_moe_layer_brings_the_measured_steps_toward_the_model(run):
    """torch.compile fuses the MoE layer's elementwise ops: every step is faster than eager, and the decode steps
    of 16 and 64 sequences come within 10%."""
    eager = {c.label: c for c in vr.moe_step_comparisons(run)}
    compiled = vr.moe_step_comparisons(run, ops="compiled")
    assert len(compiled) == 5
    for c in compiled:
        assert c.measured_s < eager[c.label].measured_s
    assert all(abs(c.error) <= 0.10 for c in compiled if " decode " in c.label and " batch 1 " not in c.label)


@MOE_RUNS
@pytest.mark.xfail(strict=True, reason="the run's MoE layer is eager PyTorch (SiLU and mul, the weighting and the "
                                       "scatter-add each a kernel of their own, the scatter by atomic adds, RoPE "
                                       "unfused) where the model costs fused kernels, as for the eager Llama steps; "
                                       "the prefill expert GEMMs above; one row per expert is slower than the "
                                       "grouped rate read at 16")
def test_whole_moe_steps_are_within_ten_percent_median(run):
    assert vr.stats(vr.moe_step_comparisons(run))["median_abs_error"] <= 0.10


# --- prefill attention at the steps' grids (sim/data/measured/prefill_grid/) -------------------


@pytest.mark.parametrize("grid_run", vr.PREFILL_GRID_RUNS)
def test_the_fa2_model_times_prefills_at_step_grids_within_twenty_two_percent(grid_run):
    """FlashAttention-2's grid list-scheduled (sim.attention.fa2_grid): every call of 2k-16k tokens, causal or not,
    at one to 16 sequences, on both cards. Mostly too fast (the analytic kernel has no per-CTA fixed cost); one
    sequence's causal call too slow by 7-8% (the list bound starts the last CTA after all the rest)."""
    rows = vr.prefill_grid_comparisons("flash", run=grid_run)
    assert len(rows) == 16
    assert all(abs(c.error) <= 0.22 for c in rows), [(c.label, round(c.error, 3)) for c in rows]
    s = vr.stats(rows)
    assert s["median_abs_error"] <= 0.14 and s["median_error"] < 0


def test_the_causal_tail_is_what_one_sequence_loses():
    """Measured: one 32-head 2048-token sequence runs its causal attention at under 75% of the rate 16 sequences
    reach; the model's grid efficiency falls the same way."""
    import csv

    from sim.attention import fa2_grid

    path = vr.PREFILL_GRID / "h100_2026-11-26" / "attention_prefill_grid.csv"
    rate = {(int(r["batch"]), r["causal"]): float(r["flops_per_s"]) for r in csv.DictReader(path.open())
            if r["backend"] == "flash" and r["q_layout"] == "bhsd" and r["heads"] == "32" and r["seqlen"] == "2048"}
    assert rate[(1, "1")] < 0.75 * rate[(16, "1")]
    h100 = hw.get_device("H100-SXM")
    one, sixteen = (float(fa2_grid(steps.prefill(b, 2048), 32, 128, h100)[0]) for b in (1, 16))
    assert one < 0.75 * sixteen


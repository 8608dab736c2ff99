"""The kernel simulator against kernelab's own H100 SXM run (sim.kernel.validation).

The bounds are the errors the model reaches (python -m sim.kernel.validation) plus a small margin;
no row of the run sets any parameter, so every row is held out.
"""

from collections import defaultdict

import numpy as np
import pytest

import hwmodels as hw
from hwmodels.calibration import calibration
from sim.kernel.program import LOAD
from sim.kernel.schedules import AttentionProblem, split_kv
from sim.kernel.schedules.run import build_schedule, simulate_schedule
from sim.kernel import validation as v

H100 = hw.get_device("H100-SXM")


@pytest.fixture(scope="module")
def rows():
    return v.table()


@pytest.fixture(scope="module")
def stats(rows):
    return v.summary(rows)


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_every_flash_row_is_simulated_and_none_is_used_for_calibration(rows, stats):
    assert {r["family"] for r in rows} == {"decode", "prefill"}
    assert stats["decode"]["all"]["rows"] == 68 and stats["prefill"]["all"]["rows"] == 24
    assert v.CALIBRATION_ROWS == ()
    for fam in stats:
        assert stats[fam]["held_out"] == stats[fam]["all"]
    assert all(r["measured_s"] > 0 and r["predicted_s"] > 0 for r in rows)


# reached: decode median 1.4%, max 52.9%; prefill median 4.9%, max 31.7%
@pytest.mark.parametrize("family,median,worst", [("decode", 0.03, 0.55), ("prefill", 0.07, 0.34)])
def test_errors_within_what_the_model_reaches(stats, family, median, worst):
    s = stats[family]["held_out"]
    assert s["median_abs_error"] <= median
    assert s["max_abs_error"] <= worst


def test_prefill_meets_the_target(stats):
    s = stats["prefill"]["all"]
    assert s["median_abs_error"] <= 0.15 and s["max_abs_error"] <= 0.35


@pytest.mark.xfail(strict=True, reason=(
    "decode max |error| is 53%: the smallest calls (<= 16.8 MB of KV: batch 1-4 at 1k-4k context) are "
    "predicted 20-53% fast, about 5-9 us short. cuDNN's kernel shows the same floor on these rows "
    "(19.8 us for the 4 MB call), so it is not FlashAttention-2's: the harness state after the 256 MiB "
    "flush (more dirty-L2 write-back than the evicted lines) or loaded latencies above the idle "
    "pointer-chase figures are the candidates; neither is modelled from a measurement yet"))
def test_decode_meets_the_target(stats):
    s = stats["decode"]["all"]
    assert s["median_abs_error"] <= 0.15 and s["max_abs_error"] <= 0.35


def test_decode_at_long_context_and_large_batch_is_within_five_percent(rows):
    for r in rows:
        p = r["id"].split()
        if r["family"] == "decode" and (int(p[-1][1:]) >= 65536 or p[1] in ("b16", "b64")):
            assert abs(r["error"]) <= 0.10, r
            if int(p[-1][1:]) >= 131072:
                assert abs(r["error"]) <= 0.05, r


def test_decode_time_grows_with_context_in_both(rows):
    groups = defaultdict(list)
    for r in rows:
        if r["family"] == "decode":
            *head, ctx = r["id"].split()
            groups[" ".join(head)].append((int(ctx[1:]), r["measured_s"], r["predicted_s"]))
    assert len(groups) == 12
    for g in groups.values():
        g.sort()
        assert all(b[1] > a[1] and b[2] > a[2] for a, b in zip(g, g[1:]))


def test_decode_calls_of_4_gb_stream_above_the_triad_figure_in_both(rows):
    """Split-KV calls moving >= 4 GB: measured 3.07-3.11 TB/s (the unsplit 128-row kernel is tensor-bound
    near 2.7 TB/s); the triad figure is 2.97 TB/s, the read-only one 3.18."""
    triad = calibration(H100).achievable_hbm_bytes_per_s(H100)
    read = calibration(H100).achievable_hbm_read_bytes_per_s(H100)
    cases = {c["id"]: c for c in v.cases()}
    n = 0
    for r in rows:
        p = cases[r["id"]]["problem"]
        if r["family"] == "decode" and p.min_bytes >= 4e9 and split_kv.plan(p, H100)["splits"] > 1:
            assert triad < p.min_bytes / r["measured_s"] < read
            assert triad < p.min_bytes / r["predicted_s"] < read
            n += 1
    assert n == 15


@pytest.mark.parametrize("heads,kv_heads", [(32, 8), (32, 32)])
def test_split_kv_beats_a_single_split_fa2_at_batch_1_long_context(heads, kv_heads):
    p = AttentionProblem(1, heads, kv_heads, 128, 131072)
    split = simulate_schedule("split-kv", p, H100)[0].seconds
    one = simulate_schedule("split-kv", p, H100, splits=1)[0].seconds
    fa2 = simulate_schedule("flash", p, H100)[0].seconds
    assert split * 4 < one and split * 4 < fa2  # 8 or 32 CTAs on 132 SMs, against a full wave


def test_prefill_orderings_match_the_measurements(rows):
    """hd128 reaches more FLOP/s than hd64, causal less than non-causal, all below 2/3 of cuBLAS (mma.sync)."""
    cases = {c["id"]: c for c in v.cases()}
    rate = {}
    for r in rows:
        if r["family"] == "prefill":
            f = cases[r["id"]]["problem"].flops
            rate[r["id"]] = (f / r["measured_s"], f / r["predicted_s"])
    cap = calibration(H100).mma_sync_fraction * calibration(H100).achievable_flops_per_s(H100, "bf16")
    for key, (m, p) in rate.items():
        assert m < cap and p < cap
        if " d64 " in key:
            b, h, _, L = key.split()[1:5]
            other = f"prefill {b} h16 d128 {L}{' causal' if key.endswith('causal') else ''}"
            assert rate[other][0] > m and rate[other][1] > p
        if not key.endswith("causal"):
            assert rate[key + " causal"][0] < m and rate[key + " causal"][1] < p


def test_dirty_l2_adds_the_evicted_bytes_to_the_first_kernel_only():
    sched = build_schedule("split-kv", AttentionProblem(1, 32, 8, 128, 4096), H100)
    prog = sched.program
    dirty = v.with_dirty_l2(prog, H100.l2_bytes)
    first = slice(prog.cta_ptr[prog.kernel_ptr[0]], prog.cta_ptr[prog.kernel_ptr[1]])
    hbm = lambda p: p.amount * (1 - p.l2_hit) * (p.kind == LOAD)  # noqa: E731
    before, after = hbm(prog), hbm(dirty)
    assert after[first].sum() == pytest.approx(before[first].sum() + min(before[first].sum(), H100.l2_bytes))
    rest = slice(prog.cta_ptr[prog.kernel_ptr[1]], None)
    assert np.array_equal(after[rest], before[rest])
    l2 = lambda p: p.amount * p.l2_hit * (p.kind == LOAD)  # noqa: E731
    assert np.allclose(l2(dirty), l2(prog))


def test_launch_gap_is_the_measured_graph_replay_row():
    assert v.measured_launch_s() == pytest.approx(0.99e-6, rel=0.01)


H200_RUN = "kernelab_h200_2026-11-25"


@pytest.fixture(scope="module")
def h200_rows():
    return v.table(run=H200_RUN)


# reached on H200, a card no parameter of the engine was looked at for: decode median 5.6%, prefill 4.4%
@pytest.mark.parametrize("family,median,worst", [("decode", 0.08, 0.57), ("prefill", 0.07, 0.35)])
def test_h200_errors_within_what_the_model_reaches(h200_rows, family, median, worst):
    s = v.summary(h200_rows)[family]["all"]
    assert s["rows"] == (68 if family == "decode" else 24)
    assert s["median_abs_error"] <= median and s["max_abs_error"] <= worst


def test_h200_decode_with_more_than_17_mb_of_kv_is_within_seven_percent_median(h200_rows):
    """Reached: median 5.4%, max 21.5% (batch 16, 8 KV heads, 1k context: 34 MB); all too fast."""
    big = [r for r in h200_rows if r["family"] == "decode" and _kv_bytes(r["id"]) > 17e6]
    assert len(big) >= 55
    errors = [abs(r["error"]) for r in big]
    assert float(np.median(errors)) <= 0.07 and max(errors) <= 0.25


def _kv_bytes(row_id: str) -> float:
    # "decode b{B} h{H}/{HKV} d{D} s{S}"
    _, b, h, d, s = row_id.split()
    hkv = int(h.split("/")[1])
    return 2.0 * int(b[1:]) * hkv * int(d[1:]) * int(s[1:]) * 2

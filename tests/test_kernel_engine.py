"""Claims about the cycle-level kernel engine (sim.kernel): closed forms, bounds, order, errors."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwmodels as hw
from hwmodels.errors import InvalidValueError
from sim.kernel import DeadlockError, ProgramBuilder, delay, fma, load, mma, occupancy, rates, signal, simulate, store, wait

DEVICES = ["A100-SXM-80GB", "H100-SXM", "L40S"]
REL = 1e-9


@pytest.fixture(params=DEVICES)
def dev(request):
    return hw.get_device(request.param)


def one_kernel(n, phases, threads=128, regs=64, smem=0):
    b = ProgramBuilder()
    b.kernel("k", threads=threads, regs=regs, smem=smem).ctas(n, phases)
    return b.build()


def test_single_cta_time_is_the_sum_of_its_phases_closed_forms(dev):
    r = rates(dev, launch=0.0)
    L, F, G, S, H = 3e6, 5e9, 2e7, 1e6, 0.25
    prog = one_kernel(1, [load(L), mma(F, "bf16"), fma(G), load(L, l2_hit_fraction=H), store(S)])
    res = simulate(prog, dev, launch=0.0)
    expect = (
        L / r.hbm_bytes_per_cycle
        + F / r.tensor_flops_per_cycle_per_sm["bf16"]
        + G / r.cuda_flops_per_cycle_per_sm
        + max((1 - H) * L / r.hbm_bytes_per_cycle, H * L / r.l2_bytes_per_cycle)  # both parts at once
        + S / r.hbm_bytes_per_cycle
    )
    assert res.cycles == pytest.approx(expect, rel=REL)
    assert res.seconds == pytest.approx(expect / dev.clock_hz, rel=REL)
    assert res.events == 5
    cal = hw.calibration(dev)
    assert r.tensor_flops_per_cycle_per_sm["bf16"] == pytest.approx(
        dev.peak("bf16") * cal.gemm_fraction["bf16"] / dev.sm_count / dev.clock_hz)
    # the launch overhead comes before the kernel
    launched = simulate(prog, dev, launch="kernel")
    assert launched.cycles == pytest.approx(expect + cal.kernel_launch_s * dev.clock_hz, rel=REL)


def test_littles_law_cap_limits_one_cta(dev):
    cal = hw.calibration(dev)
    inflight = 32 * 1024
    res = simulate(one_kernel(1, [load(1e6)]), dev, launch=0.0, load_bytes_in_flight=inflight)
    assert res.cycles == pytest.approx(1e6 / (inflight / cal.dram_latency_cycles), rel=REL)


@pytest.mark.parametrize("fill", [1.0, 0.37])
def test_identical_memory_bound_ctas_in_one_wave_take_bytes_over_bandwidth(dev, fill):
    prog0 = one_kernel(1, [load(1.0)], regs=64)
    occ = occupancy(dev, 128, 64).ctas_per_sm
    n = max(1, int(dev.sm_count * occ * fill))
    nbytes = 2.5e6
    res = simulate(one_kernel(n, [load(nbytes)]), dev, launch=0.0)
    assert res.cycles == pytest.approx(n * nbytes / rates(dev, launch=0.0).hbm_bytes_per_cycle, rel=REL)
    assert res.achieved_hbm_bytes_per_s == pytest.approx(hw.calibration(dev).achievable_hbm_read_bytes_per_s(dev), rel=REL)
    assert res.tail_fraction == 0.0
    assert prog0.n_ctas == 1


def roofline_cycles(prog, dev):
    r = rates(dev, launch=0.0)
    c = prog.cost()
    mma_cycles = sum(
        prog.amount[(prog.kind == 1) & (prog.dtype == hw.DTYPES.index(d))].sum() / r.tensor_flops_per_cycle_per_sm[d]
        for d in r.tensor_flops_per_cycle_per_sm
    )
    return max(
        (c["hbm_load_bytes"] + c["store_bytes"]) / r.hbm_bytes_per_cycle,
        c["l2_load_bytes"] / r.l2_bytes_per_cycle,
        mma_cycles / dev.sm_count,
        c["fma_flops"] / r.cuda_flops_per_cycle_per_sm / dev.sm_count,
    )


amounts = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_subnormal=False)  # a subnormal amount underflows to 0 cycles
phase = st.one_of(
    st.builds(load, amounts, st.sampled_from([0.0, 0.5, 1.0])),
    st.builds(mma, amounts.map(lambda x: x * 1e3), st.sampled_from(["bf16", "fp16", "fp32"])),
    st.builds(fma, amounts),
    st.builds(store, amounts),
)
kernel = st.tuples(
    st.lists(st.tuples(st.integers(0, 400), st.lists(phase, min_size=1, max_size=4)), min_size=1, max_size=3),
    st.sampled_from([(128, 128, 64 * 1024), (256, 64, 0), (64, 255, 16 * 1024), (512, 32, 90 * 1024)]),
)
programs = st.lists(kernel, min_size=1, max_size=2)


def build(spec):
    b = ProgramBuilder()
    for i, (groups, (threads, regs, smem)) in enumerate(spec):
        k = b.kernel(f"k{i}", threads=threads, regs=regs, smem=smem)
        for n, phases in groups:
            k.ctas(n, phases)
    return b.build()


@pytest.mark.parametrize("name", DEVICES)
@settings(max_examples=25, deadline=None)
@given(spec=programs)
def test_no_result_beats_the_roofline_bound(name, spec):
    dev = hw.get_device(name)
    prog = build(spec)
    res = simulate(prog, dev, launch=0.0)
    assert res.cycles >= roofline_cycles(prog, dev) * (1 - REL)
    assert np.all(res.cta_end >= res.cta_start)
    assert res.events == prog.n_phases


@pytest.mark.parametrize("name", DEVICES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_grid_that_fits_in_one_wave_has_no_tail(name, data):
    dev = hw.get_device(name)
    occ = occupancy(dev, 256, 64).ctas_per_sm
    n = data.draw(st.integers(1, dev.sm_count * occ))
    phases = data.draw(st.lists(phase, min_size=1, max_size=3))
    sizes = data.draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n))
    scaled = [p._replace(amount=p.amount * np.asarray(sizes)) for p in phases]  # uneven CTAs
    res = simulate(one_kernel(n, scaled, threads=256, regs=64), dev, launch=0.0)
    assert res.tail_fraction == 0.0
    assert np.all(res.cta_start == 0.0)


def test_wave_quantization_133_ctas_on_132_sms_take_two_waves():
    dev = hw.get_device("H100-SXM")
    smem = 200 * 1024  # one CTA per SM
    assert occupancy(dev, 128, 128, smem).ctas_per_sm == 1
    one = simulate(one_kernel(1, [mma(1e9)], regs=128, smem=smem), dev, launch=0.0).cycles
    full = simulate(one_kernel(132, [mma(1e9)], regs=128, smem=smem), dev, launch=0.0)
    res = simulate(one_kernel(133, [mma(1e9)], regs=128, smem=smem), dev, launch=0.0)
    assert full.cycles == pytest.approx(one, rel=REL) and full.tail_fraction == 0.0
    assert res.cycles == pytest.approx(2 * one, rel=REL)
    assert res.tail_fraction == pytest.approx(0.5, rel=REL)
    assert res.cta_sm[132] == 0 and res.cta_start[132] == pytest.approx(one, rel=REL)
    t, busy = res.utilisation()
    assert list(busy) == [132, 1, 0]
    assert res.mean_sm_utilisation == pytest.approx(133 / 264, rel=REL)


def monotone_spec():
    return st.lists(
        st.tuples(st.lists(st.tuples(st.integers(1, 600), st.lists(phase, min_size=1, max_size=3)), min_size=1, max_size=1),
                  st.sampled_from([(128, 128, 64 * 1024), (256, 64, 0)])),
        min_size=1, max_size=2,
    )


@pytest.mark.parametrize("name", DEVICES)
@pytest.mark.parametrize("scale", [{"sm_count": 2}, {"hbm_bytes_per_s": 2}])
@settings(max_examples=20, deadline=None, derandomize=True)
@given(spec=monotone_spec())
def test_more_sms_or_more_bandwidth_never_slow_a_kernel_down(name, scale, spec):
    """Grids of identical CTAs (one phase list per kernel): the scaled device is never slower.

    Checked on a fixed sample (derandomized): the property does NOT hold in general for this
    engine, see the strict xfail below, so a random search would make the suite flaky.

    Not claimed for uneven CTAs: greedy dispatch in launch order has Graham's list-scheduling
    anomalies (R. L. Graham, "Bounds on multiprocessing timing anomalies", 1969). Random grids of
    1-800 uneven CTAs ran up to ~1% slower with 2x SMs at 1 CTA/SM, and up to ~10% slower with 2x
    bandwidth when several CTAs share an SM's pipes (earlier loads bunch CTAs onto the tensor pipe).
    """
    dev = hw.get_device(name)
    bigger = hw.derive(dev, scale=scale)
    prog = build(spec)
    assert simulate(prog, bigger, launch=0.0).cycles <= simulate(prog, dev, launch=0.0).cycles * (1 + REL)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known engine limit: a CTA's phases run in series, so identical CTAs alone on their SMs move in "
        "lockstep (all compute, then all load, then all store) while co-resident CTAs drift apart and "
        "overlap; doubling the SMs then makes this grid 0.2% slower. Serial is what stages=1 means; with "
        "stages=2 the same grid passes (test_doubling_the_sms_with_two_stages_is_faster)."
    ),
)
def test_doubling_the_sms_never_slows_identical_ctas_that_share_sms_today():
    dev = hw.get_device("H100-SXM")
    prog = build([([(177, [fma(5.0), load(1.0, 1.0), store(1.0)])], (128, 128, 65536))])
    bigger = hw.derive(dev, scale={"sm_count": 2})
    assert simulate(prog, bigger, launch=0.0).cycles <= simulate(prog, dev, launch=0.0).cycles * (1 + REL)


def split_k(splits, dev_sms, with_flags=True):
    b = ProgramBuilder()
    flags = b.flags(1)
    partial = [load(4e6), mma(2e9), store(1e5)] + ([signal(flags[0])] if with_flags else [])
    b.kernel("gemm_splitk", threads=128, regs=128, smem=64 * 1024).ctas(splits, partial)
    red = b.kernel("reduce", threads=128, regs=32)
    red.cta().wait(flags[0], splits).load_hbm(1e5 * splits).fma(1e5 * splits).store(1e5)
    return b.build()


def test_split_k_reduction_kernel_adds_the_launch_overhead(dev):
    prog = split_k(64, dev.sm_count)
    no_launch = simulate(prog, dev, launch=0.0)
    launched = simulate(prog, dev, launch="kernel")
    launch_cycles = hw.calibration(dev).kernel_launch_s * dev.clock_hz
    assert launched.cycles == pytest.approx(no_launch.cycles + 2 * launch_cycles, rel=REL)
    assert launched.kernel_start[1] - launched.kernel_end[0] == pytest.approx(launch_cycles, rel=REL)
    assert launched.kernel_names == ("gemm_splitk", "reduce")
    graph = simulate(prog, dev, launch="graph")
    assert graph.cycles < launched.cycles
    # the reduction alone, run as its own program, costs what it adds
    b = ProgramBuilder()
    b.kernel("reduce", threads=128, regs=32).cta().load_hbm(1e5 * 64).fma(1e5 * 64).store(1e5)
    alone = simulate(b.build(), dev, launch=0.0).cycles
    assert no_launch.kernel_end[1] - no_launch.kernel_start[1] == pytest.approx(alone, rel=REL)


def test_signal_wait_orders_two_ctas(dev):
    b = ProgramBuilder()
    f = int(b.flags(1)[0])
    k = b.kernel("k", threads=128, regs=64)
    k.cta().wait(f).mma(1e8)        # CTA 0 launched first, but waits
    k.cta().mma(3e8).signal(f)      # CTA 1 signals when done
    res = simulate(b.build(), dev, launch=0.0)
    r = rates(dev, launch=0.0).tensor_flops_per_cycle_per_sm["bf16"]
    assert res.cta_sm[0] != res.cta_sm[1]
    assert res.cta_end[1] == pytest.approx(3e8 / r, rel=REL)
    assert res.cta_end[0] == pytest.approx(4e8 / r, rel=REL)


def test_a_wait_never_signalled_is_refused(dev):
    b = ProgramBuilder()
    b.kernel("k", threads=128, regs=64).cta().wait(flag=3, count=2)
    with pytest.raises(DeadlockError, match="flag 3 to reach 2"):
        simulate(b.build(), dev, launch=0.0)


def test_a_wait_whose_signaller_cannot_become_resident_deadlocks(dev):
    smem = int(dev.smem_per_sm_bytes) - 4096  # one CTA per SM
    b = ProgramBuilder()
    f = int(b.flags(1)[0])
    k = b.kernel("k", threads=128, regs=64, smem=smem)
    k.ctas(dev.sm_count, [wait(f), load(1e3)])   # fill every slot with waiters
    k.ctas(1, [signal(f, dev.sm_count)])          # the signaller comes last
    with pytest.raises(DeadlockError, match="cannot become resident"):
        simulate(b.build(), dev, launch=0.0)
    # a signal from a later kernel can never release a wait in an earlier one
    b = ProgramBuilder()
    b.kernel("first", threads=128, regs=64).cta().wait(0)
    b.kernel("second", threads=128, regs=64).cta().signal(0)
    with pytest.raises(DeadlockError, match="kernel 'first'"):
        simulate(b.build(), dev, launch=0.0)


def test_same_program_gives_an_identical_result(dev):
    rng = np.random.default_rng(7)
    n = 3000
    prog = one_kernel(n, [load(rng.uniform(1e4, 1e6, n), rng.choice([0.0, 0.5], n)), mma(rng.uniform(1e6, 1e9, n)),
                          store(1e4)], regs=128, smem=48 * 1024)
    a, b = simulate(prog, dev), simulate(prog, dev)
    for field in ("cta_sm", "cta_start", "cta_end", "kernel_start", "kernel_end"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.cycles == b.cycles and a.tail_fraction == b.tail_fraction


@pytest.mark.parametrize(
    "device, threads, regs, smem, expect, limit",
    [
        ("A100-SXM-80GB", 128, 128, 64 * 1024, 2, "shared memory"),  # (65536 + 1024) B per CTA, 167936 per SM
        ("A100-SXM-80GB", 1024, 32, 0, 2, "threads"),                # 32 warps of 64
        ("A100-SXM-80GB", 32, 16, 0, 32, "CTAs per SM"),
        ("A100-SXM-80GB", 64, 200, 0, 4, "registers"),               # 6400 regs/warp: 10 warps -> 8 (granularity 4)
        ("H100-SXM", 256, 64, 0, 4, "registers"),                    # 2048 regs/warp: 32 warps / 8
        ("H100-SXM", 128, 255, 100 * 1024, 2, "registers"),          # 8192 regs/warp: 8 warps / 4; smem also 2
        ("H100-SXM", 128, 32, 227 * 1024, 1, "shared memory"),       # the largest opt-in CTA
        ("L40S", 256, 32, 0, 6, "threads"),                          # 48 warps / 8
    ],
)
def test_occupancy_matches_hand_calculation(device, threads, regs, smem, expect, limit):
    occ = occupancy(hw.get_device(device), threads, regs, smem)
    assert occ.ctas_per_sm == expect
    assert occ.limited_by == limit


@pytest.mark.parametrize(
    "threads, regs, smem, message",
    [
        (128, 64, 300 * 1024, "shared memory per CTA exceed the 232448-byte limit"),
        (128, 64, 227 * 1024 + 1, "shared memory"),
        (2048, 16, 0, "threads per CTA exceed the limit of 1024"),
        (128, 256, 0, "registers per thread exceed the limit of 255"),
        (1024, 128, 0, "exceed the 65536 registers per SM"),
    ],
)
def test_occupancy_refuses_ctas_that_cannot_fit(threads, regs, smem, message):
    with pytest.raises(hw.InvalidValueError, match=message):
        occupancy(hw.get_device("H100-SXM"), threads, regs, smem)


def test_simulate_refuses_an_impossible_kernel():
    b = ProgramBuilder()
    b.kernel("huge", threads=128, regs=64, smem=300 * 1024).ctas(4, [load(1e3)])
    with pytest.raises(hw.InvalidValueError, match="kernel 'huge'"):
        simulate(b.build(), hw.get_device("A100-SXM-80GB"))


def test_builder_rejects_bad_phases():
    b = ProgramBuilder()
    with pytest.raises(hw.InvalidValueError, match="3 values"):
        b.kernel("k", threads=32, regs=32).ctas(3, [load(np.ones(4))])
        b.build()
    b = ProgramBuilder()
    b.kernel("k", threads=32, regs=32).ctas(2, [load(-1.0)])
    with pytest.raises(hw.InvalidValueError, match="non-negative"):
        b.build()
    with pytest.raises(hw.InvalidValueError, match="unknown dtype"):
        mma(1.0, "bf17")


# ---- stages: load/compute overlap inside a CTA (KernelLaunch.stages; engine docstring "Stages")

def staged(n, phases, stages, threads=128, regs=64, smem=0):
    b = ProgramBuilder()
    b.kernel("k", threads=threads, regs=regs, smem=smem, stages=stages).ctas(n, phases)
    return b.build()


@pytest.mark.parametrize("seed", range(4))
def test_two_stages_overlap_each_load_with_the_previous_mma_closed_form(dev, seed):
    r = rates(dev, launch=0.0)
    rng = np.random.default_rng(seed)
    n = 7
    # loads and MMAs of comparable length, so some steps are load-bound and some MMA-bound
    l_cyc = rng.uniform(1e4, 1e5, n)
    m_cyc = rng.uniform(1e4, 1e5, n)
    phases = []
    for i in range(n):
        phases += [load(l_cyc[i] * r.hbm_bytes_per_cycle), mma(m_cyc[i] * r.tensor_flops_per_cycle_per_sm["bf16"])]
    closed = l_cyc[0] + sum(max(l_cyc[i], m_cyc[i - 1]) for i in range(1, n)) + m_cyc[-1]
    res = simulate(staged(1, phases, 2), dev, launch=0.0)
    assert res.cycles == pytest.approx(closed, rel=REL)
    assert res.events == 2 * n
    assert simulate(staged(1, phases, 1), dev, launch=0.0).cycles == pytest.approx(l_cyc.sum() + m_cyc.sum(), rel=REL)
    # three stages: load i may run while MMA i-2 still runs, so loads alone set the pace when they dominate
    loads_only = [load(1e6), mma(1.0)] * 3
    assert simulate(staged(1, loads_only, 3), dev, launch=0.0).cycles == pytest.approx(
        3e6 / r.hbm_bytes_per_cycle + 1.0 / r.tensor_flops_per_cycle_per_sm["bf16"], rel=REL)


def test_delays_add_in_series_and_share_nothing(dev):
    r = rates(dev, launch=0.0)
    nbytes, flops, cycles = 1e6, 4e7, 5000.0
    lone = simulate(one_kernel(1, [load(nbytes), delay(cycles), mma(flops)]), dev, launch=0.0)
    expect = nbytes / r.hbm_bytes_per_cycle + cycles + flops / r.tensor_flops_per_cycle_per_sm["bf16"]
    assert lone.cycles == pytest.approx(expect, rel=REL)
    # one CTA per SM, each only waiting: all wait at once
    many = simulate(one_kernel(dev.sm_count, [delay(cycles), delay(cycles)]), dev, launch=0.0)
    assert many.cycles == pytest.approx(2 * cycles, rel=REL)
    assert many.hbm_bytes == 0 and many.flops == 0


def test_delays_are_refused_in_pipelined_kernels():
    b = ProgramBuilder()
    b.kernel("k", threads=128, regs=64, stages=2).ctas(1, [load(1.0), delay(10.0), mma(1.0)])
    with pytest.raises(InvalidValueError, match="stages=1"):
        b.build()


def test_stages_window_and_fences(dev):
    r = rates(dev, launch=0.0)
    L, M = 1e5, 3e5  # cycles
    lb, mf = L * r.hbm_bytes_per_cycle, M * r.tensor_flops_per_cycle_per_sm["bf16"]
    # 2 stages: load 3 waits for MMA 1 (its buffer); MMA-bound: L + 3 M
    assert simulate(staged(1, [load(lb), mma(mf)] * 3, 2), dev, launch=0.0).cycles == pytest.approx(L + 3 * M, rel=REL)
    # compute before a segment's first load is group 0: the load runs beside it
    assert simulate(staged(1, [mma(mf), load(lb), mma(mf)], 2), dev, launch=0.0).cycles == pytest.approx(2 * M, rel=REL)
    # a store is a fence: nothing after it starts before it ends, nothing before it is left running
    S = 2e4
    prog = staged(1, [load(lb), mma(mf), store(S * r.hbm_bytes_per_cycle), load(lb), mma(mf)], 2)
    assert simulate(prog, dev, launch=0.0).cycles == pytest.approx(2 * (L + M) + S, rel=REL)


def test_stages_with_flags_order_two_ctas(dev):
    b = ProgramBuilder()
    f = int(b.flags(1)[0])
    k = b.kernel("k", threads=128, regs=64, stages=2)
    k.cta().wait(f).load_hbm(1e6).mma(1e8)
    k.cta().load_hbm(1e6).mma(3e8).signal(f)
    res = simulate(b.build(), dev, launch=0.0)
    r = rates(dev, launch=0.0)
    t1 = 1e6 / r.hbm_bytes_per_cycle + 3e8 / r.tensor_flops_per_cycle_per_sm["bf16"]
    assert res.cta_end[1] == pytest.approx(t1, rel=REL)
    assert res.cta_end[0] == pytest.approx(t1 + 1e6 / r.hbm_bytes_per_cycle + 1e8 / r.tensor_flops_per_cycle_per_sm["bf16"], rel=REL)
    assert res.events == 6


def pinned_programs():
    rng = np.random.default_rng(7)
    b = ProgramBuilder()
    n = 700
    b.kernel("uneven", threads=128, regs=128, smem=64 * 1024).ctas(n, [
        load(rng.uniform(1e4, 1e6, n), 0.5), mma(rng.uniform(1e7, 1e9, n)), fma(rng.uniform(1e4, 1e6, n)),
        load(rng.uniform(1e4, 1e6, n)), mma(rng.uniform(1e7, 1e9, n), "fp16"), store(rng.uniform(1e3, 1e5, n))])
    f = b.flags(1)[0]
    b.kernel("partials", threads=256, regs=64).ctas(40, [load(2e6), mma(3e9), store(1e5), signal(f)])
    b.kernel("reduce", threads=128, regs=32).cta().wait(f, 40).load_hbm(4e6, 1.0).fma(4e6).store(1e5)
    first = b.build()
    b = ProgramBuilder()
    b.kernel("k", threads=128, regs=128, smem=65536).ctas(177, [fma(5.0), load(1.0, 1.0), store(1.0)])
    return first, b.build()


@pytest.mark.parametrize("name,expect", [
    ("A100-SXM-80GB", [("0x1.a02fa23e5d022p+22", "0x1.cb2f75523079bp+30"), ("0x1.d3fdafc4f1e64p-3", "0x1.15b8c8055c8c6p+5")]),
    ("H100-SXM", [("0x1.b3c043227d6c5p+21", "0x1.f81118f3fd3ccp+29"), ("0x1.3fa807d8a8636p-3", "0x1.9cf9b137599d6p+4")]),
])
def test_one_stage_reproduces_the_serial_engine_bit_for_bit(name, expect):
    """Values pinned from the engine before stages existed (commit 6450bb8).

    The engine's HBM rate is now the read-only stream figure where one is measured (H100 SXM); these pins
    were taken at the stream (triad) rate, so they run with that calibration."""
    dev = hw.get_device(name)
    cal = dataclasses.replace(hw.calibration(dev), hbm_read_fraction=None)
    for prog, (cycles, ends) in zip(pinned_programs(), expect):
        assert all(k.stages == 1 for k in prog.kernels)
        res = simulate(prog, dev, cal=cal, launch=0.0)
        assert float(res.cycles) == float.fromhex(cycles)
        assert float(np.sum(res.cta_end)) == float.fromhex(ends)


def build_staged(spec, stages):
    b = ProgramBuilder()
    for i, (groups, (threads, regs, smem)) in enumerate(spec):
        k = b.kernel(f"k{i}", threads=threads, regs=regs, smem=smem, stages=stages)
        for n, phases in groups:
            k.ctas(n, phases)
    return b.build()


@pytest.mark.parametrize("name", DEVICES)
@settings(max_examples=25, deadline=None)
@given(spec=programs, stages=st.integers(2, 4))
def test_no_result_with_stages_beats_the_roofline_bound(name, spec, stages):
    dev = hw.get_device(name)
    prog = build_staged(spec, stages)
    res = simulate(prog, dev, launch=0.0)
    assert res.cycles >= roofline_cycles(prog, dev) * (1 - REL)
    assert res.events == prog.n_phases
    again = simulate(prog, dev, launch=0.0)
    assert again.cycles == res.cycles and np.array_equal(again.cta_end, res.cta_end, equal_nan=True)


@pytest.mark.parametrize("name", DEVICES)
@settings(max_examples=40, deadline=None, derandomize=True)
@given(phases=st.lists(phase, min_size=1, max_size=10), n=st.sampled_from([1, 7, 64]), stages=st.integers(2, 4))
def test_overlap_never_makes_a_cta_slower_than_serial(name, phases, n, stages):
    """One wave of identical CTAs, one per SM (they stay in step): more stages are never slower.

    Not claimed for grids where CTAs share an SM or differ: there a CTA's early load takes bandwidth
    from another CTA's critical load, and a random search finds grids up to ~4% slower with stages
    (the list-scheduling anomalies of test_more_sms_or_more_bandwidth_never_slow_a_kernel_down).
    """
    dev = hw.get_device(name)
    prev = None
    for s in (1, stages, stages + 1):
        prog = staged(n, phases, s, threads=1024, regs=64)  # the whole register file: one CTA per SM
        assert simulate(prog, dev, launch=0.0).kernel_occupancy[0] == 1
        c = simulate(prog, dev, launch=0.0).cycles
        if prev is not None:
            assert c <= prev * (1 + REL)
        prev = c


def test_doubling_the_sms_with_two_stages_is_faster():
    """The strict xfail's grid with stages=2: each CTA's load runs beside its own fma, so CTAs alone on
    their SMs no longer alternate HBM-idle and pipe-idle halves, and 2x SMs is ~12% faster, not slower."""
    dev = hw.get_device("H100-SXM")
    spec = [([(177, [fma(5.0), load(1.0, 1.0), store(1.0)])], (128, 128, 65536))]
    bigger = hw.derive(dev, scale={"sm_count": 2})
    for stages in (2, 3):
        prog = build_staged(spec, stages)
        assert simulate(prog, bigger, launch=0.0).cycles < simulate(prog, dev, launch=0.0).cycles * 0.9

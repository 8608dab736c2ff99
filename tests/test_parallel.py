"""Parallel layouts: the two-stream timeline, context parallelism (ring pass-KV/pass-Q,
TokenRing, LASP-2) and expert-parallel all-to-alls."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwmodels as hw
from hwmodels.errors import InvalidValueError
from sim import get_model
from sim import step as steps
from sim.cost import step_cost
from sim.parallel import expert_parallel_comms, pipeline_p2p, tensor_parallel_comms
from sim.precision import Precision
from sim.timeline import Timeline

LLAMA7 = get_model("Llama-2-7B")
H100 = hw.get_device("H100-SXM")


# ---------------------------------------------------------------------------- timeline
@st.composite
def timelines(draw):
    """Random task lists: each on compute or comm, durations over a 3-point sweep, deps on earlier tasks."""
    n = draw(st.integers(1, 12))
    tasks = []
    for i in range(n):
        stream = draw(st.sampled_from(["compute", "comm"]))
        dur = draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=3, max_size=3))
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        tasks.append((f"t{i}", stream, np.array(dur), [f"t{j}" for j in deps]))
    return tasks


def build(tasks):
    tl = Timeline()
    for name, stream, dur, deps in tasks:
        tl.add(name, stream, dur, after=deps)
    return tl


@settings(max_examples=200, deadline=None)
@given(timelines())
def test_makespan_lies_between_the_busiest_stream_and_the_sum_of_all_work(tasks):
    tl = build(tasks)
    span = tl.makespan
    total = sum(d for _, _, d, _ in tasks)
    for s in ("compute", "comm"):
        assert np.all(span >= tl.busy(s) - 1e-9)
    assert np.all(span <= total + 1e-9)
    assert np.all(tl.exposed("comm") >= -1e-9) and np.all(tl.exposed("comm") <= tl.busy("comm") + 1e-9)


@settings(max_examples=200, deadline=None)
@given(timelines())
def test_without_dependencies_across_streams_the_makespan_is_the_busiest_stream(tasks):
    streams = {name: s for name, s, _, _ in tasks}
    same_stream = [(n, s, d, [x for x in deps if streams[x] == s]) for n, s, d, deps in tasks]
    tl = build(same_stream)
    assert np.allclose(tl.makespan, np.maximum(tl.busy("compute"), tl.busy("comm")))


@settings(max_examples=100, deadline=None)
@given(timelines())
def test_a_sweep_schedules_like_its_points_one_by_one(tasks):
    span = build(tasks).makespan
    for k in range(3):
        one = build([(n, s, d[k], deps) for n, s, d, deps in tasks]).makespan
        assert float(one) == pytest.approx(float(span[k]))


def test_a_ring_overlaps_each_send_with_the_round_before_it():
    # cp rounds of compute c, each send m issued when the previous round starts
    for c, m in [(3.0, 1.0), (1.0, 3.0), (2.0, 2.0)]:
        cp, tl, deps = 5, Timeline(), []
        for r in range(cp):
            send = tl.add(f"s{r + 1}", "comm", m, after=deps) if r + 1 < cp else None
            a = tl.add(f"a{r}", "compute", c, after=deps)
            deps = [a] + ([send] if send else [])
        assert float(tl.makespan) == pytest.approx((cp - 1) * max(c, m) + c)
        assert float(tl.critical_path("compute")) == pytest.approx(cp * c)
        assert float(tl.exposed("comm")) == pytest.approx((cp - 1) * max(0.0, m - c))


def test_timeline_refuses_bad_tasks():
    tl = Timeline()
    tl.add("a", "compute", 1.0)
    with pytest.raises(InvalidValueError, match="already"):
        tl.add("a", "comm", 1.0)
    with pytest.raises(InvalidValueError, match="not added before"):
        tl.add("b", "comm", 1.0, after=["c"])
    with pytest.raises(InvalidValueError, match="unknown stream"):
        tl.add("b", "network", 1.0)
    with pytest.raises(InvalidValueError, match="non-negative"):
        tl.add("b", "comm", -1.0)


# ---------------------------------------------------------------------------- expert parallelism
MIXTRAL = get_model("Mixtral-8x7B")  # 8 experts, top-2


@pytest.mark.parametrize("ep", [2, 4, 8])
def test_expert_parallel_all_to_alls_move_each_gpus_routed_rows(ep):
    moe = MIXTRAL
    st_ = steps.prefill(4, 2048)
    dispatch, combine = expert_parallel_comms(moe, H100, st_, Precision(), ep)
    rows = 4 * 2048 / ep
    S = rows * 2 * moe.hidden_size * 2  # rows x k x hidden x bf16
    node = hw.device_node(H100, ep)
    want = hw.collective_time("all_to_all", S, node)
    for c in (dispatch, combine):
        assert float(c.message_bytes) == S and c.repeat == moe.num_layers
        assert float(c.time_s) == pytest.approx(float(want.time_s))
    # (ep-1)/ep of S leaves the GPU, at the GPU's NVLink bandwidth
    assert float(want.bandwidth_time_s) == pytest.approx((ep - 1) / ep * S / node.per_gpu_bytes_per_s)
    assert f"{(ep - 1) / ep:.4g} of S leaves" in dispatch.explain


def test_step_cost_charges_the_expert_all_to_alls():
    moe = MIXTRAL
    st_ = steps.prefill(4, 2048)
    plain = step_cost(moe, H100, st_)
    assert step_cost(moe, H100, st_, ep=1).time_s == plain.time_s
    ep8 = step_cost(moe, H100, st_, ep=8)
    names = [c.name for c in ep8.comms]
    assert names == ["ep_dispatch_all_to_all", "ep_combine_all_to_all"]
    assert float(ep8.time_by_bound()["communication"]) == pytest.approx(sum(float(c.total_s) for c in ep8.comms))
    assert float(ep8.time_s) < float(plain.time_s)  # each GPU runs an eighth of the expert rows
    with pytest.raises(InvalidValueError):
        step_cost(LLAMA7, H100, st_, ep=2)  # a dense model has no experts to spread
    with pytest.raises(InvalidValueError):
        expert_parallel_comms(LLAMA7, H100, st_, Precision(), 2)
    with pytest.raises(InvalidValueError):
        expert_parallel_comms(moe, H100, st_, Precision(), 3)  # 8 experts over 3 GPUs
    assert expert_parallel_comms(moe, H100, st_, Precision(), 1) == []


def test_tensor_parallel_and_pipeline_comms_still_work():
    st_ = steps.prefill(1, 1024)
    (ar,) = tensor_parallel_comms(LLAMA7, H100, st_, Precision(), 4)
    assert ar.repeat == 2 * LLAMA7.num_layers and float(ar.message_bytes) == 1024 * LLAMA7.hidden_size * 2
    assert tensor_parallel_comms(LLAMA7, H100, st_, Precision(), 1) == []
    p2p = pipeline_p2p(LLAMA7, H100, st_, Precision())
    assert float(p2p.time_s) > 0

"""Parallel layouts: the two-stream timeline, context parallelism (ring pass-KV/pass-Q,
TokenRing, LASP-2) and expert-parallel all-to-alls."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwmodels as hw
from hwmodels.errors import InvalidValueError, UnknownNameError
from sim import get_model
from sim import step as steps
from sim.context_parallel import context_parallel_cost
from sim.cost import step_cost
from sim.parallel import expert_parallel_comms, pipeline_p2p, tensor_parallel_comms
from sim.precision import Precision
from sim.timeline import Timeline

LLAMA7 = get_model("Llama-2-7B")
H100 = hw.get_device("H100-SXM")
SOFTMAX_METHODS = ("pass-kv", "pass-q", "tokenring")


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


# ---------------------------------------------------------------------------- context parallelism
def test_one_gpu_is_the_single_gpu_prefill():
    for prefix in (0, 8192):
        st_ = steps.prefill(2, 4096, prefix)
        for tp in (1, 2):
            base = float(step_cost(LLAMA7, H100, st_, tp=tp).time_s)
            for method in SOFTMAX_METHODS + ("auto",):
                cost = context_parallel_cost(LLAMA7, H100, st_, 1, method, tp=tp)
                assert float(cost.time_s) == pytest.approx(base, rel=1e-12)
                assert float(cost.overlapped_communication_s) == pytest.approx(0.0, abs=1e-15)


def _merge_s(cost, method):
    return next(float(o.time_s) for name, o, _ in cost.parts[method].compute if name == "lse_merge")


def _outside_attention_s(cost):
    """Per-layer ops before and after attention (tp=1: no all-reduce)."""
    L = cost.model.num_layers
    return sum(float(o.time_s) for o in cost.local.ops if o.op.repeat == L and o.op.kind != "attention")


@pytest.mark.parametrize("tokens,prefix", [(32768, 0), (8192, 65536), (2048, 0)])
def test_pass_kv_rounds_take_the_longer_of_compute_and_transfer(tokens, prefix):
    cp = 8
    cost = context_parallel_cost(LLAMA7, H100, steps.prefill(1, tokens, prefix), cp, "pass-kv")
    c, m = [float(x) for x in cost.round_compute_s], float(cost.round_comm_s[0])
    assert all(float(x) == pytest.approx(m) for x in cost.round_comm_s[: cp - 1]) and float(cost.round_comm_s[cp]) == 0
    # first round overlaps the first send; the last has nothing left to hide; then the final merge
    attention = max(c[0], m) + sum(max(x, m) for x in c[1:-1]) + c[-1] + _merge_s(cost, "pass-kv")
    assert float(cost.layer_time_s) == pytest.approx(_outside_attention_s(cost) + attention)
    assert float(cost.exposed_communication_s) == pytest.approx(
        LLAMA7.num_layers * sum(max(0.0, m - x) for x in c[:-1]))
    # the send is the K,V block of the GPU's share: 2 x (T+P)/cp x kv_heads x head_dim x 2 bytes
    assert float(cost.messages["kv_block"]) == 2 * (tokens + prefix) / cp * LLAMA7.num_kv_heads * LLAMA7.head_dim * 2


def test_pass_q_sends_queries_then_returns_outputs_in_one_exposed_all_to_all():
    cp, T = 8, 16384
    cost = context_parallel_cost(LLAMA7, H100, steps.prefill(1, T), cp, "pass-q")
    c, m, a2a = [float(x) for x in cost.round_compute_s], float(cost.round_comm_s[0]), float(cost.round_comm_s[cp])
    attention = max(c[0], m) + sum(max(x, m) for x in c[1:-1]) + c[-1] + a2a + _merge_s(cost, "pass-q")
    assert float(cost.layer_time_s) == pytest.approx(_outside_attention_s(cost) + attention)
    h, d = LLAMA7.num_heads, LLAMA7.head_dim
    assert float(cost.messages["q_block"]) == T / cp * h * d * 2
    assert float(cost.messages["out_block"]) == T / cp * h * (d * 2 + 4)  # bf16 output + fp32 LSE
    x = [e for e in cost.parts["pass-q"].variants[0].exchanges if e.name == "out_all_to_all"][0]
    assert float(x.message_bytes) == cp * float(cost.messages["out_block"])
    assert float(x.time_s) == pytest.approx(float(hw.collective_time("all_to_all", cp * float(cost.messages["out_block"]), hw.device_node(H100, cp)).time_s))


@pytest.mark.parametrize("method", SOFTMAX_METHODS + ("auto",))
@pytest.mark.parametrize("device", ["H100-SXM", "B200", "H200"])
def test_more_gpus_never_slow_a_long_prefill_on_nvlink(method, device):
    d = hw.get_device(device)
    for T in (32768, 131072):
        times = [float(context_parallel_cost(LLAMA7, d, steps.prefill(1, T), cp, method).time_s) for cp in (1, 2, 4, 8)]
        assert all(b <= a for a, b in zip(times, times[1:])), times
        assert times[-1] < times[0] / 4  # and it scales, not merely does not regress


def test_pass_q_wins_over_a_long_prefix_and_pass_kv_on_a_full_prefill_and_auto_picks_each():
    short_over_long = steps.prefill(1, 1024, 131072)
    kv = context_parallel_cost(LLAMA7, H100, short_over_long, 8, "pass-kv")
    q = context_parallel_cost(LLAMA7, H100, short_over_long, 8, "pass-q")
    auto = context_parallel_cost(LLAMA7, H100, short_over_long, 8, "auto")
    assert float(q.time_s) < 0.7 * float(kv.time_s)
    assert auto.method == "pass-q" and float(auto.time_s) == float(q.time_s)
    full = steps.prefill(1, 32768)
    kv = context_parallel_cost(LLAMA7, H100, full, 8, "pass-kv")
    q = context_parallel_cost(LLAMA7, H100, full, 8, "pass-q")
    auto = context_parallel_cost(LLAMA7, H100, full, 8, "auto")
    assert float(kv.time_s) < float(q.time_s)
    assert auto.method == "pass-kv" and float(auto.time_s) == float(kv.time_s)
    assert "pass-KV" in auto.as_dict()["choice_reason"]


def test_auto_follows_the_message_size_rule_with_grouped_query_attention():
    gqa = dataclasses.replace(LLAMA7, name="Llama-2-7B-GQA8", num_kv_heads=4)  # 2 kvh/h = 1/4
    d = hw.get_device("L40S")  # PCIe: slow enough that nothing is hidden
    T = np.array([2048, 2048, 2048])
    P = np.array([2048, 8192, 16384])  # T/(T+P) = 1/2, 1/5, 1/9
    cost = context_parallel_cost(gqa, d, steps.prefill(1, T, P), 4, "auto")
    assert list(cost.choice) == ["pass-kv", "pass-q", "pass-q"]
    hidden = cost.rule["kv_send_s"] <= cost.rule["round_s"]
    assert not np.any(hidden)


def test_tokenring_is_never_slower_than_one_way_pass_q_on_switched_nodes():
    for device in ("H100-SXM", "A100-SXM-80GB", "L40S", "B200"):
        d = hw.get_device(device)
        for cp in (2, 4, 8):
            T = np.array([4096, 16384, 65536])[:, None]
            P = np.array([0, 16384, 131072])[None, :]
            q = context_parallel_cost(LLAMA7, d, steps.prefill(1, T, P), cp, "pass-q")
            tr = context_parallel_cost(LLAMA7, d, steps.prefill(1, T, P), cp, "tokenring")
            assert np.all(tr.time_s <= q.time_s * (1 + 1e-12)), (device, cp)
            assert np.all(tr.exposed_communication_s <= q.exposed_communication_s * (1 + 1e-12) + 1e-15)


def test_tokenring_runs_query_and_output_flows_on_separate_links_of_a_mesh():
    d = hw.get_device("MI300X")  # full mesh: one xGMI link per pair
    cost = context_parallel_cost(LLAMA7, d, steps.prefill(1, 16384), 8, "tokenring")
    node = hw.device_node(d, 8)
    q, o = float(cost.messages["q_block"]), float(cost.messages["out_block"])
    both = [e for e in cost.parts["tokenring"].variants[0].exchanges if e.name == "exchange_3"][0]
    one_way = lambda b: float(hw.collective_time("sendrecv", b, node).time_s)  # noqa: E731
    assert float(both.time_s) == pytest.approx(max(one_way(q), one_way(o)))
    assert float(both.message_bytes) == q + o
    # on a switch the two flows share the GPU's egress
    cost = context_parallel_cost(LLAMA7, H100, steps.prefill(1, 16384), 8, "tokenring")
    both = [e for e in cost.parts["tokenring"].variants[0].exchanges if e.name == "exchange_3"][0]
    assert float(both.time_s) == pytest.approx(float(hw.collective_time("sendrecv", q + o, hw.device_node(H100, 8)).time_s))


@pytest.mark.parametrize("method", SOFTMAX_METHODS + ("auto", "lasp2"))
def test_a_sweep_equals_its_points_and_the_breakdown_adds_up(method):
    kw = {"linear_attention": True} if method == "lasp2" else {}
    T = np.array([8192, 32768])
    P = np.array([[0], [65536]])
    sweep = context_parallel_cost(LLAMA7, H100, steps.prefill(1, T, P), 8, method, **kw)
    assert sweep.time_s.shape == (2, 2)
    for j, p in enumerate(P[:, 0]):
        for i, t in enumerate(T):
            one = context_parallel_cost(LLAMA7, H100, steps.prefill(1, int(t), int(p)), 8, method, **kw)
            assert float(sweep.time_s[j, i]) == pytest.approx(float(one.time_s), rel=1e-12)
            doc = sweep.as_dict((j, i))
            assert doc == json.loads(json.dumps(doc))
            assert doc["method"] == one.as_dict()["method"]
            b = doc["breakdown"]
            parts = b["compute_s"] + b["memory_s"] + b["overhead_s"] + b["communication_s"]
            assert parts == pytest.approx(doc["time_s"])
            assert b["communication_s"] == pytest.approx(doc["exposed_communication_s"])
            assert b["overlapped_communication_s"] >= -1e-12
            assert doc["time_s"] == pytest.approx(doc["compute_only_s"] + doc["exposed_communication_s"])


def test_context_and_tensor_parallelism_combine():
    st_ = steps.prefill(1, 32768)
    cp4 = context_parallel_cost(LLAMA7, H100, st_, 4, "pass-kv")
    cp4tp2 = context_parallel_cost(LLAMA7, H100, st_, 4, "pass-kv", tp=2)
    assert float(cp4tp2.time_s) < float(cp4.time_s)
    assert float(cp4tp2.messages["kv_block"]) == float(cp4.messages["kv_block"]) / 2  # heads split by TP
    assert cp4tp2.as_dict()["gpus"] == 8
    assert cp4tp2.time_by_bound()["communication"] > 0  # the TP all-reduces stay on the critical path


def test_context_parallel_across_nodes_with_tensor_parallel_inside():
    # Llama-2-70B, 128K tokens: TP=8 on each HGX node, CP over nodes joined by one NDR NIC per GPU
    model = get_model("Llama-2-70B")
    st_ = steps.prefill(1, 131072)
    times = []
    for cp in (1, 2, 4, 8):
        topo = hw.cluster(hw.hgx_node("nvlink4", 18, n_gpus=1), cp, "ib-ndr", 1) if cp > 1 else None
        cost = context_parallel_cost(model, H100, st_, cp, "auto", tp=8, topology=topo)
        times.append(float(cost.time_s))
        if cp > 1:
            assert "ib-ndr" in cost.as_dict()["communication"][0]["explain"]
            assert cost.method == "pass-kv"  # GQA (8 of 64 heads), full prefill: the KV block is the smaller message
            assert float(cost.overlapped_communication_s) > 0  # the KV ring over the NICs hides under attention
    assert all(b < a for a, b in zip(times, times[1:]))


def test_lasp2_gathers_states_whose_size_does_not_grow_with_the_sequence():
    cp = 8
    small = context_parallel_cost(LLAMA7, H100, steps.prefill(2, 8192), cp, "lasp2", linear_attention=True)
    large = context_parallel_cost(LLAMA7, H100, steps.prefill(2, 65536), cp, "lasp2", linear_attention=True)
    kvh, d = LLAMA7.num_kv_heads, LLAMA7.head_dim
    for cost in (small, large):
        (gather,) = cost.parts["lasp2"].variants[0].exchanges
        assert float(gather.message_bytes) == cp * 2 * kvh * d * d * 4  # all-gather of fp32 d x d states, batch 2
    single = context_parallel_cost(LLAMA7, H100, steps.prefill(2, 65536), 1, "lasp2", linear_attention=True)
    assert float(single.communication_s) == 0
    assert float(large.time_s) < float(single.time_s) / 4
    # linear attention beats softmax ring attention at long context (same projections and MLP)
    assert float(large.time_s) < float(context_parallel_cost(LLAMA7, H100, steps.prefill(2, 65536), cp, "pass-kv").time_s)


def test_padding_rounds_the_chunk_up_and_counts_only_real_tokens():
    st_ = steps.prefill(1, 1000)
    with pytest.raises(InvalidValueError, match="1008"):
        context_parallel_cost(LLAMA7, H100, st_, 8)
    padded = context_parallel_cost(LLAMA7, H100, st_, 8, pad=True)
    exact = context_parallel_cost(LLAMA7, H100, steps.prefill(1, 1008), 8)
    assert float(padded.time_s) == pytest.approx(float(exact.time_s))
    assert float(padded.tokens_per_s) == pytest.approx(1000 / float(exact.time_s))
    assert padded.as_dict()["computed_tokens"] == 1008


def test_context_parallel_refuses_bad_input():
    st_ = steps.prefill(1, 4096)
    for bad in (0, -2, 1.5, True, "4"):
        with pytest.raises(InvalidValueError, match="cp"):
            context_parallel_cost(LLAMA7, H100, st_, bad)
    with pytest.raises(UnknownNameError) as err:
        context_parallel_cost(LLAMA7, H100, st_, 4, "pass-kw")
    assert "pass-kv" in err.value.suggestions
    with pytest.raises(UnknownNameError) as err:
        context_parallel_cost(LLAMA7, H100, st_, 4, "token-rin")
    assert "tokenring" in err.value.suggestions
    assert float(context_parallel_cost(LLAMA7, H100, st_, 4, "Token-Ring").time_s) > 0  # spellings normalise
    with pytest.raises(InvalidValueError, match="softmax attention.*linear_attention=True"):
        context_parallel_cost(LLAMA7, H100, st_, 4, "lasp2")
    with pytest.raises(InvalidValueError, match="lasp2"):
        context_parallel_cost(LLAMA7, H100, st_, 4, "pass-kv", linear_attention=True)
    with pytest.raises(InvalidValueError, match="prefill"):
        context_parallel_cost(LLAMA7, H100, steps.decode(1, 4096), 4)
    with pytest.raises(InvalidValueError, match="2 x cp = 8"):
        context_parallel_cost(LLAMA7, H100, steps.prefill(1, 4100), 4)
    with pytest.raises(InvalidValueError, match="contiguous"):
        context_parallel_cost(LLAMA7, H100, steps.prefill(1, 4099), 4, "lasp2", linear_attention=True)


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

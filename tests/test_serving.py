"""The request-level serving simulator: invariants of every run, schedulers, routers,
prefix caching, workloads, capacity search, and ``kernelab serve`` / ``kernelab capacity``.

Each scenario is simulated once per scheduler (``run_scenario`` caches it) and
every invariant is its own test over those runs. A few hundred requests each,
on Mistral-7B / A100-SXM-80GB unless said otherwise.
"""

import dataclasses
import json
import math
import re
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwmodels as hw
from hwmodels.errors import InvalidValueError, KernelabError, UnknownNameError
from kernelab.cli import main
from sim.memory import DoesNotFitError
from sim.serving import (SCHEDULERS, ServingConfig, Simulation, arrivals, capacity, capacity_search, from_trace,
                         get_dataset, replica_cost, shared_prefix, simulate, synthetic)
from sim.serving import engine
from sim.serving.capacity import RELATIVE_TOLERANCE
from sim.serving.metrics import percentile
from sim.serving.workload import LengthDistribution, TraceError, Z90, datasets

DEVICE, MODEL = "A100-SXM-80GB", "mistral-7b"

#: name: (workload, ServingConfig fields). The "starved" ones give Mistral-7B 21-22% of the GPU's 80 GB:
#: its 14.5 GB of weights, activations and about a thousand 16-token KV blocks, so requests are
#: preempted or (the longest arXiv ones) rejected.
SCENARIOS = {
    "chat": (lambda: synthetic("openchat_sharegpt4", 200, qps=2.0, seed=1), {}),
    "arxiv": (lambda: synthetic("arxiv_summarization", 60, qps=0.4, seed=2), {}),
    "shared-prefix": (lambda: shared_prefix(4, 32, 1000, 50, 100, qps=20.0, seed=3), {"prefix_caching": True}),
    "starved-recompute": (lambda: synthetic("openchat_sharegpt4", 200, qps=8.0, seed=4),
                          {"gpu_memory_utilization": 0.22, "preemption": "recompute"}),
    "starved-swap": (lambda: synthetic("openchat_sharegpt4", 200, qps=8.0, seed=4),
                     {"gpu_memory_utilization": 0.22, "preemption": "swap"}),
    "starved-arxiv": (lambda: synthetic("arxiv_summarization", 60, qps=2.0, seed=5), {"gpu_memory_utilization": 0.21}),
}
STARVED = ["starved-recompute", "starved-swap"]
UNPREEMPTED = ["chat", "arxiv", "shared-prefix"]


@lru_cache(maxsize=None)
def run_scenario(scenario: str, scheduler: str):
    """The Simulation (for its replicas' totals) and its result, simulated once."""
    make, fields = SCENARIOS[scenario]
    sim = Simulation(make(), replica_cost(MODEL, DEVICE), ServingConfig(scheduler=scheduler, **fields))
    return sim, sim.run()


def every(scenarios=tuple(SCENARIOS), schedulers=SCHEDULERS):
    return pytest.mark.parametrize(("scenario", "scheduler"), [(a, s) for a in scenarios for s in schedulers])


# -- invariants of every run ------------------------------------------------------------------
@every()
def test_every_request_not_rejected_finishes_with_all_its_tokens(scenario, scheduler):
    _, r = run_scenario(scenario, scheduler)
    served = ~r.rejected
    assert served.any()
    assert np.all(np.isfinite(r.finish_s[served])) and np.all(np.isnan(r.finish_s[r.rejected]))
    np.testing.assert_array_equal(r.generated_tokens[served], r.output_tokens[served])
    assert np.all(r.generated_tokens[r.rejected] == 0)
    assert r.generated_tokens.sum() == r.output_tokens[served].sum()
    assert r.summary()["completed"] + r.summary()["rejected"] == len(r.arrival_s)


@every(["chat", "shared-prefix", *STARVED], ["vllm", "sarathi", "batchllm"])
def test_every_request_finishes_exactly_once(scenario, scheduler, monkeypatch):
    finished = []
    finish = engine.Replica._finish

    def counting(self, fin, now):
        finished.extend(fin.tolist())
        finish(self, fin, now)

    monkeypatch.setattr(engine.Replica, "_finish", counting)
    make, fields = SCENARIOS[scenario]
    r = simulate(make(), DEVICE, MODEL, scheduler=scheduler, **fields)
    assert sorted(finished) == np.flatnonzero(~r.rejected).tolist()


@every()
def test_arrival_then_scheduled_then_first_token_then_finish(scenario, scheduler):
    _, r = run_scenario(scenario, scheduler)
    s = ~r.rejected
    arrival, sched, first, finish = r.arrival_s[s], r.scheduled_s[s], r.first_token_s[s], r.finish_s[s]
    assert np.all(arrival <= sched) and np.all(sched < first) and np.all(first <= finish)
    one = r.output_tokens[s] == 1
    np.testing.assert_array_equal(first[one], finish[one])
    assert np.all(first[~one] < finish[~one])


@every()
def test_each_token_after_the_first_adds_one_positive_time_between_tokens(scenario, scheduler):
    """A request that generated g tokens contributed g - 1 TBT samples (weights count a run's gaps)."""
    _, r = run_scenario(scenario, scheduler)
    served = ~r.rejected
    assert r.tbt_counts.sum() == (r.generated_tokens[served] - 1).sum()
    assert np.all(r.tbt_s > 0) and np.all(r.tbt_counts >= 1)
    # the gaps add up to first-to-last-token times: the token-weighted TBT mean is the output-weighted TPOT
    # mean, except under static batching, where a request returns with its batch, after its last token
    many = served & (r.output_tokens > 1)
    tpot = (r.finish_s - r.first_token_s)[many] / (r.output_tokens[many] - 1)
    tbt_mean, tpot_mean = np.average(r.tbt_s, weights=r.tbt_counts), np.average(tpot, weights=r.output_tokens[many] - 1)
    if scheduler == "static":
        assert tbt_mean <= tpot_mean * (1 + 1e-12)
    else:
        assert tbt_mean == pytest.approx(tpot_mean, rel=1e-9)


@every()
def test_kv_blocks_in_use_never_exceed_the_replicas_capacity(scenario, scheduler):
    _, r = run_scenario(scenario, scheduler)
    for t, used in zip(r.kv_time_s, r.kv_used_fraction):
        assert used.size == t.size > 0
        assert np.all(used >= 0) and np.all(used <= 1)
        assert np.all(np.diff(t) >= 0)


@every()
def test_a_finished_run_holds_no_blocks_but_the_prefix_cache(scenario, scheduler):
    sim, _ = run_scenario(scenario, scheduler)
    assert np.all(sim.state.blocks == 0) and not sim.state.holds_ref.any()
    for rep in sim.replicas:
        assert not (rep.waiting or rep.running or rep.swapped or rep.pending_prefix)
        assert rep.kv.used == sum(e.blocks for e in rep.kv.prefixes.values())
        assert all(e.refs == 0 for e in rep.kv.prefixes.values())


@every(UNPREEMPTED)
def test_without_preemption_every_token_is_decoded_once_and_every_prompt_prefilled_once(scenario, scheduler):
    sim, r = run_scenario(scenario, scheduler)
    assert r.preemptions.sum() == 0
    decoded = sum(rep.totals.decode_tokens for rep in sim.replicas)
    prefilled = sum(rep.totals.prefill_tokens for rep in sim.replicas)
    assert decoded == (r.generated_tokens - 1).sum()
    shares = sim.config.prefix_caching and (sim.workload.prefix_id >= 0).any()
    if shares and scheduler != "static":  # static batching ignores the prefix cache
        assert prefilled < r.prompt_tokens.sum()
    else:
        assert prefilled == r.prompt_tokens.sum()


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_decode_only_iterations_decode_no_more_tokens_than_all_iterations(scheduler):
    sim, r = run_scenario("chat", scheduler)
    assert 0 < r.decode_only_tokens <= sum(rep.totals.decode_tokens for rep in sim.replicas)


@every(["chat", "arxiv"], ["vllm", "sarathi"])
def test_vllm_and_sarathi_schedule_first_come_first_served(scenario, scheduler):
    _, r = run_scenario(scenario, scheduler)
    assert r.preemptions.sum() == 0
    assert np.all(np.diff(r.scheduled_s) >= 0)


@every(STARVED, ["vllm", "sarathi", "batchllm"])
def test_a_starved_cache_preempts_and_still_serves_everyone(scenario, scheduler):
    sim, r = run_scenario(scenario, scheduler)
    assert r.summary()["preemptions"] > 0 and r.summary()["kv_peak_fraction"] == 1.0
    assert r.summary()["completed"] == len(r.arrival_s)
    swapped = sum(rep.totals.swapped_bytes for rep in sim.replicas)
    if sim.config.preemption == "swap":  # decoding victims go over PCIe and back
        assert swapped > 0 and r.busy_s["swap"] > 0
    else:  # victims drop their KV and prefill prompt and generated tokens again
        assert swapped == 0 and r.busy_s["swap"] == 0
        assert sum(rep.totals.prefill_tokens for rep in sim.replicas) > r.prompt_tokens.sum()


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_requests_that_cannot_fit_in_the_kv_cache_are_rejected_and_the_rest_served(scheduler):
    """Rejected: exactly the requests whose prompt plus output need more than 99% of a replica's
    blocks (1% is vLLM's watermark); everyone else completes."""
    sim, r = run_scenario("starved-arxiv", scheduler)
    blocks = -(-(r.prompt_tokens + r.output_tokens) // sim.config.block_size)
    np.testing.assert_array_equal(r.rejected, blocks > 0.99 * sim.kv_blocks)
    if scheduler in ("static", "vllm"):  # their whole-prompt budget (the longest prompt) takes activation memory
        assert r.rejected.sum() > 0
    assert r.summary()["completed"] == (~r.rejected).sum()


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_the_same_seed_gives_the_same_summary_and_another_seed_another(scheduler):
    def summary(seed):
        return simulate(synthetic("openchat_sharegpt4", 150, qps=3.0, seed=seed), DEVICE, MODEL, scheduler=scheduler).summary()

    first = summary(7)
    assert summary(7) == first
    assert summary(8) != first


@every(["chat", "starved-recompute", "starved-swap", "shared-prefix"], ["vllm", "sarathi", "batchllm"])
def test_runs_of_decode_iterations_equal_the_iterations_one_at_a_time(scenario, scheduler, monkeypatch):
    """The engine runs repeated decode batches vectorized; forcing one iteration at a time changes nothing."""
    _, fast = run_scenario(scenario, scheduler)
    monkeypatch.setattr(engine.Replica, "_run_length", lambda self, decodes, chunk: 1)
    make, fields = SCENARIOS[scenario]
    slow = simulate(make(), DEVICE, MODEL, scheduler=scheduler, **fields)
    assert slow.iterations == fast.iterations
    np.testing.assert_array_equal(slow.preemptions, fast.preemptions)
    for name in ("scheduled_s", "first_token_s", "finish_s"):
        np.testing.assert_allclose(getattr(slow, name), getattr(fast, name), rtol=1e-9, equal_nan=True, err_msg=name)
    for part, seconds in fast.busy_s.items():
        assert slow.busy_s[part] == pytest.approx(seconds, rel=1e-9, abs=1e-12), part


# -- schedulers against each other ------------------------------------------------------------
def test_sarathi_keeps_the_tail_time_between_tokens_below_vllms():
    """Prefill stalls: vLLM pauses every decode for a whole prompt, Sarathi chunks prompts into the decodes."""
    vllm = run_scenario("chat", "vllm")[1].summary()["tbt_s"]
    sarathi = run_scenario("chat", "sarathi")[1].summary()["tbt_s"]
    assert sarathi["p99"] < vllm["p99"] and sarathi["max"] < vllm["max"]


# -- replicas and routers ---------------------------------------------------------------------
def routed(workload, router, replicas=3, **fields):
    sim = Simulation(workload, replica_cost(MODEL, DEVICE), ServingConfig(replicas=replicas, router=router, **fields))
    return sim, sim.run()


@pytest.mark.parametrize("router", ["round_robin", "least_loaded", "prefix_affinity"])
@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_every_router_serves_everyone_on_every_replica(router, scheduler):
    sim, r = routed(synthetic("openchat_sharegpt4", 150, qps=6.0, seed=11), router, scheduler=scheduler)
    assert r.summary()["completed"] == 150 and r.summary()["replicas"] == 3
    counts = np.bincount(sim.state.replica, minlength=3)
    assert counts.sum() == 150 and np.all(counts > 0)
    if router == "round_robin":
        assert counts.max() - counts.min() <= 1
    assert len(r.kv_time_s) == 3


def test_three_replicas_serve_a_burst_sooner_than_one():
    w = synthetic("openchat_sharegpt4", 120, qps=math.inf, seed=12)
    one = simulate(w, DEVICE, MODEL, scheduler="sarathi")
    three = simulate(w, DEVICE, MODEL, scheduler="sarathi", replicas=3, router="least_loaded")
    assert three.duration_s < one.duration_s and three.summary()["e2e_s"]["p50"] < one.summary()["e2e_s"]["p50"]


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "batchllm"])
def test_prefix_affinity_sends_each_prefix_group_to_one_replica(scheduler):
    w = shared_prefix(groups=6, group_size=12, prefix_tokens=512, suffix_tokens=32, output_tokens=16, qps=30.0, seed=13)
    sim, r = routed(w, "prefix_affinity", replicas=3, scheduler=scheduler, prefix_caching=True)
    assert r.summary()["completed"] == len(w)
    homes = [set(sim.state.replica[w.prefix_id == g].tolist()) for g in range(6)]
    assert all(len(h) == 1 for h in homes)
    assert len(set().union(*homes)) == 3  # and the groups are spread over the replicas
    # round robin splits every group instead
    sim_rr, _ = routed(w, "round_robin", replicas=3, scheduler=scheduler, prefix_caching=True)
    assert all(len(set(sim_rr.state.replica[w.prefix_id == g].tolist())) == 3 for g in range(6))


# -- prefix caching ---------------------------------------------------------------------------
def prefilled(workload, **fields):
    sim = Simulation(workload, replica_cost(MODEL, DEVICE), ServingConfig(**fields))
    r = sim.run()
    assert r.summary()["completed"] == len(workload)
    return sum(rep.totals.prefill_tokens for rep in sim.replicas), r


@pytest.mark.parametrize("qps", [math.inf, 20.0])
@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "batchllm"])
def test_prefix_caching_prefills_fewer_prompt_tokens(scheduler, qps):
    w = shared_prefix(groups=4, group_size=32, prefix_tokens=1000, suffix_tokens=50, output_tokens=100, qps=qps)
    without, _ = prefilled(w, scheduler=scheduler, prefix_caching=False)
    with_cache, _ = prefilled(w, scheduler=scheduler, prefix_caching=True)
    assert without == w.prompt_tokens.sum()
    assert with_cache < without / 5


@pytest.mark.parametrize("qps", [math.inf, 20.0])
def test_batchllm_computes_each_shared_prefix_once(qps):
    """Its members wait for the prefix; then each prefills only what is not in a whole shared block."""
    groups, size, prefix, suffix, block = 4, 32, 1000, 50, 16
    w = shared_prefix(groups=groups, group_size=size, prefix_tokens=prefix, suffix_tokens=suffix, output_tokens=100, qps=qps)
    tokens, _ = prefilled(w, scheduler="batchllm", block_size=block)
    shared = prefix // block * block
    assert tokens == groups * (prefix + suffix) + groups * (size - 1) * (prefix + suffix - shared)


def test_batchllm_decodes_faster_reading_each_shared_prefix_once():
    w = shared_prefix(groups=2, group_size=128, prefix_tokens=2048, suffix_tokens=64, output_tokens=128)
    _, plain = prefilled(w, scheduler="batchllm", shared_prefix_attention=False)
    _, shared = prefilled(w, scheduler="batchllm", shared_prefix_attention=True)
    assert plain.iterations == shared.iterations  # the same batches, only their attention cost differs
    assert shared.decode_tokens_per_s > 1.2 * plain.decode_tokens_per_s
    assert shared.duration_s < plain.duration_s


# -- workloads --------------------------------------------------------------------------------
def test_openchat_sharegpt4_lengths_reproduce_sarathi_serves_medians():
    """Sarathi-Serve Table 2: prompt median 1730, output median 415 (P90 5696 and 834)."""
    w = synthetic("openchat_sharegpt4", 20_000, seed=21)
    assert np.median(w.prompt_tokens) == pytest.approx(1730, rel=0.03)
    assert np.median(w.output_tokens) == pytest.approx(415, rel=0.03)
    assert np.percentile(w.prompt_tokens, 90) == pytest.approx(5696, rel=0.03)
    assert np.percentile(w.output_tokens, 90) == pytest.approx(834, rel=0.03)


def test_arxiv_summarization_lognormal_fits_the_published_median_and_p90():
    prompt, output = get_dataset("arxiv_summarization").lengths
    assert isinstance(prompt, LengthDistribution)
    assert math.exp(prompt.mu) == pytest.approx(7059) and math.exp(prompt.mu + Z90 * prompt.sigma) == pytest.approx(12985)
    assert math.exp(output.mu) == pytest.approx(208) and math.exp(output.mu + Z90 * output.sigma) == pytest.approx(371)
    x = prompt.sample(20_000, np.random.default_rng(22))
    assert np.median(x) == pytest.approx(7059, rel=0.05) and np.percentile(x, 90) == pytest.approx(12985, rel=0.05)
    assert x.min() >= prompt.minimum and x.max() <= prompt.maximum == 16383


@pytest.mark.parametrize("name", sorted(datasets()))
def test_every_dataset_has_a_source_and_respects_its_length_limit(name):
    ds = get_dataset(name)
    assert ds.source and ds.description
    w = synthetic(name, 5000, seed=23)
    assert np.all(w.prompt_tokens >= 1) and np.all(w.output_tokens >= 1)
    if ds.max_total_tokens:
        assert np.max(w.prompt_tokens + w.output_tokens) <= ds.max_total_tokens


@pytest.mark.parametrize("qps", [0.5, 2.0, 37.0])
def test_poisson_gaps_average_one_over_the_rate(qps):
    t = arrivals(50_000, qps, np.random.default_rng(24))
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(1 / qps, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize("cv", [0.25, 2.0, 4.0])
def test_gamma_gaps_keep_the_rate_and_take_the_coefficient_of_variation(cv):
    t = arrivals(200_000, 3.0, np.random.default_rng(25), process="gamma", cv=cv)
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert gaps.mean() == pytest.approx(1 / 3.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_infinite_qps_is_an_offline_batch_at_time_zero():
    w = synthetic("azure_conv", 50, qps=math.inf)
    assert np.all(w.arrival_s == 0)
    r = simulate(w, DEVICE, MODEL, scheduler="sarathi")
    assert r.summary()["completed"] == 50


def write(tmp_path, text, name="trace.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_trace_is_replayed_sorted_by_arrival_with_optional_prefix_columns(tmp_path):
    path = write(tmp_path, "arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_tokens\n"
                           "2.5,300,20,,\n0.5,1000,5,7,512\n1.0,900,1,7,512\n0.5,40,3,,\n")
    w = from_trace(path)
    np.testing.assert_array_equal(w.arrival_s, [0.5, 0.5, 1.0, 2.5])
    np.testing.assert_array_equal(w.prompt_tokens, [1000, 40, 900, 300])  # ties keep their file order
    np.testing.assert_array_equal(w.output_tokens, [5, 3, 1, 20])
    np.testing.assert_array_equal(w.prefix_id, [7, -1, 7, -1])
    np.testing.assert_array_equal(w.prefix_tokens, [512, 0, 512, 0])
    assert str(path) in w.name
    r = simulate(w, DEVICE, MODEL, scheduler="vllm", prefix_caching=True)
    assert r.summary()["completed"] == 4
    plain = from_trace(write(tmp_path, "output_tokens,arrival_s,prompt_tokens\n4,0,10\n", "plain.csv"))
    assert plain.prefix_id.tolist() == [-1] and plain.prompt_tokens.tolist() == [10] and plain.output_tokens.tolist() == [4]


@pytest.mark.parametrize(("text", "where"), [
    ("arrival_s,prompt_tokens\n0,10\n", "missing column(s) output_tokens"),
    ("arrival_s,prompt,output_tokens\n0,10,5\n", "missing column(s) prompt_tokens"),
    ("", "missing column(s) arrival_s, prompt_tokens, output_tokens"),
    ("arrival_s,prompt_tokens,output_tokens\n", "no requests"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,ten,5\n", "line 3: prompt_tokens must be a number, got 'ten'"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\nsoon,10,5\n", "line 3: arrival_s must be a number, got 'soon'"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,10\n", "line 3: output_tokens must be a number"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,2.5\n", "line 2: output_tokens must be a whole number, got '2.5'"),
    ("arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_tokens\n0,10,5,1,x\n", "line 2: prefix_tokens must be a number"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,-3,5\n", "line 3: prompt_tokens must be at least 1"),
    ("arrival_s,prompt_tokens,output_tokens\n-1,10,5\n", "line 2: arrival_s must be at least 0"),
    ("arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_tokens\n0,10,5,1,10\n", "line 2: prefix_tokens needs a prefix_id"),
])
def test_a_bad_trace_names_the_file_and_what_is_wrong(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as err:
        from_trace(path)
    assert str(err.value).startswith(str(path)) and where in str(err.value)


def test_a_missing_trace_file_says_so(tmp_path):
    with pytest.raises(TraceError, match="nope.csv: cannot read trace"):
        from_trace(tmp_path / "nope.csv")


@pytest.mark.parametrize(("row", "field"), [("1,-3,5", "prompt_tokens"), ("1,10,0", "output_tokens"), ("-1,10,5", "arrival_s")])
def test_a_trace_with_an_impossible_value_names_its_line_and_field(tmp_path, row, field):
    path = write(tmp_path, f"arrival_s,prompt_tokens,output_tokens\n2,10,5\n{row}\n")
    with pytest.raises(TraceError, match=f"line 3: {field}"):
        from_trace(path)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_trace_with_a_non_finite_token_count_raises_trace_error(tmp_path, value):
    with pytest.raises(TraceError, match="line 2: prompt_tokens"):
        from_trace(write(tmp_path, f"arrival_s,prompt_tokens,output_tokens\n0,{value},5\n"))


def test_an_unknown_dataset_lists_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'sharegpt'; did you mean 'openchat_sharegpt4'"):
        synthetic("sharegpt", 10)
    with pytest.raises(UnknownNameError, match="arxiv_summarization"):
        get_dataset("arxiv")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: arrivals(0, 1.0, np.random.default_rng()), "the number of requests must be a positive integer"),
    (lambda: arrivals(5, 0.0, np.random.default_rng()), "qps must be positive"),
    (lambda: arrivals(5, 1.0, np.random.default_rng(), process="gamma", cv=0), "needs cv > 0"),
    (lambda: arrivals(5, 1.0, np.random.default_rng(), process="bursty"), "unknown arrival process 'bursty'"),
    (lambda: shared_prefix(groups=0), "groups must be an integer >= 1"),
    (lambda: shared_prefix(suffix_tokens=0), "suffix_tokens must be an integer >= 1"),
])
def test_impossible_workloads_are_explained(call, message):
    with pytest.raises(KernelabError, match=re.escape(message)):
        call()


# -- configuration errors ---------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "error", "message"), [
    ({"scheduler": "sarath"}, UnknownNameError, "unknown scheduler 'sarath'; did you mean 'sarathi'"),
    ({"router": "round-robin"}, UnknownNameError, "did you mean 'round_robin'"),
    ({"preemption": "swapp"}, UnknownNameError, "unknown preemption mode 'swapp'; did you mean 'swap'"),
    ({"block_size": 0}, InvalidValueError, "block_size must be a positive integer, got 0"),
    ({"replicas": 0}, InvalidValueError, "replicas must be a positive integer, got 0"),
    ({"max_num_seqs": True}, InvalidValueError, "max_num_seqs must be a positive integer, got True"),
    ({"token_budget": 1.5}, InvalidValueError, "token_budget must be a positive integer, got 1.5"),
    ({"gpu_memory_utilization": 1.5}, InvalidValueError, "gpu_memory_utilization must be in (0, 1], got 1.5"),
    ({"gpu_memory_utilization": 0.0}, InvalidValueError, "gpu_memory_utilization must be in (0, 1], got 0.0"),
])
def test_bad_serving_configs_are_explained(fields, error, message):
    with pytest.raises(error, match=re.escape(message)):
        ServingConfig(**fields)


@pytest.mark.parametrize(("scheduler", "defaults"), [
    ("vllm", {"max_num_seqs": 256, "token_budget": None, "prefix_caching": False, "shared_prefix_attention": False}),
    (" Sarathi ", {"scheduler": "sarathi", "max_num_seqs": 256, "token_budget": 512, "prefix_caching": False}),
    ("batchllm", {"token_budget": 4096, "prefix_caching": True, "shared_prefix_attention": True}),
])
def test_each_scheduler_brings_its_own_defaults(scheduler, defaults):
    cfg = ServingConfig(scheduler=scheduler)
    assert {k: getattr(cfg, k) for k in defaults} == defaults


def test_a_model_that_does_not_fit_says_by_how_much():
    with pytest.raises(DoesNotFitError) as err:
        simulate(synthetic(requests=5), "A100-SXM-40GB", "llama-2-70b")
    text = str(err.value)
    assert "Llama-2-70B does not fit on 1x A100-SXM-40GB" in text
    weights, act, block, usable, short = map(float, re.search(
        r"weights ([\d.]+) GB \+ activations ([\d.]+) GB \+ one KV block ([\d.e-]+) GB per GPU > ([\d.]+) GB usable"
        r".*short by ([\d.]+) GB", text).groups())
    assert weights == pytest.approx(2 * 69e9 / 1e9, rel=0.01) and usable == pytest.approx(0.9 * 40, rel=0.01)
    assert short == pytest.approx(weights + act + block - usable, abs=0.1) and short > 100  # the message rounds to 0.1 GB


def test_a_model_that_fits_only_with_tensor_parallelism_is_served():
    with pytest.raises(DoesNotFitError):
        simulate(synthetic(requests=20, qps=4.0), "A100-SXM-80GB", "llama-2-70b", tp=1)
    r = simulate(synthetic(requests=20, qps=4.0), "A100-SXM-80GB", "llama-2-70b", tp=4, scheduler="sarathi")
    assert r.summary()["completed"] == 20 and r.summary()["tp"] == 4


def test_swap_preemption_needs_the_devices_pcie_generation():
    device = dataclasses.replace(hw.get_device(DEVICE), pcie_gen=None)
    with pytest.raises(InvalidValueError, match="no PCIe generation in the catalog: swap preemption cannot be timed"):
        simulate(synthetic(requests=5), device, MODEL, preemption="swap")


# -- metrics ----------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=40),
       counts=st.lists(st.integers(1, 5), min_size=40, max_size=40), q=st.sampled_from([0, 1, 50, 90, 99, 100]))
def test_a_weighted_percentile_is_the_percentile_of_the_repeated_samples(values, counts, q):
    w = np.asarray(counts[:len(values)])
    repeated = np.repeat(values, w)
    assert percentile(np.asarray(values), q, w) == np.percentile(repeated, q, method="inverted_cdf")


# -- capacity search --------------------------------------------------------------------------
class Stub:
    """What ``capacity_search`` reads of a result: its summary."""

    def __init__(self, tbt_p99_s, delay_p50_s, completed=100, rejected=0):
        self._s = {"requests": 100, "completed": completed, "rejected": rejected, "tbt_s": {"p99": tbt_p99_s},
                   "scheduling_delay_s": {"p50": delay_p50_s}, "ttft_s": {"p50": 0.1}}

    def summary(self):
        return self._s


@pytest.mark.parametrize("threshold", [0.013, 0.3, 1.0, 1.7, 10.0, 37.5, 1000.0])
@pytest.mark.parametrize("limit", ["tbt", "delay"])
def test_capacity_search_finds_a_monotone_threshold_within_its_tolerance(threshold, limit):
    """P99 TBT (or the median scheduling delay) grows with QPS and crosses its limit at ``threshold``."""
    slo, max_delay = 0.1, 2.0
    calls = []

    def run(qps):
        calls.append(qps)
        grow = qps / threshold
        return Stub(slo * grow if limit == "tbt" else 0.01, max_delay * grow if limit == "delay" else 0.01)

    result = capacity_search(run, slo, max_delay)
    assert result.capacity_qps <= threshold * (1 + 1e-12)
    assert result.capacity_qps >= threshold * (1 - RELATIVE_TOLERANCE)
    assert sorted(calls) == [t.qps for t in result.trials]
    assert all(t.passed == (t.qps <= result.capacity_qps) for t in result.trials)
    assert max(t.qps for t in result.trials if t.passed) == result.capacity_qps


def test_a_trial_that_leaves_requests_unfinished_fails():
    result = capacity_search(lambda qps: Stub(0.01, 0.01, completed=99 if qps > 4 else 100), 0.1)
    assert 4 * (1 - RELATIVE_TOLERANCE) <= result.capacity_qps <= 4


def test_capacity_search_rejects_a_non_positive_slo():
    with pytest.raises(InvalidValueError, match="P99 TBT SLO must be positive"):
        capacity_search(lambda qps: Stub(0.01, 0.01), 0.0)


def test_sarathi_sustains_more_qps_than_vllm_under_a_strict_tbt_slo():
    """Sarathi-Serve (arXiv:2403.02310, Fig. 1 and sec. 5): chunked prefills raise Mistral-7B's capacity
    on an A100 under a strict P99 TBT SLO, as vLLM's prefill iterations stall the decodes."""
    found = {s: capacity(DEVICE, MODEL, slo_tbt_p99_s=0.1, requests=300, seed=0, scheduler=s) for s in ("vllm", "sarathi")}
    for result in found.values():
        assert result.capacity_qps > 0
        best = next(t for t in result.trials if t.qps == result.capacity_qps)
        assert best.passed
        assert best.tbt_p99_s <= 0.1 and best.scheduling_delay_p50_s <= 2.0
    assert found["sarathi"].capacity_qps > found["vllm"].capacity_qps


# -- the command line -------------------------------------------------------------------------
def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


SERVE = ("serve", "--device", "A100", "--model", "mistral-7b", "--requests", "200", "--seed", "1")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_serve_json_reports_throughput_latency_percentiles_and_preemptions(capsys, scheduler):
    rec = run_json(capsys, *SERVE, "--scheduler", scheduler, "--qps", "2", "--json")
    assert rec["device"] == "A100-SXM-80GB" and rec["model"] == "Mistral-7B" and rec["scheduler"] == scheduler
    assert rec["completed"] == rec["requests"] == 200 and rec["seed"] == 1
    assert rec["throughput_tokens_per_s"] > 0 and rec["preemptions"] == 0
    for key in ("ttft_s", "tbt_s"):
        d = rec[key]
        assert 0 < d["p50"] <= d["p90"] <= d["p99"], key
    # the same numbers as the library
    r = simulate(synthetic("openchat_sharegpt4", 200, 2.0, seed=1), DEVICE, MODEL, scheduler=scheduler).summary()
    assert rec["tbt_s"] == r["tbt_s"] and rec["throughput_tokens_per_s"] == r["throughput_tokens_per_s"]


def test_serve_table_names_the_setting_and_the_latencies(capsys):
    assert main([*SERVE, "--scheduler", "sarathi", "--qps", "2", "--slo-ttft", "1", "--slo-tpot", "0.05"]) == 0
    out = capsys.readouterr().out
    for text in ("Mistral-7B", "A100-SXM-80GB", "sarathi", "200 of 200 completed", "TTFT", "TBT", "TPOT",
                 "scheduling delay", "busy time", "goodput"):
        assert text in out


def test_serve_with_memory_pressure_reports_preemptions(capsys):
    rec = run_json(capsys, *SERVE, "--scheduler", "vllm", "--qps", "8", "--gpu-memory-utilization", "0.22",
                   "--preemption", "swap", "--json")
    assert rec["preemptions"] > 0 and rec["completed"] == 200 and rec["breakdown"]["swap_s"] > 0


def test_serve_replays_a_trace(capsys, tmp_path):
    path = write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n0,100,10\n0.1,200,20\n0.05,300,5\n")
    rec = run_json(capsys, "serve", "--trace", str(path), "--replicas", "2", "--router", "least_loaded", "--json")
    assert rec["completed"] == rec["requests"] == 3 and rec["replicas"] == 2 and str(path) in rec["workload"]


def test_serve_writes_an_html_plot(capsys, tmp_path):
    out = tmp_path / "serve.html"
    rec = run_json(capsys, "serve", "--requests", "100", "--qps", "3", "--plot", str(out), "--json")
    assert rec["plot"] == str(out)
    html = out.read_text()
    assert len(html) > 100_000 and "plotly" in html and "KV-cache blocks in use" in html


def test_capacity_json_has_the_capacity_and_its_trials(capsys):
    rec = run_json(capsys, "capacity", "--device", "A100", "--model", "mistral-7b", "--scheduler", "sarathi",
                   "--slo-tbt-p99", "0.1", "--requests", "200", "--json")
    assert rec["capacity_qps"] > 0 and rec["slo_tbt_p99_s"] == 0.1 and rec["requests"] == 200
    assert rec["trials"] and {"qps", "tbt_p99_s", "scheduling_delay_p50_s", "ttft_p50_s", "passed"} <= set(rec["trials"][0])
    assert rec["capacity_qps"] == max(t["qps"] for t in rec["trials"] if t["passed"])


def test_capacity_table_lists_the_trials(capsys):
    assert main(["capacity", "--slo-tbt-p99", "0.1", "--requests", "100", "--start-qps", "2"]) == 0
    out = capsys.readouterr().out
    assert "capacity" in out and "QPS" in out and "P99 TBT" in out
    assert re.search(r"\byes\b", out) and re.search(r"\bno\b", out)  # trials that passed and failed


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "--model", "nope-7b", "--requests", "10"], "unknown model 'nope-7b'"),
    (["serve", "--requests", "0"], "--requests must be at least 1, got 0"),
    (["serve", "--qps", "0", "--requests", "10"], "--qps must be positive"),
    (["serve", "--trace", "/nonexistent/trace.csv"], "/nonexistent/trace.csv: cannot read trace"),
    (["serve", "--device", "A100-SXM-40GB", "--model", "llama-2-70b", "--requests", "10"], "does not fit"),
    (["serve", "--dataset", "sharegpt", "--requests", "10"], "did you mean 'openchat_sharegpt4'"),
    (["capacity", "--slo-tbt-p99", "0", "--requests", "10"], "P99 TBT SLO must be positive"),
    (["capacity", "--slo-tbt-p99", "0.1", "--requests", "0"], "--requests must be at least 1"),
])
def test_bad_input_exits_with_status_2_and_a_one_line_message(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kernelab: error: ") and message in lines[0]

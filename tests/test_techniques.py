"""The seed papers' techniques (``sim.techniques``) and ``kernelab whatif``: the technique API, each
family's cost model against the closed forms and limits it implies, and the ``paged`` decode kernel.

Settings are small (a decode step costs well under a millisecond to model); the two scheduler
techniques run serving simulations and are predicted once each, with few requests.
"""

import json
import math

import numpy as np
import pytest

import hwmodels as hw
from hwmodels.errors import InvalidValueError, UnknownNameError
from kernelab.cli import main
from sim import step as steps
from sim.attention import ATTENTION_KERNELS, PAGED_PARTITION
from sim.cost import step_cost
from sim.model import get_model
from sim.precision import Precision
from sim.techniques import LAYERS, TECHNIQUES, Setting, get_technique
from sim.techniques.speculative import DecodeLoopTechnique, expected_tokens

#: one runnable example per technique: (parameters, setting); a technique not named here is predicted
#: with its defaults on the default setting
EXAMPLES = {
    "spec-chain": ({"draft_model": "Llama-2-7B", "draft_tokens": 4, "acceptance": 0.8}, Setting("H100-SXM", "Llama-2-70B")),
    "pearl": ({"draft_model": "Llama-2-7B", "draft_tokens": 4, "acceptance": 0.8}, Setting("H100-SXM", "Llama-2-70B")),
    "spec-tree": ({"draft_model": "Llama-2-7B", "tree_tokens": 64, "mean_accepted_tokens": 3.5}, Setting("H100-SXM", "Llama-2-70B")),
    "draft-heads": ({"mean_accepted_tokens": 3.5, "tree_tokens": 64}, Setting("A100-SXM-80GB", "Vicuna-7B", context=512)),
    "self-spec": ({"draft_layers": 2, "mean_accepted_tokens": 2.0}, Setting("A100-SXM-80GB", "Vicuna-7B")),
    "draft-free": ({"mean_accepted_tokens": 2.5, "verify_tokens": 16}, Setting("A100-SXM-80GB", "Vicuna-7B")),
    "multi-draft": ({"draft_model": "Llama-2-7B", "mean_accepted_tokens": 3.0}, Setting("H100-SXM", "Llama-2-70B")),
    "long-context-spec": ({"draft_model": "Llama-3.1-8B"}, Setting("H100-SXM", "Llama-3.1-70B", context=32768)),
    "kv-quant": ({"bits": 4.0}, Setting("H100-SXM", "Llama-3.1-8B", batch=16, context=8192)),
    "kv-sparse": ({"kept_fraction": 1 / 16}, Setting("H100-SXM", "Llama-3.1-8B", batch=16, context=8192)),
    "hydragen": ({"prefix_tokens": 2048}, Setting("A100-SXM-80GB", "CodeLlama-13B", batch=64, context=128)),
    "lean-attention": ({}, Setting("A100-SXM-80GB", "Llama-2-7B", batch=4, context=8192)),
    "context-parallel": ({"cp": 8, "method": "tokenring", "baseline": "pass-kv"}, Setting("H100-SXM", "Llama-3.1-8B", context=32768)),
    "chunked-prefill": ({"requests": 64}, Setting("A100-SXM-80GB", "Mistral-7B")),
    "shared-prefix-serving": ({"prefix_tokens": 1024, "output_tokens": 16}, Setting("A100-SXM-80GB", "Llama-2-7B", batch=64)),
    "8bit-optimizer": ({}, Setting(model="Llama-2-7B")),
    "streaming-diloco": ({}, Setting(model="Llama-2-7B")),
    "block-decoding": ({"block_tokens": 16}, Setting("H100-SXM", "Llama-2-7B", context=2048)),
    "superposed": ({"drafts": 3}, Setting("A100-SXM-80GB", "Llama-2-7B", context=512)),
    "kv-edit": ({"edit_tokens": 16}, Setting("A100-SXM-80GB", "DeepSeek-Coder-6.7B", context=8000)),
    "grad-compression": ({"bits": 8}, Setting("H100-SXM", "Llama-2-7B")),
    "cp-decode": ({"cp": 8}, Setting("H100-SXM", "Llama-3.1-8B", context=262144)),
    "encoder-decoder": ({}, Setting("L4", "Llama-2-7B", context=512)),
    "weight-sparsity": ({"pattern": "2:4"}, Setting("A100-SXM-80GB", "Llama-2-7B", context=2048)),
    "gradient-coding": ({"workers": 16, "stragglers": 1}, Setting(model="Llama-2-7B")),
    "collaborative-decoding": ({"small_model": "Llama-2-7B"}, Setting("RTX-4090", "Llama-2-13B", batch=4, context=0)),
}
_predictions: dict = {}


def predict(name: str):
    """The example's prediction, made once per test session (the scheduler ones simulate)."""
    if name not in _predictions:
        params, setting = EXAMPLES.get(name, ({}, Setting()))
        _predictions[name] = get_technique(name)(**params).predict(setting)
    return _predictions[name]


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


# -- the technique API ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_every_technique_declares_its_layer_summary_citation_and_sourced_parameters(name):
    t = TECHNIQUES[name]
    assert t.name == name and get_technique(name) is t
    assert t.layer in LAYERS and t.summary and t.citation
    names = [p.name for p in t.params]
    assert len(names) == len(set(names))
    for p in t.params:
        assert p.name and p.unit and p.description and p.source, p
        assert p.check(p.default) == p.default  # the default passes its own check
        if p.minimum is not None and p.maximum is not None:
            assert p.minimum <= p.maximum


def test_whatif_list_json_names_every_technique_with_its_parameters(capsys):
    rows = run_json(capsys, "whatif", "--list", "--json")
    assert [r["name"] for r in rows] == list(TECHNIQUES)
    for r in rows:
        t = TECHNIQUES[r["name"]]
        assert r["layer"] == t.layer and r["summary"] == t.summary and r["citation"] == t.citation
        assert [p["name"] for p in r["parameters"]] == [p.name for p in t.params]
        for p in r["parameters"]:
            assert set(p) >= {"name", "default", "unit", "description", "source"}
            assert p["unit"] and p["source"] and p["description"]


def test_whatif_list_prints_every_technique_and_parameter(capsys):
    assert main(["whatif", "--list"]) == 0
    out = capsys.readouterr().out
    for name, t in TECHNIQUES.items():
        assert name in out
        for p in t.params:
            assert p.name in out


def test_technique_names_are_found_whatever_their_case_and_spacing():
    assert get_technique(" Draft-Heads ") is TECHNIQUES["draft-heads"]


def test_an_unknown_technique_suggests_the_closest_names():
    with pytest.raises(UnknownNameError, match="unknown technique 'draft-hedas'") as exc:
        get_technique("draft-hedas")
    assert "draft-heads" in exc.value.suggestions


def test_an_unknown_parameter_suggests_the_closest_names():
    with pytest.raises(UnknownNameError, match="parameter of draft-heads 'tre_tokens'") as exc:
        get_technique("draft-heads")(tre_tokens=64)
    assert exc.value.suggestions[0] == "tree_tokens"


@pytest.mark.parametrize(("name", "values", "message"), [
    ("spec-chain", {"acceptance": 1.5}, "acceptance must lie in"),
    ("spec-chain", {"acceptance": -0.1}, "acceptance must lie in"),
    ("spec-chain", {"draft_tokens": 0}, "draft_tokens must lie in"),
    ("spec-chain", {"draft_tokens": 2.5}, "draft_tokens must be a whole number"),
    ("spec-chain", {"draft_tokens": "four"}, "draft_tokens must be a number"),
    ("spec-chain", {"draft_tokens": None}, "draft_tokens must be a number"),
    ("draft-heads", {"tree_tokens": 4097}, "tree_tokens must lie in"),
    ("kv-quant", {"metric": 3}, "metric must be a name"),
    ("kv-sparse", {"kept_fraction": 2.0}, "kept_fraction must lie in"),
])
def test_bad_parameter_values_are_invalid_and_say_which(name, values, message):
    with pytest.raises(InvalidValueError, match=message):
        get_technique(name)(**values)


def test_numeric_parameters_given_as_text_are_converted_to_their_type():
    t = get_technique("spec-chain")(draft_tokens="5", acceptance="0.6")
    assert t.draft_tokens == 5 and isinstance(t.draft_tokens, int)
    assert t.acceptance == 0.6 and isinstance(t.acceptance, float)
    assert t.draft_model == "Llama-2-7B"  # unset: the default


@pytest.mark.parametrize(("name", "param", "value"), [
    ("spec-chain", "acceptance", "nan"), ("draft-heads", "tree_tokens", "nan"), ("spec-chain", "draft_tokens", "inf")])
def test_non_finite_parameter_values_are_invalid(name, param, value):
    with pytest.raises(InvalidValueError, match=param):
        get_technique(name)(**{param: value})


@pytest.mark.parametrize(("field", "value"), [("batch", 0), ("batch", 1.5), ("batch", True), ("context", -1),
                                              ("tp", 0), ("tp", "2")])
def test_setting_rejects_a_bad_batch_context_or_tp(field, value):
    with pytest.raises(InvalidValueError, match=f"{field} must be an integer"):
        Setting(**{field: value})


def test_setting_resolves_names_case_insensitively_and_reports_itself():
    s = Setting("a100-sxm-80gb", "vicuna-7b", batch=3, context=100, tp=1, precision=Precision(16, 16, 8))
    assert s.as_dict() == {"device": "A100-SXM-80GB", "model": "Vicuna-7B", "batch": 3, "context": 100, "tp": 1,
                           "weight_bits": 16, "kv_bits": 8}


@pytest.mark.parametrize(("setting", "kind", "near"), [
    (Setting("H100-SX"), "device", "H100-SXM"), (Setting(model="vicuna-7"), "model", "Vicuna-7B")])
def test_unknown_devices_and_models_suggest_the_closest_names(setting, kind, near):
    with pytest.raises(UnknownNameError, match=f"unknown {kind}") as exc:
        get_technique("draft-free")(mean_accepted_tokens=2).predict(setting)
    assert near in exc.value.suggestions


def test_an_unknown_draft_model_suggests_the_closest_names():
    with pytest.raises(UnknownNameError, match="unknown model") as exc:
        get_technique("spec-chain")(draft_model="llama-2-7").predict(Setting())
    assert "Llama-2-7B" in exc.value.suggestions


# -- every prediction ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_every_prediction_is_json_and_carries_its_setting_baseline_breakdown_and_reason(name):
    p = predict(name)
    rec = json.loads(json.dumps(p.as_dict(), allow_nan=False))
    assert set(rec) >= {"technique", "metric", "value", "speedup", "setting", "parameters", "baseline", "technique_cost",
                        "breakdown", "explain"}
    assert rec["technique"] == name and rec["metric"] and math.isfinite(rec["value"]) and rec["value"] > 0
    assert rec["speedup"] == (rec["value"] if rec["metric"] == "speedup" else None) == p.speedup
    params, setting = EXAMPLES.get(name, ({}, Setting()))
    assert rec["setting"] == setting.as_dict()
    assert rec["parameters"] == get_technique(name)(**params).values
    assert rec["baseline"] and rec["technique_cost"] and isinstance(rec["breakdown"], dict)
    assert isinstance(rec["explain"], str) and len(rec["explain"]) > 20


# -- speculative decoding ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [1, 3, 7, 64])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7, 0.95, 1.0])
def test_expected_tokens_is_leviathans_closed_form(alpha, gamma):
    # the mean of a truncated geometric: 1 + alpha + ... + alpha^gamma
    assert expected_tokens(alpha, gamma) == pytest.approx(sum(alpha ** i for i in range(gamma + 1)))
    assert 1.0 <= expected_tokens(alpha, gamma) <= gamma + 1


@pytest.mark.parametrize("gamma", [1, 4, 16])
def test_expected_tokens_limits_are_one_token_and_every_draft_plus_one(gamma):
    assert expected_tokens(0.0, gamma) == 1.0
    assert expected_tokens(1.0, gamma) == gamma + 1
    assert expected_tokens(1 - 1e-9, gamma) == pytest.approx(gamma + 1, rel=1e-6)  # continuous at alpha = 1


# the draft-and-verify techniques (superposed decoding acts on the decode loop too, without rounds)
DECODE_LOOP = sorted(n for n, t in TECHNIQUES.items() if issubclass(t, DecodeLoopTechnique))


@pytest.mark.parametrize("name", DECODE_LOOP)
def test_speedup_is_tokens_per_round_times_decode_step_over_round(name):
    p = predict(name)
    b = p.breakdown
    tau, decode_s = b["tokens_per_round"], p.baseline["time_per_token_s"]
    assert p.value == pytest.approx(tau * decode_s / b["round_s"], rel=1e-12)
    assert b["verify_over_decode"] == pytest.approx(b["verify_s"] / decode_s, rel=1e-12)
    assert p.technique_cost["time_per_token_s"] == pytest.approx(b["round_s"] / tau, rel=1e-12)
    overlapped = name == "pearl"
    assert b["round_s"] == pytest.approx(max(b["draft_s"], b["verify_s"]) if overlapped else b["draft_s"] + b["verify_s"])


def test_a_chain_without_a_measured_tau_keeps_the_closed_forms_tokens():
    p = get_technique("spec-chain")(draft_tokens=5, acceptance=0.6).predict(Setting("H100-SXM", "Llama-2-70B"))
    assert p.breakdown["tokens_per_round"] == pytest.approx(expected_tokens(0.6, 5))


@pytest.mark.parametrize(("device", "batch", "context"), [
    ("H100-SXM", 1, 1024), ("A100-SXM-80GB", 7, 1000), ("A100-SXM-80GB", 64, 4096), ("L4", 19, 128)])
def test_verifying_one_token_and_keeping_it_is_a_decode_step(device, batch, context):
    p = get_technique("draft-free")(mean_accepted_tokens=1, verify_tokens=1, tree=0).predict(
        Setting(device, "Llama-2-7B", batch=batch, context=context))
    assert p.value == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize(("device", "model"), [("H100-SXM", "Llama-2-7B"), ("A100-SXM-80GB", "Llama-3.1-8B")])
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize(("verify_tokens", "tree"), [(2, 0), (16, 1), (64, 1)])
def test_with_no_draft_and_one_token_kept_verification_is_a_slowdown(device, model, batch, verify_tokens, tree):
    p = get_technique("draft-free")(mean_accepted_tokens=1, verify_tokens=verify_tokens, tree=tree).predict(
        Setting(device, model, batch=batch, context=1000))
    assert p.breakdown["draft_s"] == 0.0
    assert p.value <= 1.0 + 1e-12  # verifying T tokens costs at least a decode step
    assert p.breakdown["verify_over_decode"] >= 1.0 - 1e-12


TREES = [("draft-heads", "Vicuna-7B", {"mean_accepted_tokens": 3.5, "tree_tokens": 64}),
         ("spec-tree", "Llama-2-70B", {"mean_accepted_tokens": 3.5, "tree_tokens": 64, "draft_model": "Llama-2-7B"}),
         ("draft-free", "Vicuna-7B", {"mean_accepted_tokens": 3.5, "verify_tokens": 64})]


@pytest.mark.parametrize(("name", "model", "params"), TREES)
def test_a_64_token_tree_buys_less_as_the_batch_grows_and_becomes_a_slowdown(name, model, params):
    t = get_technique(name)(**params)
    speedups = [t.predict(Setting("H100-SXM", model, batch=b, context=512)).value for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    assert speedups[0] > 2.0
    assert all(a > b for a, b in zip(speedups, speedups[1:])), speedups
    assert speedups[-1] < 1.0  # verifying 64 tokens per sequence is compute-bound at batch 256


@pytest.mark.parametrize(("name", "model", "params"), TREES)
def test_at_a_long_context_the_tree_still_buys_less_at_batch_256_than_at_batch_1(name, model, params):
    t = get_technique(name)(**params)
    one, many = (t.predict(Setting("H100-SXM", model, batch=b, context=4096)).value for b in (1, 256))
    assert many < one


@pytest.mark.parametrize("batch", [4, 8, 16])
def test_the_same_tree_costs_fewer_decode_steps_to_verify_on_h100_than_on_a100(batch):
    # the H100's ridge point (FLOP/s per byte/s) is about twice the A100's, so 64 query rows per sequence
    # stay memory-bound up to a larger batch
    t = get_technique("draft-heads")(mean_accepted_tokens=3.5, tree_tokens=64)
    h100, a100 = (t.predict(Setting(d, "Vicuna-7B", batch=batch, context=512)) for d in ("H100-SXM", "A100-SXM-80GB"))
    assert h100.breakdown["verify_over_decode"] < a100.breakdown["verify_over_decode"]
    assert h100.value > a100.value


@pytest.mark.parametrize(("device", "target", "draft"), [("H100-SXM", "Llama-2-70B", "Llama-2-7B"),
                                                       ("A100-SXM-80GB", "Llama-2-13B", "Llama-2-7B"),
                                                       ("A100-SXM-80GB", "DeepSeek-Coder-33B", "DeepSeek-Coder-1.3B")])
@pytest.mark.parametrize("batch", [1, 8, 64])
@pytest.mark.parametrize(("gamma", "alpha"), [(1, 0.5), (4, 0.8), (8, 0.9)])
def test_pearls_overlapped_round_is_never_longer_than_the_chains(device, target, draft, batch, gamma, alpha):
    s = Setting(device, target, batch=batch, context=1024)
    params = {"draft_model": draft, "draft_tokens": gamma, "acceptance": alpha}
    chain, pearl = (get_technique(n)(**params).predict(s) for n in ("spec-chain", "pearl"))
    assert pearl.breakdown["round_s"] <= chain.breakdown["round_s"]
    assert pearl.breakdown["draft_s"] == chain.breakdown["draft_s"] and pearl.breakdown["verify_s"] == chain.breakdown["verify_s"]
    assert pearl.value >= chain.value


def test_a_draft_as_large_as_the_target_makes_a_chain_a_slowdown():
    p = get_technique("spec-chain")(draft_model="Llama-2-7B", draft_tokens=4, acceptance=0.7).predict(
        Setting("H100-SXM", "Llama-2-7B"))
    assert p.breakdown["draft_s"] > 3 * p.baseline["time_per_token_s"]
    assert p.value < 1.0


@pytest.mark.parametrize("model", ["Vicuna-7B", "Llama-2-70B"])
def test_self_speculation_refuses_a_draft_of_all_the_targets_layers(model):
    layers = get_model(model).num_layers
    with pytest.raises(InvalidValueError, match="draft_layers must be fewer than"):
        get_technique("self-spec")(draft_layers=layers).predict(Setting("H100-SXM", model))
    # one layer fewer is a draft, cheaper per token than the whole target, and deeper drafts cost more
    s = Setting("H100-SXM", model)
    shallow, deep = (get_technique("self-spec")(draft_layers=n, draft_tokens=4).predict(s) for n in (2, layers - 1))
    assert shallow.breakdown["draft_s"] < deep.breakdown["draft_s"] < 4 * deep.baseline["time_per_token_s"]


@pytest.mark.parametrize(("name", "params"), [
    ("spec-chain", {"mean_accepted_tokens": 0.5}),       # fewer than the target's own token
    ("spec-chain", {"mean_accepted_tokens": 6.5, "draft_tokens": 4}),  # more than drafts + 1
    ("draft-heads", {}), ("spec-tree", {}), ("draft-free", {}),  # need the paper's measured tokens per round
])
def test_impossible_or_missing_tokens_per_round_are_invalid(name, params):
    with pytest.raises(InvalidValueError):
        get_technique(name)(**params).predict(Setting("H100-SXM", "Llama-2-13B"))


@pytest.mark.parametrize(("name", "params"), [
    ("draft-heads", {"mean_accepted_tokens": 3.0, "tree_tokens": 63}),  # 4 heads
    ("spec-tree", {"mean_accepted_tokens": 3.0, "tree_tokens": 63, "tree_depth": 4}),
    ("draft-free", {"mean_accepted_tokens": 2.0, "verify_tokens": 15}),  # depth round(tau) = 2
])
def test_a_tree_of_an_odd_number_of_tokens_can_be_verified(name, params):
    assert get_technique(name)(**params).predict(Setting("A100-SXM-80GB", "Vicuna-7B")).value > 0


# -- step-level techniques -------------------------------------------------------------------------------------
STEP_SETTING = Setting("H100-SXM", "Llama-2-7B", batch=8, context=4096)


@pytest.mark.parametrize(("name", "params"), [("weight-quant", {"weight_bits": 16}), ("layer-skip", {"skip_fraction": 0.0}),
                                              ("token-pruning", {"kept_fraction": 1.0}), ("parallel-encoding", {"chunks": 1})])
def test_a_step_level_technique_that_changes_nothing_buys_nothing(name, params):
    assert get_technique(name)(**params).predict(STEP_SETTING).value == pytest.approx(1.0, rel=1e-9)


def test_skipping_more_layers_buys_more_but_never_more_than_the_layers_skipped():
    layers = get_model("Llama-2-7B").num_layers
    preds = [get_technique("layer-skip")(skip_fraction=f).predict(STEP_SETTING) for f in (0.25, 0.5, 0.75)]
    assert preds[0].value < preds[1].value < preds[2].value
    for p in preds:
        assert p.value <= layers / p.technique_cost["layers_run"]


def test_more_parallel_encoding_chunks_buy_more_and_a_context_shorter_than_the_chunks_is_refused():
    s = Setting("H100-SXM", "Llama-2-7B", context=32768)
    speedups = [get_technique("parallel-encoding")(chunks=c).predict(s).value for c in (2, 8, 32)]
    assert 1.0 < speedups[0] < speedups[1] < speedups[2]
    with pytest.raises(InvalidValueError, match="cannot be cut into 8 chunks"):
        get_technique("parallel-encoding")(chunks=8).predict(Setting(context=4))


def test_a_recurrent_state_instead_of_the_kv_cache_buys_more_the_longer_the_context():
    speedups = [get_technique("linear-attention")().predict(Setting("H100-SXM", "Llama-2-7B", batch=8, context=c)).value
                for c in (1024, 8192, 65536)]
    assert 1.0 < speedups[0] < speedups[1] < speedups[2]


# -- KV cache compression and sparsity ----------------------------------------------------------------------------
LONG = Setting("H100-SXM", "Llama-3.1-8B", batch=16, context=8192)


@pytest.mark.parametrize(("bits", "group_size", "outliers"), [(4.0, 128, 0.0), (2.0, 64, 0.02), (8.0, 32, 0.01),
                                                               (3.0, 1, 0.0), (16.0, 1 << 20, 0.0)])
def test_kv_quant_memory_ratio_counts_scales_zero_points_and_outliers(bits, group_size, outliers):
    p = get_technique("kv-quant")(bits=bits, group_size=group_size, outlier_fraction=outliers,
                                  metric="memory_ratio").predict(LONG)
    assert p.metric == "memory_ratio"
    assert p.value == pytest.approx(16 / (bits + 32 / group_size + 48 * outliers))


def test_a_4_bit_kv_cache_speeds_up_a_long_decode_and_fewer_bits_speed_it_up_more():
    speedups = [get_technique("kv-quant")(bits=b).predict(LONG).value for b in (8.0, 4.0, 2.0)]
    assert 1.0 < speedups[0] < speedups[1] < speedups[2]
    # no faster than the attention alone would allow: the rest of the step is unchanged
    p = get_technique("kv-quant")(bits=2.0).predict(LONG)
    assert p.value < 1 / (1 - p.breakdown["attention_share_of_step"])


def test_a_16_bit_kv_quantization_without_dequantization_changes_nothing():
    p = get_technique("kv-quant")(bits=16.0, group_size=1 << 20, dequant_ops=0).predict(LONG)
    assert p.value == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("attention", ["paged", "split-kv"])
def test_kv_quant_raises_throughput_where_the_16_bit_cache_limits_the_batch(attention):
    p = get_technique("kv-quant")(bits=4.0, metric="throughput_ratio", attention=attention).predict(LONG)
    b = p.breakdown
    assert p.metric == "throughput_ratio" and p.value > 1.2
    assert b["batch_compressed"] > b["batch_baseline"] >= 1
    assert p.technique_cost["tokens_per_s"] / p.baseline["tokens_per_s"] == pytest.approx(p.value)


def test_kv_quant_to_the_settings_own_kv_width_changes_nothing():
    s = Setting("H100-SXM", "Llama-3.1-8B", batch=16, context=8192, precision=Precision(16, 16, 8))
    p = get_technique("kv-quant")(bits=8.0, group_size=1 << 20, dequant_ops=0).predict(s)
    assert p.value == pytest.approx(1.0, rel=1e-3)


def test_kv_quant_names_its_metrics():
    with pytest.raises(InvalidValueError, match="speedup, memory_ratio or throughput_ratio"):
        get_technique("kv-quant")(metric="latency").predict(LONG)


KEPT = [1.0, 0.5, 0.25, 1 / 16, 0.01, 0.0]


@pytest.mark.parametrize("setting", [LONG, Setting("A100-SXM-80GB", "Llama-2-7B", batch=4, context=32768)])
def test_kv_sparse_attention_speedup_is_bounded_by_the_read_fraction_and_grows_as_fewer_tokens_are_kept(setting):
    preds = [get_technique("kv-sparse")(kept_fraction=k, metric="attention_speedup").predict(setting) for k in KEPT]
    values = [p.value for p in preds]
    assert values[0] == pytest.approx(1.0, rel=1e-12)
    assert all(a < b for a, b in zip(values, values[1:])), values
    for k, p in zip(KEPT, preds):
        assert p.breakdown["kv_read_fraction"] == pytest.approx(k)
        if k:
            assert p.value <= 1 / k * (1 + 1e-9)


def test_kv_sparse_step_speedup_is_smaller_than_its_attention_speedup():
    step, attention = (get_technique("kv-sparse")(kept_fraction=1 / 16, metric=m).predict(LONG).value
                       for m in ("speedup", "attention_speedup"))
    assert 1.0 < step < attention


def test_kv_sparse_reads_sinks_and_a_window_for_its_streaming_heads():
    p = get_technique("kv-sparse")(kept_fraction=1.0, streaming_heads=0.5, window_tokens=256).predict(LONG)
    L = LONG.context + 1
    assert p.breakdown["kv_read_fraction"] == pytest.approx(0.5 + 0.5 * 256 / L)


# -- the paged decode kernel model --------------------------------------------------------------------------------
def paged_attention(device: str, model: str, batch: int, context: int):
    d, m = hw.get_device(device), get_model(model)
    cost = step_cost(m, d, steps.decode(batch, context), attention="paged")
    return d, m, cost, next(o for o in cost.ops if o.op.kind == "attention")


def test_paged_is_an_attention_kernel_model():
    assert "paged" in ATTENTION_KERNELS


@pytest.mark.parametrize(("device", "model", "batch", "context"), [("H100-SXM", "Llama-3.1-8B", 8, 32768),
                                                                  ("A100-SXM-80GB", "Llama-2-7B", 4, 16384),
                                                                  ("H100-SXM", "Llama-2-7B", 1, 131072)])
def test_paged_attention_of_a_long_decode_is_memory_bound_at_the_read_bandwidth(device, model, batch, context):
    d, m, cost, att = paged_attention(device, model, batch, context)
    assert att.bound == "memory"
    assert cost.attention_kernel == "paged" and "PagedAttention" in att.note
    # enough (sequence, head, 512-token partition) blocks to fill every SM: the bytes at the read bandwidth
    assert batch * m.num_heads * math.ceil((context + 1) / PAGED_PARTITION) >= d.sm_count
    read = hw.calibration(d).achievable_hbm_read_bytes_per_s(d)
    assert float(att.memory_s) == pytest.approx(float(att.op.bytes) / read, rel=1e-12)
    assert float(att.time_s) >= float(att.op.bytes) / read


def test_a_paged_attention_grid_smaller_than_the_gpu_streams_at_its_share_of_the_sms():
    d, m, _, att = paged_attention("H100-SXM", "Llama-2-7B", 1, 256)
    blocks = 1 * m.num_heads * 1  # one 512-token partition
    read = hw.calibration(d).achievable_hbm_read_bytes_per_s(d)
    assert blocks < d.sm_count
    assert float(att.memory_s) == pytest.approx(float(att.op.bytes) / (read * blocks / d.sm_count), rel=1e-12)


def test_paged_and_split_kv_read_the_same_bytes():
    d, m = hw.get_device("H100-SXM"), get_model("Llama-3.1-8B")
    ops = {k: next(o for o in step_cost(m, d, steps.decode(8, 32768), attention=k).ops if o.op.kind == "attention")
           for k in ("paged", "split-kv")}
    assert float(ops["paged"].op.bytes) == float(ops["split-kv"].op.bytes)
    assert np.isfinite(float(ops["paged"].time_s))


# -- attention, cluster and training techniques --------------------------------------------------------------------
def test_hydragen_buys_more_as_the_shared_prefix_grows_and_nothing_for_a_one_token_prefix():
    s = EXAMPLES["hydragen"][1]
    speedups = [get_technique("hydragen")(prefix_tokens=n).predict(s).value for n in (1, 64, 512, 2048, 8192)]
    assert speedups[0] == pytest.approx(1.0, abs=0.05)
    assert all(a < b for a, b in zip(speedups, speedups[1:])), speedups
    assert speedups[-1] > 5


def test_hydragen_buys_more_with_larger_groups_sharing_the_prefix():
    s = EXAMPLES["hydragen"][1]
    speedups = [get_technique("hydragen")(prefix_tokens=4096, group_size=g).predict(s).value for g in (1, 8, 64)]
    assert speedups[0] == pytest.approx(1.0, abs=0.05)
    assert speedups[0] < speedups[1] < speedups[2]
    with pytest.raises(InvalidValueError, match="whole number of groups"):
        get_technique("hydragen")(group_size=5).predict(s)


@pytest.mark.parametrize("baseline", ["split-kv", "flash"])
def test_lean_attention_gives_a_speedup_over_its_baseline_and_both_times(baseline):
    p = get_technique("lean-attention")(baseline=baseline).predict(EXAMPLES["lean-attention"][1])
    b = p.breakdown
    assert b["baseline_s"] > 0 and b["lean_s"] > 0
    assert p.value == pytest.approx(b["baseline_s"] / b["lean_s"])
    assert p.baseline["what"] == baseline and p.baseline["time_s"] == b["baseline_s"]


def test_context_parallel_tokenring_against_pass_kv_on_8_gpus_has_a_breakdown_that_adds_up():
    p = predict("context-parallel")
    b = p.breakdown
    assert math.isfinite(p.value) and p.value > 0
    assert p.value == pytest.approx(p.baseline["time_s"] / p.technique_cost["time_s"])
    parts = b["compute_s"] + b["memory_s"] + b["overhead_s"] + b["communication_s"]
    assert parts == pytest.approx(p.technique_cost["time_s"], rel=1e-9)


@pytest.mark.parametrize("method", ["pass-kv", "pass-q", "tokenring"])
def test_context_parallel_over_8_gpus_is_faster_than_one_but_not_more_than_8_times(method):
    p = get_technique("context-parallel")(method=method, baseline="single-gpu").predict(
        Setting("H100-SXM", "Llama-3.1-8B", context=131072))
    assert 1.0 < p.value <= 8.0


def test_lasp2_on_a_softmax_model_must_be_asked_for_as_a_what_if():
    s = Setting("H100-SXM", "Llama-3.1-8B", context=32768)
    with pytest.raises(InvalidValueError, match="linear"):
        get_technique("context-parallel")(method="lasp2").predict(s)
    assert get_technique("context-parallel")(method="lasp2", linear_attention=1, baseline="single-gpu").predict(s).value > 0


def test_lasp2_as_a_what_if_can_be_compared_with_ring_pass_kv():
    p = get_technique("context-parallel")(method="lasp2", linear_attention=1, baseline="pass-kv").predict(
        Setting("H100-SXM", "Llama-3.1-8B", context=32768))
    assert p.value > 0


@pytest.mark.parametrize("model", ["Llama-2-7B", "Llama-2-70B"])
@pytest.mark.parametrize("block", [2048, 256, 1])
def test_8bit_optimizer_memory_ratio_is_one_byte_and_a_scale_per_block_over_four(model, block):
    p = get_technique("8bit-optimizer")(block_size=block).predict(Setting(model=model))
    assert p.metric == "memory_ratio"
    assert p.value == pytest.approx((1 + 4 / block) / 4)
    assert p.breakdown["state_bytes_32bit"] == pytest.approx(get_model(model).params_total * 2 * 4)


@pytest.mark.parametrize(("inner", "outer_bits", "gradient_bits"), [(100, 4, 32), (1, 32, 32), (30, 8, 16)])
def test_streaming_diloco_traffic_ratio_is_inner_steps_times_the_bit_ratio(inner, outer_bits, gradient_bits):
    p = get_technique("streaming-diloco")(inner_steps=inner, outer_bits=outer_bits, gradient_bits=gradient_bits).predict(Setting())
    assert p.metric == "traffic_ratio"
    assert p.value == pytest.approx(inner * gradient_bits / outer_bits)
    assert p.baseline["bytes_per_step"] / p.technique_cost["bytes_per_step"] == pytest.approx(p.value)


def test_chunked_prefill_compares_capacities_on_the_same_requests():
    p = predict("chunked-prefill")
    assert p.metric == "capacity_ratio"
    assert p.value == pytest.approx(p.breakdown["sarathi"] / p.breakdown["vllm"])
    assert p.technique_cost["capacity_qps"] == p.breakdown["sarathi"] > 0


def test_shared_prefix_serving_compares_decode_throughputs():
    p = predict("shared-prefix-serving")
    b = p.breakdown
    assert p.value == pytest.approx(b["shared_tokens_per_s"] / b["baseline_tokens_per_s"]) and p.value > 1


# -- kernelab whatif ----------------------------------------------------------------------------------------------
def test_whatif_json_gives_the_speedup_its_baseline_and_breakdown(capsys):
    rec = run_json(capsys, "whatif", "draft-heads", "--device", "A100", "--model", "vicuna-7b",
                   "--set", "mean_accepted_tokens=3.5", "--set", "tree_tokens=64", "--json")
    assert rec["technique"] == "draft-heads" and rec["metric"] == "speedup"
    assert rec["speedup"] == rec["value"] > 1
    assert rec["setting"]["device"] == "A100-SXM-80GB" and rec["setting"]["model"] == "Vicuna-7B"
    assert rec["parameters"]["tree_tokens"] == 64 and rec["parameters"]["mean_accepted_tokens"] == 3.5
    assert rec["baseline"]["time_per_token_s"] > 0
    assert set(rec["breakdown"]) >= {"draft_s", "verify_s", "round_s", "tokens_per_round"}
    expected = get_technique("draft-heads")(mean_accepted_tokens=3.5, tree_tokens=64).predict(
        Setting("A100-SXM-80GB", "Vicuna-7B", context=1024))
    assert rec["value"] == pytest.approx(expected.value)


def test_whatif_passes_batch_context_tp_and_kv_bits(capsys):
    rec = run_json(capsys, "whatif", "kv-quant", "--device", "H100-SXM", "--model", "Llama-3.1-8B", "--batch", "16",
                   "--context", "8192", "--tp", "2", "--kv-bits", "16", "--set", "metric=memory_ratio", "--json")
    assert rec["setting"] == Setting("H100-SXM", "Llama-3.1-8B", 16, 8192, 2).as_dict()
    assert rec["metric"] == "memory_ratio" and rec["speedup"] is None


def test_whatif_prints_the_metric_the_reason_and_the_breakdown(capsys):
    assert main(["whatif", "draft-free", "--set", "mean_accepted_tokens=2.5"]) == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "tokens per round" in out and "verify_over_decode" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["whatif", "draft-hedas"], "unknown technique 'draft-hedas'; did you mean 'draft-heads'"),
    (["whatif", "draft-heads", "--set", "tree_tokens"], "--set takes name=value"),
    (["whatif", "draft-heads", "--set", "=64"], "--set takes name=value"),
    (["whatif", "draft-heads", "--set", "tree_tokens=many"], "tree_tokens must be a number"),
    (["whatif", "draft-heads", "--set", "tree_tokens=0"], "tree_tokens must lie in"),
    (["whatif", "draft-heads", "--set", "tre_tokens=64"], "did you mean 'tree_tokens'"),
    (["whatif", "draft-free", "--set", "mean_accepted_tokens=2", "--device", "H100-SX"], "unknown device 'H100-SX'"),
    (["whatif", "draft-free", "--set", "mean_accepted_tokens=2", "--batch", "0"], "batch must be an integer >= 1"),
    (["whatif", "draft-heads", "--set", "mean_accepted_tokens=3", "--set", "tree_tokens=nan"], "tree_tokens"),
])
def test_whatif_bad_input_exits_2_with_a_one_line_message(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("kernelab: error:") and "\n" not in err
    assert message in err
    assert captured.out == ""



def test_context_parallel_over_a_pcie_box_hides_less_than_over_the_nvswitch_node():
    s = Setting("H100-SXM", "Llama-2-7B", context=131072)
    node, pcie = (get_technique("context-parallel")(cp=8, method="tokenring", baseline="pass-kv", topology=t).predict(s)
                  for t in ("node", "pcie"))
    assert pcie.technique_cost["time_s"] > node.technique_cost["time_s"]
    with pytest.raises(InvalidValueError, match="topology"):
        get_technique("context-parallel")(topology="torus").predict(s)


# -- against Spec-Bench's leaderboard (sim/data/measured/specbench_leaderboard.csv) ---------------------------------
def test_every_leaderboard_speedup_is_predicted_a_speedup():
    from sim.techniques import specbench

    for r in specbench.rows():
        assert (r.predicted > 1) == (r.measured > 1), r


def test_each_method_gains_more_on_the_a100_than_on_the_rtx_3090_as_measured():
    from sim.techniques import specbench

    by = {(r.device, r.model, r.method): r for r in specbench.rows()}
    for (device, model, method), r in by.items():
        if device == "RTX-3090":
            a100 = by[("A100-SXM-80GB", model, method)]
            assert a100.measured > r.measured, "the data's own ordering"
            assert a100.predicted > r.predicted, (method, a100.predicted, r.predicted)


def test_the_readme_shows_the_specbench_table():
    from pathlib import Path

    from sim.techniques import specbench

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for line in specbench.table().splitlines()[2:]:
        assert line in readme, f"README is out of date; rerun python -m sim.techniques.specbench: missing {line}"


@pytest.mark.parametrize("metric", ["speedup", "throughput_ratio"])
def test_block_transformer_gains_more_as_the_context_grows(metric):
    t = get_technique("block-transformer")(metric=metric)
    gains = [t.predict(Setting("A100-SXM-80GB", "Llama-2-7B", batch=16, context=c)).value for c in (1024, 4096, 16384)]
    assert 1 < gains[0] < gains[1] < gains[2], gains


def test_block_transformer_global_layers_read_one_kv_entry_per_block():
    p = get_technique("block-transformer")(metric="throughput_ratio", block_length=4, global_fraction=0.5).predict(
        Setting("A100-SXM-80GB", "Llama-2-7B", context=4096))
    assert p.breakdown["kv_bytes_ratio"] == pytest.approx((16 * 4096 / 4 + 16 * 4) / (32 * 4097))
    assert p.breakdown["batch_block"] > p.breakdown["batch_baseline"]


# -- per-round latency of a ring (TokenRing's traces) and FLOPs of token pruning ----------------------------------
@pytest.mark.parametrize("method", ["pass-kv", "tokenring"])
@pytest.mark.parametrize(("device", "topology"), [("A10", "pcie"), ("H100-SXM", "node")])
def test_a_rounds_latency_is_the_gap_between_its_start_and_the_next_rounds_on_the_layers_timeline(method, device, topology):
    import hwmodels as hw
    from sim import step as steps
    from sim.context_parallel import context_parallel_cost

    cp, s = 4, Setting(device, "Llama-2-7B", batch=1, context=24000)
    topo = hw.pcie_box(s.gpu.pcie_gen, cp) if topology == "pcie" else None
    cost = context_parallel_cost(s.llm, s.gpu, steps.prefill(1, 24000), cp, method, pad=True, topology=topo)
    part = cost.parts[method]
    start = part.variants[int(part.variant)].timeline.schedule().start
    for r in range(cp - 1):
        gap = float(start[f"attn_round_{r + 1}"] - start[f"attn_round_{r}"])
        p = get_technique("context-parallel")(cp=cp, method=method, topology=topology, metric="latency_s",
                                              round=r).predict(s)
        assert p.value == pytest.approx(gap, rel=1e-12)
        b = p.breakdown
        assert b["bound"] == ("communication" if b["exchange_s"] > b["attention_s"] else "attention compute")


def test_tokenrings_third_round_carries_a_query_block_and_an_output_block_at_once():
    s = Setting("A10", "Llama-2-7B", batch=1, context=24000)
    rounds = [get_technique("context-parallel")(cp=4, method="tokenring", topology="pcie", metric="latency_s",
                                                round=r).predict(s).breakdown["exchange_s"] for r in range(3)]
    assert rounds[0] == pytest.approx(rounds[1])  # a query block forward only
    assert rounds[2] > 1.5 * rounds[1]  # and round 1's output back through the same switch egress


def test_a_round_outside_the_ring_or_an_unknown_metric_is_refused():
    s = Setting("A10", "Llama-2-7B", batch=1, context=24000)
    with pytest.raises(InvalidValueError, match="rounds are 0..3"):
        get_technique("context-parallel")(cp=4, metric="latency_s", round=4).predict(s)
    with pytest.raises(InvalidValueError, match="no ring rounds"):
        get_technique("context-parallel")(cp=4, method="lasp2", linear_attention=1, metric="latency_s").predict(s)
    with pytest.raises(InvalidValueError, match="speedup or latency_s"):
        get_technique("context-parallel")(cp=4, metric="throughput").predict(s)


@pytest.mark.parametrize("kept", [0.078, 0.25, 0.5])
def test_pruning_tokens_from_every_layer_cuts_prefill_flops_at_least_in_proportion(kept):
    # GEMM FLOPs scale with the tokens, attention's with their square: the cut is at least the tokens'
    s = Setting("A100-SXM-80GB", "Vicuna-7B", batch=1, context=626)
    p = get_technique("token-pruning")(step="prefill", metric="flops_reduction", kept_fraction=kept).predict(s)
    kept_tokens = p.technique_cost["tokens_after_pruning"]
    assert p.metric == "flops_reduction" and 1 - kept_tokens / 626 <= p.value < 1
    half = get_technique("token-pruning")(step="prefill", metric="flops_reduction", kept_fraction=kept,
                                          after_layer_fraction=0.5).predict(s)
    assert half.value == pytest.approx(p.value / 2)


# -- block decoding, superposed decoding, KV reuse after an edit, compressed gradients, tree-reduction decode -----------
@pytest.mark.parametrize("device", ["A100-SXM-80GB", "H100-SXM"])
def test_a_block_of_one_token_is_plain_decoding_and_a_block_buys_less_than_its_size(device):
    s = Setting(device, "Llama-2-7B", batch=8, context=2048)
    assert get_technique("block-decoding")(block_tokens=1).predict(s).value == pytest.approx(1.0, rel=0.02)
    p = get_technique("block-decoding")(block_tokens=16).predict(s)
    assert 1.0 < p.value < 16.0
    assert p.value == pytest.approx(16 / p.breakdown["verify_over_decode"])


def test_superposed_decoding_beats_k_sequential_generations_by_k_and_a_batch_of_k_by_the_batch_cost():
    s = Setting("A100-SXM-80GB", "Llama-2-7B", batch=1, context=512)
    sequential = get_technique("superposed")(drafts=3, baseline="sequential").predict(s)
    batched = get_technique("superposed")(drafts=3, baseline="batched").predict(s)
    assert sequential.value == pytest.approx(3.0)
    assert 1.0 <= batched.value < 1.5  # at batch 1 a step streams the weights whatever the batch
    with pytest.raises(InvalidValueError, match="batched or sequential"):
        get_technique("superposed")(baseline="parallel").predict(s)


@pytest.mark.parametrize("position", [0.1, 0.5, 0.9])
def test_keeping_the_cache_after_an_edit_wins_more_the_earlier_the_edit(position):
    s = Setting("A100-SXM-80GB", "DeepSeek-Coder-6.7B", batch=1, context=8000)
    p = get_technique("kv-edit")(edit_position=position, edit_tokens=16).predict(s)
    b = p.breakdown
    assert p.value == pytest.approx(b["recompute_s"] / (b["edited_prefill_s"] + b["rotate_keys_s"]))
    later = get_technique("kv-edit")(edit_position=min(position + 0.05, 0.99), edit_tokens=16).predict(s)
    assert later.value < p.value
    flops = get_technique("kv-edit")(edit_position=position, metric="flops_reduction").predict(s)
    assert 0 < flops.value < 1


def test_an_edit_past_the_end_of_the_context_is_refused():
    with pytest.raises(InvalidValueError, match="does not fit"):
        get_technique("kv-edit")(edit_position=0.99, edit_tokens=500).predict(Setting(model="Llama-2-7B", context=1000))


@pytest.mark.parametrize(("params", "ratio"), [({"bits": 8}, 4.0), ({"bits": 4}, 8.0),
                                                ({"bits": 32, "kept_fraction": 0.01}, 32 / (0.01 * 64))])
def test_compressed_gradients_send_the_bits_kept_plus_an_index_per_top_k_value(params, ratio):
    p = get_technique("grad-compression")(**params).predict(Setting("H100-SXM", "Llama-2-7B"))
    assert p.value == pytest.approx(ratio)
    assert p.breakdown["dense_all_reduce_s"] > 0 and p.breakdown["compressed_all_gather_s"] > 0


def test_tree_decode_splits_the_attention_and_pays_two_small_all_reduces():
    s = Setting("H100-SXM", "Llama-3.1-8B", batch=1, context=262144)
    single = get_technique("cp-decode")(cp=8, baseline="single-gpu").predict(s)
    ring = get_technique("cp-decode")(cp=8, baseline="ring").predict(s)
    b = single.breakdown
    assert single.value == pytest.approx(b["baseline_s"] / (b["local_attention_s"] + b["merge_all_reduces_s"]))
    assert 1.0 < single.value < 8.0  # never more than the GPUs
    assert ring.value > single.value  # the ring moves the whole cache; the tree a few numbers per head
    short = get_technique("cp-decode")(cp=8, baseline="single-gpu").predict(Setting("H100-SXM", "Llama-3.1-8B", context=1024))
    assert short.value < 1.0  # at a short context the all-reduces cost more than the attention saved


@pytest.mark.parametrize("device", ["L4", "H100-SXM"])
def test_an_encoder_decoder_decodes_with_its_decoder_layers_and_holds_their_share_of_the_cache(device):
    s = Setting(device, "Llama-2-7B", batch=1, context=512)
    steps_ = [get_technique("encoder-decoder")(encoder_fraction=f).predict(s).value for f in (0.25, 0.5, 0.75)]
    assert 1.0 < steps_[0] < steps_[1] < steps_[2]  # fewer decoder layers, faster steps
    half = get_technique("encoder-decoder")(encoder_fraction=0.5, metric="throughput_ratio").predict(s)
    b = half.breakdown
    assert b["kv_bytes_ratio"] == 0.5 and b["batch_encoder_decoder"] >= 2 * b["batch_baseline"] - 1
    first = get_technique("encoder-decoder")(metric="ttft_speedup").predict(s)
    assert first.value > 1.0 and first.breakdown["encoder_s"] < first.breakdown["baseline_s"]
    with pytest.raises(InvalidValueError, match="ttft_speedup, speedup or throughput_ratio"):
        get_technique("encoder-decoder")(metric="latency").predict(s)


@pytest.mark.parametrize("step", ["decode", "prefill"])
def test_weight_sparsity_buys_at_most_the_inverse_of_what_it_keeps(step):
    s = Setting("A100-SXM-80GB", "Llama-2-7B", batch=4, context=2048)
    assert get_technique("weight-sparsity")(pattern="block", kept_fraction=1.0, step=step).predict(s).value == pytest.approx(1.0)
    for kept in (0.25, 0.5):
        p = get_technique("weight-sparsity")(pattern="block", kept_fraction=kept, step=step).predict(s)
        assert 1.0 < p.value < 1 / kept
    two_four = get_technique("weight-sparsity")(pattern="2:4", step=step).predict(s)
    assert 1.0 < two_four.value < 2.0  # its index bits and the untouched attention keep it under 2x


def test_2_4_sparsity_needs_sparse_tensor_cores():
    with pytest.raises(InvalidValueError, match="sparse Tensor Cores"):
        get_technique("weight-sparsity")(pattern="2:4").predict(Setting("V100-SXM2", "Llama-2-7B"))


def test_gradient_coding_pays_its_load_without_stragglers_and_wins_when_they_are_common():
    gc = get_technique("gradient-coding")
    assert gc(stragglers=1, straggler_probability=0.0).predict(Setting()).value == pytest.approx(1 / 2)
    assert gc(stragglers=0, load=1.0).predict(Setting()).value == pytest.approx(1.0)
    rare, common = (gc(workers=32, stragglers=2, straggler_probability=p, slowdown=10).predict(Setting()).value
                    for p in (0.001, 0.02))
    assert rare < 1.0 < common
    # a lower load for the same tolerance (sequential gradient coding) is worth exactly its ratio
    assert gc(stragglers=2, load=1.5).predict(Setting()).value == pytest.approx(
        2 * gc(stragglers=2, load=3.0).predict(Setting()).value)
    with pytest.raises(InvalidValueError, match="fewer than"):
        gc(workers=4, stragglers=4).predict(Setting())


def test_collaborative_decoding_gains_more_the_more_scales_the_small_model_refines():
    s = Setting("RTX-4090", "Llama-2-13B", batch=16, context=0)
    cd = get_technique("collaborative-decoding")
    assert cd(draft_steps=10).predict(s).value == pytest.approx(1.0)  # the large model does everything
    values = [cd(draft_steps=d).predict(s).value for d in (8, 6, 4)]
    assert 1.0 < values[0] < values[1] < values[2]
    p = cd(draft_steps=8).predict(s)
    assert p.breakdown["refined_tokens"] == 13 * 13 + 16 * 16
    with pytest.raises(InvalidValueError, match="comma-separated"):
        cd(scales="1,2,x").predict(s)
    with pytest.raises(InvalidValueError, match="exceeds"):
        cd(draft_steps=11).predict(s)


@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_a_name_parameter_with_choices_refuses_any_other_name_when_the_technique_is_made(name):
    for param in TECHNIQUES[name].params:
        if param.choices:
            assert param.default in param.choices
            with pytest.raises(InvalidValueError, match=f"{param.name} must be .*{param.choices[-1]}"):
                get_technique(name)(**{param.name: "no-such-choice"})

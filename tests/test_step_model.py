"""The step cost model: what a prefill, decode or verification step costs, and why."""

import numpy as np
import pytest

import hwmodels as hw
from sim import get_model
from sim import step as steps
from sim.cost import step_cost
from sim.graph import Sharding, step_graph
from sim.pipeline import pipeline_cost
from sim.precision import Precision

LLAMA7 = get_model("Llama-2-7B")
DEVICES = ["A100-SXM-80GB", "H100-SXM", "H200", "L40S", "MI300X"]


def weight_bytes(model, bits=16):
    return sum(float(np.max(op.weight_bytes)) * op.repeat for op in step_graph(model, steps.decode(1, 1), Precision(weight_bits=bits)))


def test_layer_gemm_flops_are_two_per_parameter_per_token():
    tokens = 512
    ops = step_graph(LLAMA7, steps.prefill(1, tokens))
    gemm_flops = sum(float(op.flops) * op.repeat for op in ops if op.kind == "gemm" and op.name != "lm_head")
    assert gemm_flops == pytest.approx(2 * LLAMA7.params_per_layer * LLAMA7.num_layers * tokens)


def test_weights_are_read_once_per_step_whatever_the_batch():
    assert weight_bytes(LLAMA7) == pytest.approx(2 * (LLAMA7.params_per_layer * LLAMA7.num_layers + LLAMA7.vocab_size * LLAMA7.hidden_size))


@pytest.mark.parametrize("device", DEVICES)
def test_batch_one_decode_is_memory_bound_near_weights_over_achievable_bandwidth(device):
    d = hw.get_device(device)
    cost = step_cost(LLAMA7, d, steps.decode(1, 128))
    by = cost.time_by_bound()
    assert by["compute"] == 0 and by["communication"] == 0
    floor = weight_bytes(LLAMA7) / (d.hbm_bytes_per_s * hw.calibration(d).hbm_fraction)
    assert floor < cost.time_s < 1.15 * floor + by["overhead"]


@pytest.mark.parametrize("device", DEVICES)
def test_long_prefill_is_compute_bound(device):
    cost = step_cost(LLAMA7, hw.get_device(device), steps.prefill(1, 4096))
    by = cost.time_by_bound()
    assert by["compute"] > 0.8 * cost.time_s


def test_breakdown_adds_up_to_the_step_time():
    cost = step_cost(get_model("Llama-2-7B"), hw.get_device("H100-SXM"), steps.prefill(2, 1024), tp=2)
    assert sum(cost.time_by_bound().values()) == pytest.approx(cost.time_s)


def test_a_sweep_equals_the_points_evaluated_one_by_one():
    d = hw.get_device("H100-SXM")
    batch = np.array([1, 7, 64, 255])[:, None]
    context = np.array([0, 1000, 32768])[None, :]
    swept = step_cost(LLAMA7, d, steps.decode(batch, context)).time_s
    assert swept.shape == (4, 3)
    for i, b in enumerate(batch[:, 0]):
        for j, c in enumerate(context[0]):
            assert swept[i, j] == pytest.approx(float(step_cost(LLAMA7, d, steps.decode(int(b), int(c))).time_s))


def test_decode_gets_slower_with_batch_and_context_but_throughput_grows_with_batch():
    d = hw.get_device("A100-SXM-80GB")
    cost = step_cost(LLAMA7, d, steps.decode(np.array([1, 2, 8, 32, 128])[:, None], np.array([128, 2048, 16384])[None, :]))
    assert np.all(np.diff(cost.time_s, axis=0) >= 0) and np.all(np.diff(cost.time_s, axis=1) > 0)
    assert np.all(np.diff(cost.tokens_per_s, axis=0) > 0)


def test_a_one_token_verification_costs_a_decode_step():
    d = hw.get_device("H100-SXM")
    one = step_cost(LLAMA7, d, steps.verify(4, 3000, 1), attention="split-kv")
    dec = step_cost(LLAMA7, d, steps.decode(4, 3000))
    assert float(one.time_s) == pytest.approx(float(dec.time_s))


def test_verifying_a_small_tree_costs_about_one_decode_step():
    d = hw.get_device("H100-SXM")
    dec = float(step_cost(LLAMA7, d, steps.decode(1, 2048)).time_s)
    tree = float(step_cost(LLAMA7, d, steps.verify(1, 2048, 64, tree_pairs=64 * 4)).time_s)
    assert dec < tree < 1.3 * dec


def test_ragged_decode_with_equal_contexts_equals_the_uniform_one():
    d = hw.get_device("H200")
    ragged = step_cost(LLAMA7, d, steps.ragged_decode([777] * 5)).time_s
    assert float(ragged) == pytest.approx(float(step_cost(LLAMA7, d, steps.decode(5, 777)).time_s))


def test_a_mixed_batch_costs_less_than_its_parts_run_apart():
    d = hw.get_device("A100-SXM-80GB")
    mixed = float(step_cost(LLAMA7, d, steps.mixed([(512, 0)], [1000] * 16)).time_s)
    apart = float(step_cost(LLAMA7, d, steps.prefill(1, 512)).time_s) + float(step_cost(LLAMA7, d, steps.decode(16, 1000)).time_s)
    alone = float(step_cost(LLAMA7, d, steps.prefill(1, 512)).time_s)
    assert alone < mixed < apart


def test_four_bit_weights_speed_up_batch_one_decode_and_an_fp8_kv_cache_halves_kv_bytes():
    """4-bit weights read a quarter of the bytes (plus group scales) but pay for their dequantization:
    a speed-up near the 1.88x gpt-fast reports on A100 (196.8 vs 104.9 tokens/s), far from 4x."""
    d = hw.get_device("H100-SXM")
    t16 = float(step_cost(LLAMA7, d, steps.decode(1, 1024)).time_s)
    t4 = float(step_cost(LLAMA7, d, steps.decode(1, 1024), Precision(weight_bits=4)).time_s)
    assert 0.45 * t16 < t4 < 0.7 * t16
    kv16 = [op for op in step_graph(LLAMA7, steps.decode(8, 4096)) if op.kind == "attention"][0].kv_bytes
    kv8 = [op for op in step_graph(LLAMA7, steps.decode(8, 4096), Precision(kv_bits=8)) if op.kind == "attention"][0].kv_bytes
    assert float(kv8) == pytest.approx(float(kv16) / 2)


def test_split_kv_beats_flash_attention_for_one_long_sequence_and_matches_it_when_the_gpu_is_full():
    d = hw.get_device("H100-SXM")
    attn = lambda cost: next(o for o in cost.ops if o.op.kind == "attention").time_s  # noqa: E731
    long_one = steps.decode(1, 65536)
    assert attn(step_cost(LLAMA7, d, long_one, attention="split-kv")) < 0.5 * attn(step_cost(LLAMA7, d, long_one, attention="flash"))
    full = steps.decode(256, 4096)
    assert attn(step_cost(LLAMA7, d, full, attention="split-kv")) == pytest.approx(attn(step_cost(LLAMA7, d, full, attention="flash")), rel=0.05)


def test_tensor_parallelism_adds_two_all_reduces_per_layer_and_shards_the_weights():
    d = hw.get_device("H100-SXM")
    one, eight = step_cost(LLAMA7, d, steps.decode(1, 1024)), step_cost(LLAMA7, d, steps.decode(1, 1024), tp=8)
    assert not one.comms and eight.comms[0].repeat == 2 * LLAMA7.num_layers
    assert weight_bytes(LLAMA7) / 8 == pytest.approx(
        sum(float(op.weight_bytes) * op.repeat for op in step_graph(LLAMA7, steps.decode(1, 1), sharding=Sharding(tp=8))), rel=0.01)
    assert eight.time_s < one.time_s


def test_pipeline_bubble_follows_gpipe():
    d = hw.get_device("A100-SXM-80GB")
    p = pipeline_cost(LLAMA7, d, steps.prefill(8, 1024), pp=4, microbatches=8)
    assert p.bubble_fraction == pytest.approx(3 / 11)
    assert float(p.time_s) == pytest.approx(11 * float(p.stage_s + p.p2p.time_s))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: step_cost(LLAMA7, hw.get_device("H100-SXM"), steps.decode(1, 10), tp=3), "cannot split evenly"),
        (lambda: pipeline_cost(LLAMA7, hw.get_device("H100-SXM"), steps.decode(1, 10), pp=33), "cannot be cut into 33"),
        (lambda: steps.decode(0, 10), "at least 1"),
        (lambda: steps.decode(1.5, 10), "whole numbers"),
        (lambda: steps.prefill(1, -4), "at least 1"),
        (lambda: steps.verify(1, 100, 4, tree_pairs=100), "between T"),
        (lambda: Precision(weight_bits=5), "weight_bits"),
        (lambda: step_cost(LLAMA7, hw.get_device("H100-SXM"), steps.decode(1, 1), attention="flsh"), "did you mean 'flash'"),
    ],
)
def test_impossible_inputs_are_explained(call, message):
    with pytest.raises(hw.KernelabError, match=message):
        call()


def test_prefill_attention_pays_for_the_softmax_exponentials_on_the_sfus():
    """matmuls + exponentials on the SFUs + (3 + d/BLOCK_N) fp32 issues per score, in series, on the padded tiles
    and over the grid's efficiency (sim.attention.fa2_grid)."""
    from sim.attention import fa2_grid

    d = hw.get_device("A100-SXM-80GB")
    step = steps.prefill(1, 16384)
    attn = next(o for o in step_cost(LLAMA7, d, step).ops if o.op.kind == "attention")
    matmul_s = float(attn.op.flops) / (d.peak("bf16") * hw.calibration(d).gemm_fraction["bf16"])
    scores = float(step.attention_pairs) * LLAMA7.num_heads
    exp_s = scores / (d.sm_count * 16 * d.clock_hz)
    fp32_s = scores * (3 + 128 / 64) / d.peak("fp32")  # FA2's kBlockN is 64 at head_dim 128
    efficiency, padding = (float(x) for x in fa2_grid(step, LLAMA7.num_heads, 128, d))
    assert float(attn.compute_s) == pytest.approx((matmul_s + exp_s + fp32_s) * padding / efficiency)
    assert 1.0 < padding < 1.01 and 0.85 < efficiency < 1.0  # at 16k tokens the diagonal and the tail are small
    assert 0.15 < exp_s / matmul_s < 0.4  # head_dim 128 on Ampere: 512 FLOPs per exponential


def test_flash_attention_2_runs_at_the_mma_sync_rate_on_hopper():
    """On H100 FA2's mma.sync reaches 2/3 of the wgmma peak (calibration mma_sync_fraction); not on A100."""
    step = steps.prefill(1, 16384)
    for name, fraction in (("H100-SXM", 0.6667), ("A100-SXM-80GB", 1.0)):
        d = hw.get_device(name)
        cal = hw.calibration(d)
        assert cal.mma_sync_fraction == pytest.approx(fraction)
        attn = next(o for o in step_cost(LLAMA7, d, step).ops if o.op.kind == "attention")
        matmul_s = float(attn.op.flops) / (d.peak("bf16") * cal.gemm_fraction["bf16"] * fraction)
        assert float(attn.compute_s) > matmul_s  # plus the softmax, in series


def test_int4_weight_only_gemms_pay_their_dequantization_after_their_loads():
    """W4A16 (gpt-fast's tinygemm): time = max(compute, loads + dequantization issue) + launch (sim.dequant)."""
    d = hw.get_device("A100-SXM-80GB")
    cost = step_cost(LLAMA7, d, steps.decode(1, 512), Precision(weight_bits=4))
    gemms = [o for o in cost.ops if o.op.kind == "gemm"]
    assert all(float(o.dequant_s) > 0 for o in gemms)
    for o in gemms:
        assert float(o.time_s) == pytest.approx(
            max(float(o.compute_s), float(o.memory_s) + float(o.dequant_s)) + float(o.overhead_s))
    assert "tinygemm" in gemms[0].note
    assert cost.as_dict()["ops"][2]["dequant_s"] > 0


def test_dequantization_takes_what_the_sms_and_clock_allow():
    base = hw.get_device("A100-SXM-80GB")
    wide = hw.derive(base, "A100-2xSM", scale={"sm_count": 2.0})
    step, p = steps.decode(1, 512), Precision(weight_bits=4)
    qkv = [next(o for o in step_cost(LLAMA7, d, step, p).ops if o.op.name == "qkv_proj") for d in (base, wide)]
    assert float(qkv[1].dequant_s) == pytest.approx(float(qkv[0].dequant_s) / 2)


def test_weight_only_widths_without_a_measured_kernel_say_so():
    cost = step_cost(LLAMA7, hw.get_device("A100-SXM-80GB"), steps.decode(1, 512), Precision(weight_bits=8))
    qkv = next(o for o in cost.ops if o.op.name == "qkv_proj")
    assert float(qkv.dequant_s) == 0 and "not modelled" in qkv.note
    fp8 = step_cost(LLAMA7, hw.get_device("H100-SXM"), steps.decode(1, 512), Precision(weight_bits=8, activation_bits=8))
    assert all(o.op.weight_only_bits is None for o in fp8.ops)


MIXTRAL = get_model("Mixtral-8x7B")


@pytest.mark.parametrize("tokens", [1, 3, 17, 200, 511, 2048])
@pytest.mark.parametrize("tile", [16.0, 64.0, 128.0])
def test_uneven_expert_groups_pad_to_the_tiles_the_binomial_expects(tokens, tile):
    """E[sum over 8 experts of ceil(n / tile)], n ~ Binomial(T, 2/8), against the exact sum over the pmf."""
    from math import ceil, exp, lgamma, log

    from sim.cost import expected_group_tiles
    from sim.graph import Routing

    p = 0.25

    def pmf(n):
        return exp(lgamma(tokens + 1) - lgamma(n + 1) - lgamma(tokens - n + 1) + n * log(p) + (tokens - n) * log(1 - p))

    exact = 8 * sum(pmf(n) * ceil(n / tile) for n in range(tokens + 1))
    got = float(expected_group_tiles(Routing(np.float64(tokens), p, 8.0), tile))
    assert got == pytest.approx(exact, rel=0.01, abs=0.02)


def test_an_moe_layer_costs_routing_the_copy_per_expert_and_the_weighted_sum_beside_its_grouped_gemms():
    ops = {op.name: op for op in step_graph(MIXTRAL, steps.prefill(1, 2048))}
    assert [n for n in ops if n.startswith("moe")] == ["moe_router", "moe_route", "moe_permute", "moe_up", "moe_act",
                                                       "moe_down", "moe_combine"]
    rows, h = 2048 * 2, MIXTRAL.hidden_size
    assert float(ops["moe_permute"].activation_bytes) == 2 * rows * h * 2  # read and write each expert row once
    assert float(ops["moe_combine"].activation_bytes) == (rows + 2048) * h * 2  # k rows in, one out per token
    assert ops["moe_up"].grouped and ops["moe_down"].grouped and not ops["moe_router"].grouped


def test_grouped_expert_gemms_stream_at_their_measured_rate_where_there_is_one():
    """On the H200 the grouped rate (kernelab's own run) is below the GEMV rate, so a decode step's expert
    GEMMs take longer than dense GEMMs of the same weights would; an unmeasured card keeps its GEMV rate."""
    for device, slower in (("H200", True), ("A100-SXM-80GB", False)):
        dev = hw.get_device(device)
        cal = hw.calibration(dev)
        grouped, gemv = cal.achievable_grouped_gemm_bytes_per_s(dev), cal.achievable_gemv_bytes_per_s(dev)
        assert (grouped < 0.8 * gemv) if slower else grouped == gemv
        cost = step_cost(MIXTRAL, dev, steps.decode(16, 1024))
        up = next(t for t in cost.ops if t.op.name == "moe_up")
        assert float(up.memory_s) == pytest.approx(float(up.op.bytes) / grouped)


@pytest.mark.parametrize("device", ["H100-SXM", "A100-SXM-80GB"])
def test_fa2s_causal_grid_loses_to_its_tail_and_less_so_as_the_batch_grows(device):
    """sim.attention.fa2_grid: a causal prefill's efficiency is below the unmasked one's at the same grid, and
    rises toward it with the sequences; a grid smaller than the GPU waits for its largest CTA."""
    from sim.attention import fa2_grid

    d = hw.get_device(device)
    causal = [float(fa2_grid(steps.prefill(b, 2048), 32, 128, d)[0]) for b in (1, 2, 4, 16)]
    assert causal == sorted(causal) and causal[0] < 0.75 < causal[-1] < 1.0
    full = steps.prefill(1, 2048)
    full = steps.Step(full.kind, full.seqs, full.new_tokens, full.kv_read_tokens, np.float64(2048 * 2048),
                      full.logit_rows, full.max_kv_tokens, causal=False)
    assert float(fa2_grid(full, 32, 128, d)[0]) > causal[0]
    # 8 CTAs of 2, 4, ..., 16 key tiles (64 keys each), all resident at once: the largest sets the time
    one_head = float(fa2_grid(steps.prefill(1, 1024), 1, 128, d)[0])
    assert one_head == pytest.approx(sum(range(2, 17, 2)) / (d.sm_count * 16))

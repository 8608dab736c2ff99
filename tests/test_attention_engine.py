"""The kernel simulator as the step model's attention cost (sim.attention_engine)."""

import numpy as np
import pytest

import hwmodels as hw
from hwmodels.errors import InvalidValueError, UnknownNameError
from sim import attention_engine, step as steps
from sim.cost import step_cost
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.run import simulate_schedule
from sim.model import get_model

MODEL = get_model("llama-3.1-8b")
H100 = hw.get_device("H100-SXM")


def attention_op(cost):
    return next(o for o in cost.ops if o.op.kind == "attention")


@pytest.mark.parametrize("name,schedule", [("engine-split-kv", "split-kv"), ("engine-lean", "lean")])
@pytest.mark.parametrize("batch,context", [(1, 32768), (16, 4096)])
def test_the_attention_op_costs_what_the_engine_simulates_plus_launches(name, schedule, batch, context):
    cost = step_cost(MODEL, H100, steps.decode(batch, context), attention=name)
    problem = AttentionProblem(batch=batch, heads=32, kv_heads=8, head_dim=128, context=context + 1)
    result, program = simulate_schedule(schedule, problem, H100, launch=0.0)
    launch = hw.calibration(H100).graph_launch_s
    assert float(attention_op(cost).time_s) == pytest.approx(result.seconds + len(program.kernels) * launch, rel=1e-12)


def test_a_prefill_runs_the_flash_schedule_causal():
    cost = step_cost(MODEL, H100, steps.prefill(2, 1000), attention="engine-flash")
    problem = AttentionProblem(batch=2, heads=32, kv_heads=8, head_dim=128, context=1000, query_tokens=1000, causal=True)
    result, _ = simulate_schedule("flash", problem, H100, launch=0.0)
    assert float(attention_op(cost).time_s) == pytest.approx(result.seconds + hw.calibration(H100).graph_launch_s)


def test_a_sweep_simulates_each_distinct_shape_once(monkeypatch):
    attention_engine._cache.clear()
    calls = []
    import sim.kernel.schedules.run as run

    original = run.simulate_schedule

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "simulate_schedule", counting)
    batches = np.array([1, 4, 4, 1])[:, None]
    contexts = np.array([2048, 2048, 8192])[None, :]
    first = step_cost(MODEL, H100, steps.decode(batches, contexts), attention="engine-split-kv").time_s
    assert len(calls) == 4  # 2 distinct batches x 2 distinct contexts
    again = step_cost(MODEL, H100, steps.decode(batches, contexts), attention="engine-split-kv").time_s
    assert len(calls) == 4 and np.array_equal(first, again)


def test_the_breakdown_says_decode_attention_is_memory_bound():
    op = attention_op(step_cost(MODEL, H100, steps.decode(8, 16384), attention="engine-lean"))
    assert op.bound == "memory" and float(op.memory_s) > float(op.compute_s)


def test_no_engine_time_beats_the_hbm_roofline():
    for name in ("engine-split-kv", "engine-lean"):
        op = attention_op(step_cost(MODEL, H100, steps.decode(4, 65536), attention=name))
        assert float(op.time_s) >= float(op.op.bytes) / H100.hbm_bytes_per_s


@pytest.mark.parametrize("step,name,match", [
    (steps.ragged_decode([10, 2000]), "engine-lean", "different lengths"),
    (steps.prefill(1, 512), "engine-lean", "covers decode steps, not prefill"),
    (steps.verify(1, 512, 4), "engine-split-kv", "not verify"),
])
def test_shapes_the_schedules_do_not_cover_are_refused(step, name, match):
    with pytest.raises(InvalidValueError, match=match):
        step_cost(MODEL, H100, step, attention=name)


def test_unknown_engine_names_suggest_the_close_ones():
    with pytest.raises(UnknownNameError, match="engine-lean"):
        step_cost(MODEL, H100, steps.decode(1, 10), attention="engine-lena")


def test_verifying_one_token_with_the_tree_schedule_is_a_split_kv_decode():
    verify = attention_op(step_cost(MODEL, H100, steps.verify(4, 4096, 1), attention="engine-tree"))
    decode = attention_op(step_cost(MODEL, H100, steps.decode(4, 4096), attention="engine-split-kv"))
    assert float(verify.time_s) == float(decode.time_s)


def test_a_64_token_tree_costs_far_less_than_64_decodes():
    one = float(attention_op(step_cost(MODEL, H100, steps.verify(4, 4096, 1), attention="engine-tree")).time_s)
    tree = float(attention_op(step_cost(MODEL, H100, steps.verify(4, 4096, 64, tree=True), attention="engine-tree")).time_s)
    assert one < tree < 3 * one  # the prefix is read once for all 64 tokens


def test_the_tree_schedule_does_not_prefill():
    with pytest.raises(InvalidValueError, match="engine-tree covers decode and verify"):
        step_cost(MODEL, H100, steps.prefill(1, 512), attention="engine-tree")

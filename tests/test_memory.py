"""Memory per GPU: weights, KV cache, activations; the largest batch; a clear 'does not fit'."""

import numpy as np
import pytest

import hwmodels as hw
from sim import get_model
from sim import step as steps
from sim.memory import DoesNotFitError, check_fits, footprint, max_batch
from sim.precision import Precision

H100 = hw.get_device("H100-SXM")


def test_weights_shard_over_tensor_and_pipeline_parallel_gpus():
    m = get_model("Llama-2-70B")
    one = footprint(m, H100, steps.decode(1, 1), tp=1)
    eight = footprint(m, H100, steps.decode(1, 1), tp=4, pp=2)
    assert float(one.weights_bytes) == pytest.approx(2 * m.params_total)
    assert float(eight.weights_bytes) == pytest.approx(2 * m.params_total / 8)


def test_kv_cache_is_sequences_times_context_times_bytes_per_token():
    m = get_model("Llama-2-7B")
    fp = footprint(m, H100, steps.decode(3, 999))
    assert float(fp.kv_cache_bytes) == pytest.approx(3 * 1000 * 512 * 1024)


def test_kv_heads_are_replicated_beyond_their_count():
    m = get_model("Llama-2-70B")  # 8 KV heads
    kv8 = float(footprint(m, H100, steps.decode(4, 4096), tp=8).kv_cache_bytes)
    kv16 = float(footprint(m, H100, steps.decode(4, 4096), tp=16).kv_cache_bytes)
    assert kv8 == kv16 == pytest.approx(4 * 4097 * 320 * 1024 / 8)


def test_max_batch_fills_the_usable_memory_and_one_more_does_not_fit():
    m = get_model("Llama-2-7B")
    for context in (1024, 4096, 16384):
        b = int(max_batch(m, H100, context))
        assert b >= 1
        check_fits(m, H100, steps.decode(b, context))
        with pytest.raises(DoesNotFitError):
            check_fits(m, H100, steps.decode(b + 1, context))


def test_max_batch_shrinks_with_context_and_grows_with_fewer_kv_bits():
    m = get_model("Llama-3.1-8B")
    b16 = max_batch(m, H100, np.array([2048, 8192, 32768]))
    b8 = max_batch(m, H100, np.array([2048, 8192, 32768]), Precision(kv_bits=8))
    assert np.all(np.diff(b16) < 0) and np.all(b8 > b16)


def test_a_model_that_does_not_fit_says_by_how_much_and_what_would_help():
    with pytest.raises(DoesNotFitError) as info:
        check_fits(get_model("Llama-2-70B"), H100, steps.decode(8, 4096))
    msg = str(info.value)
    assert "does not fit on 1x H100-SXM (tp=1, pp=1, ep=1, cp=1)" in msg and "short by 76.7" in msg
    assert "weights alone need at least 2 GPUs" in msg


def test_max_batch_is_zero_when_the_weights_do_not_fit():
    assert int(max_batch(get_model("Llama-3.1-405B"), H100, 1024, tp=2)) == 0


def test_expert_parallelism_spreads_the_experts_and_context_parallelism_the_kv_cache():
    mixtral = get_model("Mixtral-8x7B")
    one = footprint(mixtral, H100, steps.decode(1, 1))
    two = footprint(mixtral, H100, steps.decode(1, 1), ep=2)
    experts = mixtral.num_layers * mixtral.num_experts * mixtral.mlp_params_per_expert * 2
    assert float(one.weights_bytes - two.weights_bytes) == pytest.approx(experts / 2)
    llama = get_model("Llama-2-7B")
    kv1 = float(footprint(llama, H100, steps.prefill(1, 32768)).kv_cache_bytes)
    kv8 = float(footprint(llama, H100, steps.prefill(1, 32768), cp=8).kv_cache_bytes)
    assert kv8 == pytest.approx(kv1 / 8)

"""The serving simulator's memoized iteration cost against direct step-model calls.

``sim.serving.IterationCost`` claims its tables are exact, not approximations:
a decode-only or prefill-only iteration costs what ``sim.cost.step_cost`` says
for the same step, part by part, and a run of ``steps`` repeated iterations
costs ``steps`` separate iterations. Dense token counts beyond
``EXACT_LIMIT`` are interpolated on a geometric grid.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwmodels as hw
from sim import get_model
from sim import step as steps
from sim.cost import step_cost
from sim.precision import Precision
from sim.serving import replica_cost
from sim.serving.iteration_cost import BOUNDS, EXACT_LIMIT, EXACT_TOKENS, POINTS_PER_DOUBLING

REL = 1e-9
#: (device, model, tp, precision): one GPU and tensor-parallel replicas, 16-bit and quantized
SETTINGS = [
    ("H100-SXM", "mistral-7b", 1, Precision()),
    ("A100-SXM-80GB", "mistral-7b", 1, Precision()),
    ("A100-SXM-80GB", "llama-2-70b", 4, Precision()),
    ("H100-SXM", "llama-2-70b", 8, Precision()),
    ("H100-SXM", "llama-2-70b", 4, Precision(weight_bits=4, kv_bits=8)),
]
IDS = [f"{d}-{m}-tp{tp}-w{p.weight_bits}kv{p.kv_bits}" for d, m, tp, p in SETTINGS]


def setting(device, model, tp, precision):
    m, d = get_model(model), hw.get_device(device)
    return m, d, replica_cost(m, d, tp, precision=precision)


def total(parts: dict) -> float:
    return sum(parts.values())


def assert_same_parts(parts: dict, ref) -> None:
    """Same total and same split by bound as the step model, to ``REL`` of the total."""
    want = {k: float(v) for k, v in ref.time_by_bound().items()}
    assert set(parts) == set(BOUNDS) == set(want)
    assert total(parts) == pytest.approx(float(ref.time_s), rel=REL)
    for k in BOUNDS:
        assert parts[k] == pytest.approx(want[k], rel=REL, abs=REL * float(ref.time_s)), k


def decode_iteration(cost, contexts) -> dict:
    """A decode-only iteration as the engine asks for it: one new token over each context."""
    c = np.asarray(contexts, dtype=np.int64)
    n = int(c.size)
    return cost.iteration(n, n, decode_seqs=n, decode_kv_tokens=float((c + 1).sum()), decode_longest=float(c.max() + 1))


def prefill_iteration(cost, batch: int, tokens: int, prefix: int) -> dict:
    """``batch`` prompts of ``tokens`` new tokens each over ``prefix`` cached ones, causal."""
    pairs = batch * (tokens * prefix + tokens * (tokens + 1) / 2)
    return cost.iteration(batch * tokens, batch, prefill_seqs=batch, prefill_tokens=batch * tokens,
                          prefill_pairs=pairs, prefill_kv_tokens=batch * (tokens + prefix))


# -- decode and prefill iterations equal the step model --------------------------------------
@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS, ids=IDS)
@pytest.mark.parametrize("contexts", [
    [0], [1], [4095], [130_000],  # one sequence, from an empty cache to one spanning thousands of key blocks
    [17, 4000, 1, 999, 65_537],  # ragged, one very long
    list(range(0, 19 * 211, 211)),  # 19 sequences
    [2048] * 99,
    list(range(1, 256 * 97, 97)),  # 256 sequences, vLLM's default max_num_seqs
], ids=["empty", "one", "4k", "130k", "ragged5", "ragged19", "uniform99", "ragged256"])
def test_a_decode_iteration_costs_the_step_models_ragged_decode(device, model, tp, precision, contexts):
    m, d, cost = setting(device, model, tp, precision)
    ref = step_cost(m, d, steps.ragged_decode(contexts), precision, tp)
    assert_same_parts(decode_iteration(cost, contexts), ref)


@pytest.mark.parametrize(("device", "model", "tp"), [s[:3] for s in SETTINGS[:3]], ids=IDS[:3])
@pytest.mark.parametrize("contexts", [[0], [4095], [17, 4000, 1, 999, 65_537], list(range(1, 256 * 97, 97))])
def test_a_decode_iteration_on_the_paged_kernel_costs_the_step_models(device, model, tp, contexts):
    """vLLM's PagedAttention (CUDA cores, 512-token partitions) tabulated as exactly as split-KV."""
    from sim.serving import replica_cost

    m, d, _ = setting(device, model, tp, Precision())
    cost = replica_cost(m, d, tp, decode_kernel="paged")
    assert_same_parts(decode_iteration(cost, contexts), step_cost(m, d, steps.ragged_decode(contexts), Precision(), tp,
                                                                  attention="paged"))


@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS[:3], ids=IDS[:3])
@settings(max_examples=25, deadline=None)
@given(contexts=st.lists(st.integers(0, 200_000), min_size=1, max_size=300))
def test_any_ragged_decode_iteration_costs_the_step_models(device, model, tp, precision, contexts):
    m, d, cost = setting(device, model, tp, precision)
    assert_same_parts(decode_iteration(cost, contexts), step_cost(m, d, steps.ragged_decode(contexts), precision, tp))


@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS, ids=IDS)
@pytest.mark.parametrize(("batch", "tokens", "prefix"), [
    (1, 1, 0), (1, 512, 0), (1, 8192, 0), (3, 100, 2000), (2, 4000, 0), (7, 1000, 37), (1, 511, 100_000), (19, 431, 7),
])
def test_a_prefill_iteration_costs_the_step_models_prefill(device, model, tp, precision, batch, tokens, prefix):
    m, d, cost = setting(device, model, tp, precision)
    ref = step_cost(m, d, steps.prefill(batch, tokens, prefix), precision, tp)
    assert_same_parts(prefill_iteration(cost, batch, tokens, prefix), ref)


@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS[:3], ids=IDS[:3])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_prefill_within_the_exact_table_costs_the_step_models(device, model, tp, precision, data):
    batch = data.draw(st.integers(1, 32), label="batch")
    tokens = data.draw(st.integers(1, EXACT_TOKENS // batch), label="tokens")
    prefix = data.draw(st.integers(0, 50_000), label="prefix")
    m, d, cost = setting(device, model, tp, precision)
    ref = step_cost(m, d, steps.prefill(batch, tokens, prefix), precision, tp)
    assert_same_parts(prefill_iteration(cost, batch, tokens, prefix), ref)


# -- beyond the exact table --------------------------------------------------------------------
def dense_step_model_s(m, d, tokens, precision, tp) -> np.ndarray:
    """The step model's time of a one-sequence prefill of ``tokens`` without its attention: the layers
    whose cost depends only on the token count, the LM head for one row, the collectives."""
    ref = step_cost(m, d, steps.prefill(1, tokens), precision, tp)
    return ref.time_s - sum(o.total_s for o in ref.ops if o.op.kind == "attention")


@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS[:4], ids=IDS[:4])
def test_dense_token_counts_up_to_the_exact_limit_are_exact(device, model, tp, precision):
    """Every token count up to EXACT_LIMIT is tabulated (the fast lists end at EXACT_TOKENS)."""
    m, d, cost = setting(device, model, tp, precision)
    n = np.unique(np.r_[EXACT_TOKENS - 1:EXACT_TOKENS + 3, np.geomspace(EXACT_TOKENS + 3, EXACT_LIMIT, 40).astype(int)])
    np.testing.assert_allclose([total(cost.iteration(int(t), 1)) for t in n], dense_step_model_s(m, d, n, precision, tp),
                               rtol=REL)


@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS[:4], ids=IDS[:4])
def test_dense_token_counts_beyond_the_exact_limit_are_exact_on_the_grid_and_within_half_a_percent_between(
        device, model, tp, precision):
    """Beyond EXACT_LIMIT the dense layers are tabulated at ceil(2^17 * 2^(k/64)) tokens: exact there,
    and in between, where each GEMM runs hundreds of waves, within 0.5% of the step model."""
    m, d, cost = setting(device, model, tp, precision)
    grid = np.ceil(EXACT_LIMIT * 2.0 ** (np.arange(1, POINTS_PER_DOUBLING + 1) / POINTS_PER_DOUBLING)).astype(int)
    np.testing.assert_allclose([total(cost.iteration(int(n), 1)) for n in grid], dense_step_model_s(m, d, grid, precision, tp),
                               rtol=REL)
    between = np.arange(EXACT_LIMIT + 1, 2 * EXACT_LIMIT, 997)
    got = np.array([total(cost.iteration(int(n), 1)) for n in between])
    err = got / dense_step_model_s(m, d, between, precision, tp) - 1
    worst = int(np.argmax(np.abs(err)))
    assert abs(err[worst]) <= 0.005, f"{between[worst]} tokens: {err[worst]:+.2%}"


# -- runs of repeated iterations ---------------------------------------------------------------
def iterations_one_by_one(cost, steps_, seqs, kv_tokens, longest, groups=(), chunk=None):
    """What ``IterationCost.run`` claims to equal: ``steps_`` calls of ``iteration``, each decode one
    token longer than before and the chunk's cached prefix one chunk longer."""
    out = []
    for j in range(steps_):
        args = {}
        if seqs:
            args.update(decode_seqs=seqs, decode_kv_tokens=kv_tokens + j * seqs, decode_longest=longest + j)
        if chunk:
            c, cached = chunk
            p = cached + j * c
            args.update(prefill_seqs=1, prefill_tokens=c, prefill_pairs=c * p + c * (c + 1) / 2, prefill_kv_tokens=p + c)
        out.append(cost.iteration(seqs + (chunk[0] if chunk else 0), seqs + (1 if chunk else 0), shared_groups=groups, **args))
    return out


@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS[:3], ids=IDS[:3])
@pytest.mark.parametrize(("steps_", "seqs", "kv_tokens", "longest", "groups", "chunk"), [
    (1, 1, 1.0, 1.0, (), None),
    (300, 1, 100.0, 100.0, (), None),  # crosses key-block boundaries
    (50, 37, 37 * 900.0, 4000.0, (), None),
    (200, 256, 256 * 1500.0, 8190.0, (), None),
    (40, 64, 64 * 60.0, 61.0, ((32, 2048), (32, 1024)), None),  # suffixes over two shared prefixes
    (12, 20, 20 * 700.0, 3000.0, (), (492, 0.0)),  # Sarathi: decodes plus one 492-token chunk of a long prompt
    (8, 0, 0.0, 0.0, (), (512, 1024.0)),  # a lone chunked prefill
], ids=["one", "single-300", "37x50", "256x200", "shared-groups", "decodes+chunk", "chunk-only"])
def test_a_run_costs_its_iterations_one_by_one(device, model, tp, precision, steps_, seqs, kv_tokens, longest, groups, chunk):
    _, _, cost = setting(device, model, tp, precision)
    run = cost.run(steps_, seqs, kv_tokens, longest, groups, chunk)
    one_by_one = iterations_one_by_one(cost, steps_, seqs, kv_tokens, longest, groups, chunk)
    np.testing.assert_allclose(run.times, [total(p) for p in one_by_one], rtol=REL)
    for k in (steps_, max(1, steps_ // 3)):
        parts = run.parts(k)
        for bound in BOUNDS:
            want = sum(p[bound] for p in one_by_one[:k])
            assert parts[bound] == pytest.approx(want, rel=REL, abs=REL * total(parts)), (k, bound)


# -- shared-prefix attention ------------------------------------------------------------------
@pytest.mark.parametrize(("device", "model", "tp", "precision"), SETTINGS[:3], ids=IDS[:3])
@pytest.mark.parametrize(("group_size", "prefix", "suffix"), [(32, 2048, 100), (256, 4096, 64), (8, 8192, 500)])
def test_reading_a_shared_prefix_once_per_group_is_cheaper_than_once_per_sequence(device, model, tp, precision,
                                                                                 group_size, prefix, suffix):
    """Hydragen/BatchLLM: decode attention over the suffixes plus one pass over the shared prefix
    beats every sequence reading the whole context."""
    _, _, cost = setting(device, model, tp, precision)
    n = 2 * group_size  # two groups
    whole = cost.iteration(n, n, decode_seqs=n, decode_kv_tokens=n * (prefix + suffix + 1.0), decode_longest=prefix + suffix + 1.0)
    shared = cost.iteration(n, n, decode_seqs=n, decode_kv_tokens=n * (suffix + 1.0), decode_longest=suffix + 1.0,
                            shared_groups=((group_size, prefix), (group_size, prefix)))
    assert total(shared) < total(whole)
    # and it still costs more than ignoring the prefix altogether
    suffixes = cost.iteration(n, n, decode_seqs=n, decode_kv_tokens=n * (suffix + 1.0), decode_longest=suffix + 1.0)
    assert total(shared) > total(suffixes)



def _prefill_attention_s(cost, lengths, prefixes=None) -> float:
    out = dict.fromkeys(BOUNDS, 0.0)
    prefixes = prefixes or [0] * len(lengths)
    cost.chunks_attention(np.array(lengths, dtype=float), np.array(prefixes, dtype=float), out)
    return total(out)


@pytest.mark.parametrize(("lengths", "prefixes"), [([512], [0]), ([3, 3, 3], [100, 100, 100]), ([4000] * 4, [7] * 4)])
def test_chunks_known_one_by_one_cost_what_the_step_model_says_for_equal_ones(lengths, prefixes):
    cost = setting("H100-SXM", "mistral-7b", 1, Precision())[2]
    ref = step_cost(cost.model, cost.device, steps.prefill(len(lengths), lengths[0], prefixes[0]))
    attention = sum(float(o.total_s) for o in ref.ops if o.op.kind == "attention")
    assert _prefill_attention_s(cost, lengths, prefixes) == pytest.approx(attention, rel=REL)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(lengths=st.lists(st.integers(512, 8192), min_size=1, max_size=6), extra=st.integers(1, 4096))
def test_adding_a_prefill_chunk_never_makes_the_iterations_attention_cheaper(lengths, extra):
    """FlashAttention-2 over a batch of unequal prompts (each chunk's tiles and CTAs counted, the batch's
    longest CTA last): one more chunk never lowers the time. (Not for a batch of a few short chunks, whose
    memory-bound attention reads at the share of SMs its grid covers: a tiny extra chunk adds SMs.)"""
    cost = setting("H100-SXM", "mistral-7b", 1, Precision())[2]
    assert _prefill_attention_s(cost, lengths + [extra]) >= _prefill_attention_s(cost, lengths) * (1 - 1e-9)


def test_a_long_prompt_with_short_ones_costs_at_least_the_long_one_alone():
    cost = setting("H100-SXM", "mistral-7b", 1, Precision())[2]
    alone = _prefill_attention_s(cost, [4000])
    for short in ([50, 50], [1, 1, 1], [16]):
        assert alone <= _prefill_attention_s(cost, [4000] + short) <= 1.15 * alone


def test_flash_has_no_time_for_no_work():
    import hwmodels as hw
    from sim.attention import flash_constants, flash_one

    h100 = hw.get_device("H100-SXM")
    constants, _ = flash_constants(128, "bf16", h100, hw.calibration(h100))
    assert flash_one(0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, True, 32.0, constants)[:2] == (0.0, 0.0)

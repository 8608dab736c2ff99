"""Claims about the attention schedules lean, tree, cascade and ring-step (sim.kernel.schedules) and `kernelab kernel`."""

import json
from dataclasses import replace

import numpy as np
import pytest

import hwmodels as hw
from kernelab.cli import main
from sim.kernel import simulate
from sim.kernel.schedules import get_schedule
from sim.kernel.schedules.problem import AttentionProblem
from sim.kernel.schedules.ring import build_step, step_counts
from sim.kernel.schedules.run import simulate_schedule
from sim.kernel.program import ProgramBuilder

H100, A100 = hw.get_device("H100-SXM"), hw.get_device("A100-SXM-80GB")
CONTRACT = ("time_s", "cycles", "bytes_per_s", "flops_per_s", "sm_utilization")


def t(name, problem, device, **kw):
    return simulate_schedule(name, problem, device, **kw)[0].seconds


def test_tree_of_one_token_is_exactly_a_split_kv_decode_step():
    for dev in (H100, A100):
        p = AttentionProblem(4, 32, 8, 128, 8192)
        tree = get_schedule("tree")(replace(p, tree_tokens=1), dev).program
        dec = get_schedule("split-kv")(p, dev).program
        for f in ("kind", "amount", "flag", "l2_hit", "dtype", "cta_ptr", "kernel_ptr"):
            assert np.array_equal(getattr(tree, f), getattr(dec, f))
        assert t("tree", replace(p, tree_tokens=1), dev) == t("split-kv", p, dev)


def test_tree_cost_grows_slowly_with_its_size_at_long_prefix():
    p = AttentionProblem(4, 32, 32, 128, 32768)
    dec = t("split-kv", p, H100)
    costs = [t("tree", replace(p, tree_tokens=n), H100) / dec for n in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    assert costs[0] == 1.0
    assert all(b >= a * (1 - 1e-9) for a, b in zip(costs, costs[1:]))  # never cheaper with more tokens
    assert costs[6] < 1.5  # 64 tokens: the prefix is read once for all of them
    # a tree's mask below the chain's changes the useful FLOPs, not the tile work
    s = get_schedule("tree")(replace(p, tree_tokens=8), H100, tree_pairs=8)
    assert s.info["tree_pairs"] == 8 and s.info["useful_flops"] < get_schedule("tree")(replace(p, tree_tokens=8), H100).info["useful_flops"]


@pytest.mark.parametrize("dev", [H100, A100], ids=lambda d: d.name)
@pytest.mark.parametrize("batch,heads,kv_heads", [(1, 32, 8), (3, 32, 8), (2, 32, 32)])
def test_lean_beats_split_kv_and_both_beat_fa2_decode_at_long_context(dev, batch, heads, kv_heads):
    # batch x kv_heads (8, 24, 64) leaves the SMs (108, 132) unevenly filled: LeanAttention's case
    assert (batch * kv_heads) % dev.sm_count
    p = AttentionProblem(batch, heads, kv_heads, 128, 65536)
    lean, split, fa2 = t("lean", p, dev), t("split-kv", p, dev), t("flash", p, dev)
    assert lean <= split < fa2


def test_lean_partition_is_one_wave_with_one_host_per_split_output():
    p = AttentionProblem(3, 32, 8, 128, 65536)
    s = get_schedule("lean")(p, H100)
    assert s.info["grid"] == H100.sm_count * s.info["occupancy"]
    assert s.info["host_fixups"] == 24 and s.program.n_flags == 24
    assert s.program.cost()["mma_flops"] == pytest.approx(24 * 512 * 4 * 64 * 128 * 128)


def test_cascade_beats_plain_split_kv_for_a_long_shared_prefix():
    p = AttentionProblem(64, 32, 8, 128, 32768 + 256, prefix=32768)
    for dev in (H100, A100):
        res, prog = simulate_schedule("cascade", p, dev)
        assert res.kernel_names[-1] == "cascade_merge"
        assert res.seconds < 0.25 * t("split-kv", replace(p, prefix=0), dev)


def test_ring_step_bytes_and_flops_are_the_closed_forms():
    for causal in (False, True):
        p = AttentionProblem(2, 32, 8, 128, 4096, query_tokens=4096 if causal else 1000, causal=causal)
        b = ProgramBuilder()
        build_step(p, H100, b)
        prog = b.build()
        res = simulate(prog, H100)
        c = step_counts(p)
        assert res.hbm_bytes == pytest.approx(c["hbm_bytes"], rel=1e-12)
        assert res.l2_bytes == pytest.approx(c["l2_bytes"], rel=1e-12)
        assert res.mma_flops == pytest.approx(c["mma_flops"], rel=1e-12)
        if not causal:  # unique bytes: Q, O (+ fp32 LSE), K and V once
            e = 2.0
            q = 2 * 1000 * 32 * 128 * e
            assert c["hbm_bytes"] == pytest.approx(2 * q + 2 * 1000 * 32 * 4 + 2 * 2 * 4096 * 8 * 128 * e)
    res, prog = simulate_schedule("ring-step", AttentionProblem(1, 32, 8, 128, 4096, query_tokens=4096), H100)
    assert res.kernel_names == ("ring-step", "ring-merge")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name,extra", [
    ("fa2", []), ("split-kv", []), ("lean", []), ("tree", ["--tree-tokens", "8"]), ("cascade", ["--prefix", "3000"]),
    ("ring-step", ["--tokens", "512"]), ("gemm", ["--m", "512", "--n", "512", "--k", "512"]),
])
def test_cli_json_holds_the_contract_keys(capsys, name, extra):
    code, out, err = run_cli(capsys, "kernel", name, "--device", "H100-SXM", "--batch", "2", "--heads", "16",
                             "--kv-heads", "4", "--head-dim", "128", "--context", "4096", *extra, "--json")
    assert code == 0, err
    rec = json.loads(out)
    for k in CONTRACT + ("tail_fraction", "kernels", "schedule", "device"):
        assert k in rec
    assert rec["time_s"] > 0 and rec["schedule"] == name and rec["device"] == "H100-SXM"


def test_cli_timeline_writes_one_trace_per_kernel(capsys, tmp_path):
    path = tmp_path / "t.html"
    code, out, err = run_cli(capsys, "kernel", "split-kv", "--batch", "1", "--heads", "32", "--kv-heads", "8",
                             "--context", "16384", "--timeline", str(path), "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert path.exists() and len(rec["kernels"]) == 2
    from sim.kernel.timeline import timeline_figure
    res, prog = simulate_schedule("cascade", AttentionProblem(8, 32, 8, 128, 4096, prefix=2048), H100)
    fig = timeline_figure(res, prog)
    assert len(fig.data) == len(res.kernel_names)
    assert sum(len(tr.x) for tr in fig.data) == prog.n_ctas


@pytest.mark.parametrize("argv,needle", [
    (["kernel", "leen"], "did you mean"),
    (["kernel", "lean", "--device", "H100-SMX"], "did you mean"),
    (["kernel", "lean", "--batch", "0"], "--batch"),
    (["kernel", "lean", "--heads", "32", "--kv-heads", "5"], "multiple"),
    (["kernel", "cascade", "--context", "4096"], "--prefix"),
    (["kernel", "gemm"], "--m"),
    (["kernel", "tree", "--tree-tokens", "0"], "--tree-tokens"),
])
def test_cli_bad_input_exits_2_with_a_message(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and needle in err

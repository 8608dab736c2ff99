"""Sweeps: the grid equals point-by-point step costs; files stream, survive interruption and resume;
invalid combinations are skipped with reasons; Dask gives the same rows; the CLI writes the table."""

import json
import multiprocessing
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import hwmodels as hw
import sim.sweep as sweep_mod
from kernelab.cli import main
from sim import get_model
from sim import step as steps
from sim.cost import step_cost
from sim.precision import Precision
from sim.sweep import COMBO_COLUMNS, POINT_COLUMNS, SCHEMA, parse_values, sweep

KEYS = list(COMBO_COLUMNS + POINT_COLUMNS)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: tuple(r[k] for k in KEYS))


def read_csv(path) -> pa.Table:
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=SCHEMA))


def scalar_step(kind, batch, context, tokens):
    if kind == "decode":
        assert tokens == 1
        return steps.decode(batch, context)
    if kind == "prefill":
        return steps.prefill(batch, tokens, context)
    return steps.verify(batch, context, tokens)


def test_the_sweep_equals_point_by_point_step_costs():
    res = sweep(
        ["Llama-2-7B", "Mistral-7B"], ["H100-SXM", "A100-SXM-80GB"], kinds=["decode", "prefill", "verify"],
        batch=[1, 3, 64], context=[0, 1000, 4096], tokens=[1, 17], tp=[1, 2], precision=[Precision(), (4, 16, 8), (8, 8, 8)],
        progress=False,
    )
    table = res.table
    assert table.schema == SCHEMA
    # fp8 on the A100 is the only invalid combination: one per model, kind and TP
    assert len(res.skipped) == 2 * 3 * 2 and all("fp8" in s["reason"] and s["device"] == "A100-SXM-80GB" for s in res.skipped)
    per_combo = {"decode": 3 * 3, "prefill": 3 * 3 * 2, "verify": 3 * 3 * 2}
    assert table.num_rows == res.evals == sum(2 * 2 * 2 * 3 * n for n in per_combo.values()) - sum(2 * 2 * n for n in per_combo.values())
    assert len({tuple(r[k] for k in KEYS) for r in table.to_pylist()}) == table.num_rows  # no duplicates
    rng = np.random.default_rng(0)
    sample = [table.slice(int(i), 1).to_pylist()[0] for i in rng.choice(table.num_rows, 150, replace=False)]
    for r in sample:
        cost = step_cost(get_model(r["model"]), hw.get_device(r["device"]), scalar_step(r["kind"], r["batch"], r["context"], r["tokens"]),
                         Precision(r["weight_bits"], r["activation_bits"], r["kv_bits"]), tp=r["tp"])
        parts = cost.time_by_bound()
        expect = {"time_s": cost.time_s, "tokens_per_s": cost.tokens_per_s, "mfu": cost.mfu, "mbu": cost.mbu,
                  **{f"{k}_s": v for k, v in parts.items()}}
        for k, v in expect.items():
            assert r[k] == pytest.approx(float(v), rel=1e-12, abs=1e-300), (k, r)
        assert r["bound"] == max(parts, key=lambda k: float(parts[k]))
        assert r["attention"] == cost.attention_kernel and r["cuda_graphs"] is True
    cols = res.columns()
    assert set(cols) == set(SCHEMA.names) and all(len(v) == table.num_rows for v in cols.values())
    assert res.evals_per_s > 0


def test_block_size_does_not_change_the_rows():
    kw = dict(models="Llama-2-7B", devices="H100-SXM", kinds=["decode", "verify"], batch="1:64:x2", context="0:8192:+1024",
              tokens=[2, 4, 8], tp=[1, 2], progress=False)
    whole = sweep(**kw)
    for chunk in (1, 2, 5, 40):
        small = sweep(**kw, chunk_size=chunk)
        assert small.blocks > whole.blocks
        assert small.table.equals(whole.table)


def test_prefill_without_tokens_sweeps_whole_prompts():
    res = sweep("Llama-2-7B", "H100-SXM", kinds="prefill", batch=[2], context=[0, 512, 2048], progress=False)
    got = res.table.to_pylist()
    assert [(r["context"], r["tokens"]) for r in got] == [(0, 512), (0, 2048)]  # the empty prompt is left out
    cost = step_cost(get_model("Llama-2-7B"), hw.get_device("H100-SXM"), steps.prefill(2, 2048, 0))
    assert got[1]["time_s"] == pytest.approx(float(cost.time_s), rel=1e-12)
    assert got[1]["attention"] == "flash"


def test_decode_has_one_new_token_and_cuda_graphs_and_attention_pass_through():
    res = sweep("Llama-2-7B", "H100-SXM", batch=[8], context=[4096], tokens=[5], attention="Flash", cuda_graphs=False, progress=False)
    (r,) = res.table.to_pylist()
    assert r["tokens"] == 1 and r["attention"] == "flash" and r["cuda_graphs"] is False
    cost = step_cost(get_model("Llama-2-7B"), hw.get_device("H100-SXM"), steps.decode(8, 4096), attention="flash", cuda_graphs=False)
    assert r["time_s"] == pytest.approx(float(cost.time_s), rel=1e-12)


def test_expert_parallel_layouts_of_a_mixture_of_experts_model():
    res = sweep(["Mixtral-8x7B", "Llama-2-7B"], "H100-SXM", kinds=["decode", "prefill"], batch=[1, 32], context=[2048],
                tokens=[256], tp=[1, 2], ep=[1, 2, 8], progress=False)
    skipped = {(s["model"], s["tp"], s["ep"]): s["reason"] for s in res.skipped if s["kind"] == "decode"}
    assert set(skipped) == {("Llama-2-7B", tp, ep) for tp in (1, 2) for ep in (2, 8)}
    assert all("experts" in r for r in skipped.values())
    mixtral = [r for r in res.table.to_pylist() if r["model"] == "Mixtral-8x7B"]
    assert {(r["tp"], r["ep"]) for r in mixtral} == {(tp, ep) for tp in (1, 2) for ep in (1, 2, 8)}
    for r in mixtral:
        cost = step_cost(get_model("Mixtral-8x7B"), hw.get_device("H100-SXM"), scalar_step(r["kind"], r["batch"], r["context"], r["tokens"]),
                         tp=r["tp"], ep=r["ep"])
        assert r["time_s"] == pytest.approx(float(cost.time_s), rel=1e-12)
        assert r["communication_s"] == pytest.approx(float(cost.time_by_bound()["communication"]), rel=1e-12)
    assert any(r["ep"] == 8 and r["communication_s"] > 0 for r in mixtral)


def test_invalid_layouts_and_precisions_are_skipped_with_reasons():
    res = sweep("Llama-2-7B", ["H100-SXM", "V100-SXM2"], batch=[1, 8], context=[1024], tp=[1, 3, 2],
                weight_bits=[16, 4], activation_bits=[16, 4], progress=False)
    reasons = {(s["device"], s["tp"], s["weight_bits"], s["activation_bits"]): s["reason"] for s in res.skipped}
    assert "attention heads" in reasons[("H100-SXM", 3, 16, 16)] and "TP size dividing 32" in reasons[("H100-SXM", 3, 4, 16)]
    assert "bf16" in reasons[("V100-SXM2", 1, 16, 16)]
    assert "activation_bits" in reasons[(None, None, 16, 4)] and "activation_bits" in reasons[(None, None, 4, 4)]
    done = {(r["device"], r["tp"], r["weight_bits"]) for r in res.table.to_pylist()}
    assert done == {("H100-SXM", tp, w) for tp in (1, 2) for w in (16, 4)}
    assert res.table.num_rows == 4 * 2


def test_csv_rows_stream_as_each_combination_finishes(tmp_path, monkeypatch):
    """A sweep whose 3rd combination raises leaves the first two in the file; resume completes it."""
    out = tmp_path / "runs.csv"
    kw = dict(models="Llama-2-7B", devices="H100-SXM", batch=[1, 4, 16], context=[0, 2048], tp=[1, 2, 4, 8], progress=False)
    calls = []

    def failing(*args, **kwargs):
        calls.append(kwargs["tp"])
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return step_cost(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "step_cost", failing)
    with pytest.raises(RuntimeError, match="worker lost"):
        sweep(**kw, output=out)
    partial = read_csv(out)
    assert sorted(set(partial.column("tp").to_pylist())) == [1, 2] and partial.num_rows == 2 * 6
    monkeypatch.setattr(sweep_mod, "step_cost", step_cost)

    res = sweep(**kw, output=out, resume=True)
    assert res.resumed_rows == 12 and res.evals == res.rows_written == 12
    assert res.table.num_rows == 12  # the rows this call computed
    full = sweep(**kw)
    assert rows(read_csv(out)) == rows(full.table)  # everything, once

    again = sweep(**kw, output=out, resume=True)  # nothing left to do
    assert again.evals == again.rows_written == 0 and again.resumed_rows == 24
    assert read_csv(out).num_rows == 24


def test_resume_drops_a_torn_last_line_and_fills_a_grown_grid(tmp_path):
    out = tmp_path / "runs.csv"
    kw = dict(models="Llama-2-7B", devices="H100-SXM", batch=[1, 4], context=[0, 2048], tp=[1, 2], progress=False)
    sweep(**kw, output=out)
    data = out.read_bytes()
    out.write_bytes(data[:-25])  # killed in the middle of writing the last row
    res = sweep(**kw, output=out, resume=True)
    assert res.rows_written == 1 and res.resumed_rows == 7
    assert rows(read_csv(out)) == rows(sweep(**kw).table)

    grown = dict(kw, batch=[1, 4, 32])  # a larger grid: only the new points are computed
    res = sweep(**grown, output=out, resume=True)
    assert res.resumed_rows == 8 and res.rows_written == 4
    assert rows(read_csv(out)) == rows(sweep(**grown).table)


def test_without_resume_the_output_is_replaced(tmp_path):
    out = tmp_path / "runs.csv"
    sweep("Llama-2-7B", "H100-SXM", batch=[1, 2, 3], context=[0], output=out, progress=False)
    sweep("Llama-2-7B", "H100-SXM", batch=[7], context=[0], output=out, progress=False)
    assert read_csv(out).column("batch").to_pylist() == [7]


def test_resume_refuses_a_file_that_is_not_a_sweep(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(hw.InvalidValueError, match="does not hold sweep rows"):
        sweep("Llama-2-7B", "H100-SXM", batch=[1], context=[0], output=out, resume=True, progress=False)


def test_parquet_round_trip_and_interrupted_parquet(tmp_path, monkeypatch):
    out = tmp_path / "runs.parquet"
    kw = dict(models=["Llama-2-7B", "Llama-3.1-8B"], devices="H100-SXM", kinds=["decode", "prefill"], batch="1:16:x4",
              context="0,4096", tokens=[128], tp=[1, 2], progress=False)
    res = sweep(**kw, output=out)
    back = pq.read_table(out)
    assert back.schema == SCHEMA and rows(back) == rows(res.table)
    assert not out.with_name("runs.parquet.parts").exists()

    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return step_cost(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "step_cost", failing)
    with pytest.raises(RuntimeError):
        sweep(**kw, output=out)
    assert pq.read_table(out).num_rows == 2 * 6  # merged on the way out
    monkeypatch.setattr(sweep_mod, "step_cost", step_cost)

    # A kill before the merge leaves the part files; resume picks them up.
    monkeypatch.setattr(sweep_mod._ParquetSink, "close", lambda self: None)
    sweep(**dict(kw, tp=[1, 2, 4]), output=out, resume=True)
    parts = out.with_name("runs.parquet.parts")
    assert len(list(parts.glob("part-*.parquet"))) > 0
    monkeypatch.undo()
    res = sweep(**dict(kw, tp=[1, 2, 4]), output=out, resume=True)
    assert res.evals == 0 and not parts.exists()
    assert rows(pq.read_table(out)) == rows(sweep(**dict(kw, tp=[1, 2, 4])).table)


def test_progress_bar_on_sweeps_of_many_blocks(capsys):
    sweep("Llama-2-7B", ["H100-SXM", "H200", "A100-SXM-80GB"], batch=[1, 2], context=[0], tp=[1, 2, 4, 8], progress=True)
    err = capsys.readouterr().err
    assert "sweep" in err and "24/24" in err
    sweep("Llama-2-7B", "H100-SXM", batch=[1, 2], context=[0], progress=True)
    assert capsys.readouterr().err == ""  # a handful of blocks: no bar


@pytest.mark.parametrize(
    "text, values",
    [("1,8,64", [1, 8, 64]), ("1:256:x2", [1, 2, 4, 8, 16, 32, 64, 128, 256]), ("1024:4096:+1024", [1024, 2048, 3072, 4096]),
     ("1:4", [1, 2, 3, 4]), ("1,2,4:64:x4", [1, 2, 4, 16, 64]), ("16:64:x1.5", [16, 24, 36, 54]), ("8,8, 8", [8]),
     ("0:10:+4", [0, 4, 8]), ("1_000", [1000])],
)
def test_parse_values(text, values):
    assert parse_values(text) == values


@pytest.mark.parametrize("text", ["", "1,,2", "a", "1.5", "8:1", "1:256:x1", "0:8:x2", "1:8:+0", "1:x", "1:2:3:4", "1:1e9"])
def test_parse_values_refuses_malformed_text(text):
    with pytest.raises(hw.InvalidValueError):
        parse_values(text)


def test_bad_input_raises_with_what_to_change(tmp_path):
    with pytest.raises(hw.UnknownNameError, match="did you mean 'H100-SXM'"):
        sweep("Llama-2-7B", ["H100-SXM", "H100-SX"], progress=False)
    with pytest.raises(hw.UnknownNameError, match="Llama-2-7B"):
        sweep("llama-2-7", "H100-SXM", progress=False)
    with pytest.raises(hw.InvalidValueError, match="step kind"):
        sweep(kinds=["decode", "mixed"], progress=False)
    with pytest.raises(hw.InvalidValueError, match="batch must be at least 1"):
        sweep(batch=[0, 1], progress=False)
    with pytest.raises(hw.InvalidValueError, match="context"):
        sweep(context=[1.5], progress=False)
    with pytest.raises(hw.InvalidValueError, match="not both"):
        sweep(precision=[Precision()], kv_bits=[8], progress=False)
    with pytest.raises(hw.InvalidValueError, match=r"\.csv or \.parquet"):
        sweep(output=tmp_path / "x.json", progress=False)
    with pytest.raises(hw.UnknownNameError, match="attention kernel"):
        sweep(attention="paged-v3", progress=False)


# ----------------------------------------------------------------------------- Dask


DASK_KW = dict(models=["Llama-2-7B", "Mistral-7B"], devices=["H100-SXM", "V100-SXM2"], kinds=["decode", "prefill"],
               batch="1:64:x4", context="0,4096", tokens=[256], tp=[1, 2, 3], chunk_size=4, progress=False)


def test_dask_cluster_gives_the_in_process_rows(tmp_path):
    """A 2-worker LocalCluster reached by address, and the automatic local cluster of a large sweep."""
    distributed = pytest.importorskip("distributed")
    local = sweep(**DASK_KW, output=tmp_path / "local.csv")
    assert local.scheduler == "in-process"  # small sweeps do not pay a cluster's start-up
    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = sweep(**DASK_KW, output=tmp_path / "dask.csv", scheduler=cluster.scheduler_address)
        assert res.scheduler == f"dask {cluster.scheduler_address}"
        assert res.table.equals(local.table)  # returned in the in-process order
        key = lambda s: tuple(str(v) for v in s.values())  # noqa: E731
        assert sorted(res.skipped, key=key) == sorted(local.skipped, key=key)
        assert rows(read_csv(tmp_path / "dask.csv")) == rows(read_csv(tmp_path / "local.csv"))
        # interrupted and resumed through the cluster: no duplicates
        out = tmp_path / "resumed.csv"
        sweep(**dict(DASK_KW, tp=[1]), output=out, scheduler=cluster.scheduler_address)
        resumed = sweep(**DASK_KW, output=out, scheduler=cluster.scheduler_address, resume=True)
        assert resumed.resumed_rows > 0
        assert rows(read_csv(out)) == rows(local.table)
    print(f"\ndask LocalCluster(2) start + 3 sweeps: {time.perf_counter() - t0:.1f} s")


def test_automatic_local_cluster_is_shut_down(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep_mod, "AUTO_CLUSTER_WORK", 0)
    monkeypatch.setattr(sweep_mod, "AUTO_CLUSTER_MIN_CORES", 1)
    monkeypatch.setattr(sweep_mod, "LOCAL_CLUSTER_WORKERS", 2)
    environ = {k: os.environ.get(k) for k in sweep_mod.WORKER_MALLOC_ENV}
    local = sweep(**DASK_KW, scheduler="in-process")
    res = sweep(**DASK_KW, output=tmp_path / "auto.parquet")
    assert res.scheduler == "dask local cluster (2 workers)"
    assert res.table.equals(local.table)
    assert rows(pq.read_table(tmp_path / "auto.parquet")) == rows(local.table)
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()
    assert {k: os.environ.get(k) for k in environ} == environ  # the nanny's settings do not leak into ours


def test_an_unreachable_scheduler_is_an_input_error(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep_mod, "SCHEDULER_TIMEOUT", "1s")
    with pytest.raises(hw.InvalidValueError, match="cannot reach the Dask scheduler"):
        sweep(batch=[1], context=[0], scheduler="tcp://127.0.0.1:1", progress=False)


# ----------------------------------------------------------------------------- CLI


def test_cli_sweep_writes_the_file_and_prints_json(tmp_path, capsys):
    out = tmp_path / "r.csv"
    argv = ["sweep", "--model", "Llama-2-7B", "--device", "H100-SXM", "--device", "V100-SXM2", "--kind", "decode",
            "--kind", "verify", "--batch", "1:64:x4", "--context", "1024:4096:+1024", "--tokens", "4", "--tp", "1,2,3", "--ep", "1",
            "--kv-bits", "16,8", "-o", str(out), "--json"]
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out)
    table = read_csv(out)
    # valid: H100-SXM x TP 1, 2 x 2 kinds x 2 KV precisions, each 4 batches x 4 contexts
    assert rec["output"] == str(out) and rec["rows"] == table.num_rows == 2 * 2 * 2 * 4 * 4
    assert rec["evals_per_s"] > 0 and rec["combinations"] == 2 * 3 * 2 * 2
    reasons = {s["reason"] for s in rec["skipped"]}
    assert any("attention heads" in r for r in reasons) and any("V100-SXM2" in r for r in reasons)
    assert set(table.column("kv_bits").to_pylist()) == {16, 8} and set(table.column("tokens").to_pylist()) == {1, 4}

    assert main(argv[:-1] + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 0 rows" in printed and f"kept {table.num_rows:,} rows" in printed and "attention heads" in printed


def test_cli_sweep_to_parquet_with_a_table_summary(tmp_path, capsys):
    out = tmp_path / "r.parquet"
    assert main(["sweep", "--model", "Mixtral-8x7B", "--ep", "1,2", "--batch", "1,8", "--context", "4096", "--kind", "prefill",
                 "--tokens", "512", "-o", str(out)]) == 0
    assert "wrote 4 rows" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column("kind").to_pylist() == ["prefill"] * 4 and table.column("ep").to_pylist() == [1, 1, 2, 2]


@pytest.mark.parametrize(
    "argv, message",
    [(["--device", "H100-SX"], "did you mean 'H100-SXM'"), (["--model", "Llama2-7B"], "did you mean"),
     (["--context", "1024:x2"], "--context"), (["--batch", "1:256:x0.5"], "--batch"), (["--tp", "two"], "--tp"),
     (["--kv-bits", "16,"], "--kv-bits"), (["--ep", "1:8:x"], "--ep"), (["--batch", "0"], "batch must be at least 1")],
)
def test_cli_sweep_bad_input_exits_2_naming_the_problem(tmp_path, capsys, argv, message):
    assert main(["sweep", *argv, "-o", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelab: error:") and message in err

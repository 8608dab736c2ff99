"""The kernelab command line: every command, with --json parsed."""

import json
import shutil
import subprocess
import sys

import pytest

import hwmodels as hw
from kernelab.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_devices_json_lists_the_whole_catalog_and_the_host(capsys):
    rows = run_json(capsys, "devices", "--json")
    names = [r["name"] for r in rows]
    assert names == hw.CATALOG.names() + ["host-cpu"]
    h100 = rows[names.index("H100-SXM")]
    assert h100["peak_flops_per_s"]["bf16"] == pytest.approx(989.4e12)
    assert h100["hbm_bytes_per_s"] == pytest.approx(3.35e12)


def test_devices_table_prints_every_name(capsys):
    assert main(["devices", "--no-host"]) == 0
    out = capsys.readouterr().out
    for name in hw.CATALOG.names():
        assert name[:10] in out


@pytest.mark.parametrize("name", ["h100-sxm", "H100", "mi300x"])
def test_device_json_gives_every_field_with_a_source(capsys, name):
    rec = run_json(capsys, "device", name, "--json")
    assert rec["name"] == hw.get_device(name).name
    for field, entry in rec["fields"].items():
        assert entry["value"] > 0, field
        if field != "smem_bytes_per_s":
            assert entry["source"].startswith("http"), field
            assert entry["source_kind"] in ("datasheet", "documentation", "derived", "measured"), field
    assert 0 < rec["calibration"]["hbm_fraction"]["value"] <= 1


def test_device_table_shows_sources(capsys):
    assert main(["device", "A100-SXM-80GB"]) == 0
    out = capsys.readouterr().out
    assert "hbm_bytes_per_s" in out and "http" in out


def test_unknown_device_suggests_the_closest_names(capsys):
    assert main(["device", "H100-SX"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'H100-SX'" in err and "'H100-SXM'" in err


def test_roofline_writes_html_and_reports_ridges(capsys, tmp_path):
    out = tmp_path / "r.html"
    rec = run_json(capsys, "roofline", "--device", "A100-SXM-80GB", "--device", "h100-sxm", "-o", str(out), "--json")
    assert out.stat().st_size > 10_000
    assert [r["device"] for r in rec["rooflines"]] == ["A100-SXM-80GB", "H100-SXM"]
    h100 = rec["rooflines"][1]
    hbm = next(c for c in h100["ceilings"] if c["level"] == "hbm")
    assert hbm["ridge_flops_per_byte"] == pytest.approx(989.4e12 / 3.35e12)


def test_roofline_places_a_models_step(capsys, tmp_path):
    rec = run_json(
        capsys, "roofline", "--device", "H100-SXM", "--model", "llama-2-7b", "--batch", "1", "-o", str(tmp_path / "r.html"), "--json"
    )
    ops = {o["name"].split(" ")[0]: o for o in rec["operations"]}
    assert ops["mlp_up"]["bound"] == "memory"
    assert ops["attention"]["level"] == "hbm"


def test_roofline_with_a_whatif_file(capsys, tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('name = "H100-2xHBM"\nbase = "H100-SXM"\n[scale]\nhbm_bytes_per_s = 2\n')
    rec = run_json(capsys, "roofline", "--device", str(path), "-o", str(tmp_path / "r.html"), "--json")
    hbm = next(c for c in rec["rooflines"][0]["ceilings"] if c["level"] == "hbm")
    assert hbm["bytes_per_s"] == pytest.approx(6.7e12)


def test_collective_json_gives_nccl_tests_figures(capsys):
    rec = run_json(capsys, "collective", "all_reduce", "--device", "H100-SXM", "--gpus", "8", "--bytes", "4,1GiB", "--json")
    assert rec["n_gpus"] == 8
    small, large = rec["results"]
    assert small["message_bytes"] == 4 and large["message_bytes"] == 2**30
    assert large["busbw_bytes_per_s"] == pytest.approx(large["algbw_bytes_per_s"] * 2 * 7 / 8)
    assert large["algorithm"] == "nvls"
    assert small["time_s"] == pytest.approx(small["latency_s"], rel=1e-3)


def test_collective_across_nodes_is_bound_by_the_nics(capsys):
    rec = run_json(capsys, "collective", "all_reduce", "--device", "A100", "--nodes", "4", "--nic", "ib-hdr", "--bytes", "8GiB", "--json")
    assert rec["n_gpus"] == 32
    assert "ib-hdr" in rec["results"][0]["bound_by"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["collective", "all_redce"], "did you mean 'all_reduce'"),
        (["collective", "all_reduce", "--bytes", "1QB"], "cannot read message size"),
        (["collective", "all_reduce", "--gpus", "0"], "at least 1"),
        (["collective", "all_reduce", "--nic", "ib-ndx", "--nodes", "2"], "did you mean"),
    ],
)
def test_collective_bad_input_is_explained(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_report_writes_a_page_with_the_roofline_and_the_operations(capsys, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "-o", str(out)]) == 0
    page = out.read_text()
    assert "H100-SXM" in page and "Llama-2-7B" in page
    assert "Plotly.newPlot" in page and "mlp_down" in page
    assert "<h2>Steps</h2>" in page and "largest batch" in page


def test_console_script_is_installed():
    exe = shutil.which("kernelab")
    cmd = [exe] if exe else [sys.executable, "-m", "kernelab.cli"]
    done = subprocess.run([*cmd, "device", "nope-gpu"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown device 'nope-gpu'" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "decode", "--device", "A100", "--model", "llama-2-7b", "--batch", "4", "--context", "1000"],
        ["predict", "prefill", "--device", "H100-SXM", "--model", "Llama-2-7B", "--context", "2048", "--tp", "2"],
        ["predict", "verify", "--device", "H200", "--model", "llama-2-7b", "--context", "4096", "--tokens", "16"],
        ["predict", "prefill", "--device", "H100-SXM", "--context", "1024", "--batch", "4", "--pp", "2"],
    ],
)
def test_predict_json_holds_time_throughput_and_breakdown(capsys, argv):
    rec = run_json(capsys, *argv, "--json")
    assert rec["time_s"] > 0 and rec["tokens_per_s"] > 0
    assert set(rec["breakdown"]) == {"compute_s", "memory_s", "overhead_s", "communication_s"}
    assert {o["name"] for o in rec["ops"]} >= {"qkv_proj", "attention", "lm_head"}
    assert ("ttft_s" in rec) == (argv[1] == "prefill")


def test_predict_explains_an_impossible_layout(capsys):
    assert main(["predict", "decode", "--model", "llama-2-7b", "--tp", "3"]) == 2
    assert "cannot split evenly" in capsys.readouterr().err


def test_predict_refuses_a_deployment_that_does_not_fit_and_says_by_how_much(capsys):
    assert main(["predict", "decode", "--model", "Llama-2-70B", "--device", "H100-SXM", "--batch", "8", "--context", "4096"]) == 2
    assert "short by" in capsys.readouterr().err
    rec = run_json(capsys, "predict", "decode", "--model", "Llama-2-70B", "--device", "H100-SXM", "--tp", "4", "--json")
    assert rec["memory"]["fits"] and rec["memory"]["weights_bytes"] == pytest.approx(2 * 68.977e9 / 4, rel=1e-3)


def test_predict_with_context_and_expert_parallelism(capsys):
    rec = run_json(capsys, "predict", "prefill", "--model", "llama-2-7b", "--context", "32768", "--cp", "8", "--json")
    assert rec["gpus"] == 8 and rec["method"] in ("pass-kv", "pass-q", "tokenring")
    assert rec["ttft_s"] == rec["time_s"] > 0 and "overlapped_communication_s" in rec["breakdown"]
    rec = run_json(capsys, "predict", "decode", "--model", "mixtral-8x7b", "--batch", "64", "--context", "1024", "--ep", "2", "--json")
    assert rec["n_gpus"] == 2 and any(c["name"].startswith("ep_") or "all_to_all" in c["explain"] for c in rec["communication"])
    assert main(["predict", "decode", "--model", "llama-2-7b", "--cp", "2"]) == 2
    assert "--cp applies to a prefill" in capsys.readouterr().err

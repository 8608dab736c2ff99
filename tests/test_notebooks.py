"""Every notebook in ``analyses/`` runs top to bottom in a fresh ``python3`` kernel.

The kernel imports the same ``hwmodels`` the tests import: the installed
package when the tests run against ``pip install .``, or the checkout when
``python -m pytest`` runs from the repo root (its directory is put first on
the kernel's ``PYTHONPATH``). The kernel starts in a temporary directory (also
its ``TMPDIR``), so a notebook cannot lean on files outside the package and
leaves nothing behind.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat (the 'test' extra)")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient (the 'test' extra)")
pytest.importorskip("ipykernel", reason="notebook tests need ipykernel (the 'test' extra)")

import hwmodels  # noqa: E402

ANALYSES = Path(__file__).resolve().parent.parent / "analyses"
NOTEBOOKS = sorted(ANALYSES.glob("*.ipynb"))
CELL_TIMEOUT_S = 180


def execute(path: Path, tmp_path: Path, monkeypatch) -> "nbformat.NotebookNode":
    """Run the notebook at ``path`` in a fresh kernel started in ``tmp_path``; return it with outputs."""
    package_root = str(Path(hwmodels.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # what a notebook writes to a temp dir goes under tmp_path
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # IPython colours its tracebacks
        pytest.fail(f"{path.name}: a cell failed:\n{plain}", pytrace=False)
    return nb


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                parts.append(out.data["text/plain"])
    return "".join(parts)


def error_outputs(nb) -> list:
    return [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]


def plotly_figures(nb) -> list[dict]:
    return [
        out.data["application/vnd.plotly.v1+json"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "data" in out and "application/vnd.plotly.v1+json" in out.data
    ]


def test_notebooks_exist():
    assert ANALYSES.joinpath("roofline.ipynb") in NOTEBOOKS
    assert ANALYSES.joinpath("kernel_sim.ipynb") in NOTEBOOKS
    assert ANALYSES.joinpath("kernels_bench.ipynb") in NOTEBOOKS
    assert ANALYSES.joinpath("serving_whatif.ipynb") in NOTEBOOKS
    assert ANALYSES.joinpath("techniques_whatif.ipynb") in NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nb = execute(path, tmp_path, monkeypatch)
    assert not error_outputs(nb)
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "every code cell ran"
    if path.name == "roofline.ipynb":
        check_roofline_notebook(nb)
    if path.name == "step_whatif.ipynb":
        check_step_whatif_notebook(nb)
    if path.name == "kernel_sim.ipynb":
        check_kernel_sim_notebook(nb)
    if path.name == "kernels_bench.ipynb":
        check_kernels_bench_notebook(nb)
    if path.name == "serving_whatif.ipynb":
        check_serving_whatif_notebook(nb)
    if path.name == "techniques_whatif.ipynb":
        check_techniques_whatif_notebook(nb)


def check_kernels_bench_notebook(nb):
    """Measured against simulated for every committed kernel CSV (CPU always, GPU when measured), and the targets."""
    from sim.kernel import measured

    text = outputs_text(nb)
    figures = plotly_figures(nb)
    files = measured.csv_files()
    assert len(figures) == len(files)
    for path in files:
        assert f"{path.parent.name}/{path.name}" in text
        kernels = {r["kernel"] for r in measured.read_rows(path)}
        fig = next(f for f in figures if f"{path.parent.name}/{path.name}" in f["layout"]["title"]["text"])
        assert {t["name"] for t in fig["data"]} == kernels | {"simulated = measured"}
    assert "Lean vs split-KV: faster in" in text and "tree T=64 vs one-token decode" in text


def check_step_whatif_notebook(nb):
    """It answers the four questions: ridge batch, TP all-reduce share, largest batch, 32k prefill with CP."""
    text = outputs_text(nb)
    for model in ("Llama-2-7B", "Llama-2-70B"):
        for device in ("A100-SXM-80GB", "H100-SXM", "H200"):
            assert re.search(rf"{model}\s+{device}\s+GEMMs compute-bound from batch \d+", text), (model, device)
            assert f"{model} TP=8 on {device}: all-reduce" in text
    assert re.search(r"Llama-2-70B\s+H200\s+(\d+\s+){5}\d+", text), "a largest-batch row per context"
    rows = {line.split("  ")[0].strip(): line for line in text.splitlines() if line.startswith(("1 GPU", "TP=8 ", "CP=8 "))}
    assert {"1 GPU", "TP=8", "CP=8 pass-kv", "CP=8 pass-q", "CP=8 tokenring"} <= set(rows)
    one, ring = float(rows["1 GPU"].split()[2]), float(rows["CP=8 pass-kv"].split()[2])
    assert ring < one / 4, "ring attention over 8 GPUs is several times faster than one GPU"


def check_serving_whatif_notebook(nb):
    """It answers the three questions: vLLM against Sarathi at one load, capacity under two SLOs, KV-cache bits."""
    text = outputs_text(nb)
    figures = plotly_figures(nb)
    gpus = ("A100-SXM-80GB", "H100-SXM")

    # 1. latency CDFs of both schedulers on both GPUs, their table, and the trade the text describes
    assert {t["name"] for t in figures[0]["data"]} == {f"{g} {s}" for g in gpus for s in ("vLLM", "Sarathi 512")}
    for g in gpus:
        for s in ("vLLM", "Sarathi 512"):
            row = re.search(rf"^{g} {s}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+%\s+\d+$", text, re.M)
            assert row, (g, s)
            if g == "H100-SXM":  # the text: both schedulers well under the strict SLO on the H100 at this load
                assert float(row.group(4)) < 0.1, (g, s)
        tbt, ttft = re.search(rf"^{g}: Sarathi's P99 TBT is ([\d.]+)x lower than vLLM's, its P99 TTFT ([\d.]+)x higher", text, re.M).groups()
        assert float(tbt) > 1 and float(ttft) > 1, g

    # 2. a capacity per GPU, SLO and scheduler; what bound each; chunked prefills raise it under the strict SLO
    rows = re.findall(r"^(\S+)\s+(strict|relaxed) [\d.]+ s\s+(vLLM|Sarathi \d+)\s+([\d.]+)\s+\d+\s+[\d.]+ QPS: .* -> (.+)$", text, re.M)
    caps = {(g, slo, s): float(c) for g, slo, s, c, _ in rows}
    assert set(caps) == {(g, slo, s) for g in gpus for slo, s in (("strict", "vLLM"), ("strict", "Sarathi 512"),
                                                                   ("relaxed", "vLLM"), ("relaxed", "Sarathi 2048"))}
    for g, slo, s, _, why in rows:
        if s.startswith("Sarathi"):
            assert why == "queue", (g, slo, s, why)
        elif slo == "strict":
            assert why == "P99 TBT", (g, slo, s, why)
    for g in gpus:
        assert caps[(g, "strict", "Sarathi 512")] > 1.5 * caps[(g, "strict", "vLLM")], g
        for slo, s in (("strict", "Sarathi 512"), ("relaxed", "Sarathi 2048")):
            ratio = re.search(rf"^{g} {slo} SLO \([\d.]+ s\): Sarathi / vLLM capacity = ([\d.]+)x$", text, re.M)
            assert ratio and float(ratio.group(1)) == pytest.approx(caps[(g, slo, s)] / caps[(g, slo, "vLLM")], rel=0.01)
        per_token = re.search(rf"^{g}: a Sarathi iteration .* costs (\d+) us per prompt token at budget 512, (\d+) us at 2048$", text, re.M)
        assert per_token and int(per_token.group(2)) < int(per_token.group(1)), g
    bars = next(f for f in figures if f["layout"]["title"]["text"].startswith("Capacity"))
    assert {t["meta"]["scheduler"] for t in bars["data"]} == {"vLLM", "Sarathi"}
    assert all(len(t["y"]) == 4 and all(y > 0 for y in t["y"]) for t in bars["data"])

    # 3. KV bits: blocks double with each halving, and the batch, throughput and prefill share grow with them
    gains = {}
    for model in ("Llama-2-7B", "Mistral-7B"):
        blocks = {int(b): int(n.replace(",", "")) for b, n in
                  re.findall(rf"^{model}\s+(16|8|4)\s+[\d,]+\s+([\d,]+)\s+[\d,]+\s+[\d.]+\s+[\d.]+$", text, re.M)}
        assert set(blocks) == {16, 8, 4}, model
        assert abs(blocks[8] - 2 * blocks[16]) <= 2 and abs(blocks[4] - 2 * blocks[8]) <= 2, blocks
        # the text's explanation: at 8 bits decode attention turns compute-bound (padded tile), 4 bits buy no more
        fixed = {int(m[0]): [float(x) for x in m[1:]] for m in
                 re.findall(rf"^{model}\s+(16|8|4)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", text, re.M)}
        assert set(fixed) == {16, 8, 4}, model
        assert fixed[16][3] == 0 and fixed[8][3] > 0.9 * fixed[8][2] and fixed[4][2] == fixed[8][2], fixed
        runs = {int(m[0]): [float(x) for x in m[1:]] for m in
                re.findall(rf"^{model}\s+(16|8|4)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+(\d+)%$", text, re.M)}
        assert set(runs) == {16, 8, 4}, model
        for col in range(6):  # peak batch, mean batch, tokens/s, decode-only tokens/s, -preemptions, prefill share
            sign = -1 if col == 4 else 1
            assert sign * runs[16][col] <= sign * runs[8][col] <= sign * runs[4][col], (model, col, runs)
        assert runs[16][0] < runs[4][0] and runs[16][2] < runs[4][2]
        gains[model] = runs[8][2] / runs[16][2]
    assert gains["Mistral-7B"] < gains["Llama-2-7B"]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert any(t.startswith("KV-cache blocks in use") for t in titles)
    running = next(f for f in figures if f["layout"]["title"]["text"].startswith("Running requests"))
    assert {(t["meta"]["model"], t["meta"]["kv_bits"]) for t in running["data"]} == {
        (m, b) for m in ("Llama-2-7B", "Mistral-7B") for b in (16, 8, 4)}


def check_techniques_whatif_notebook(nb):
    """It answers the questions: speculative crossovers, low-bit KV, Hydragen against prefix, CP methods and links,
    and decode over a split cache."""
    text = outputs_text(nb)
    figures = plotly_figures(nb)
    num = r"[\d.]+"

    # 1. speculation on the H100: the chain never slows down, both trees do (heads first), inside what fits
    first = {}
    for name in ("chain", "tree, lookup", "tree"):
        line = re.search(rf"^H100-SXM {name}: (.+); speedup ({num}) at batch 1, ({num}) at batch 256$", text, re.M)
        assert line, name
        assert float(line.group(2)) > 2.5, (name, "near tau at batch 1")
        hit = re.fullmatch(r"slowdown from batch (\d+) \(fits\)", line.group(1))
        first[name] = int(hit.group(1)) if hit else None
        if name == "chain":
            assert line.group(1) == "no slowdown up to batch 256" and float(line.group(3)) > 1
        else:
            assert hit and float(line.group(3)) < 1, (name, line.group(0))
    assert 4 < first["tree"] <= first["tree, lookup"] < 64
    rows = {int(m[0]): [float(x) for x in m[1:]] for m in re.findall(rf"^\s*(\d+)\s+({num})\s+({num})\s+({num})$", text, re.M)}
    assert {1, 4, 16, 64, 256} <= set(rows)
    assert all(rows[b][2] < rows[b][1] for b in rows), "the heads cost time on top of the lookup tree"
    tree = [rows[b][2] for b in sorted(rows) if b >= 4]
    assert all(x >= y for x, y in zip(tree, tree[1:])), "the tree's speedup falls with the batch"
    # the mechanism: verification GEMMs compute-bound long before plain decoding's, the tree's first
    bound = re.search(r"layer GEMMs compute-bound from batch (\d+) \(tree\), (\d+) \(chain\), (\d+) \(decode\)", text)
    assert bound and int(bound.group(1)) < int(bound.group(2)) < int(bound.group(3))
    mech = {int(m[0]): float(m[1]) for m in re.findall(
        rf"^\s*(\d+) \|(?:\s+{num}){{3}} \|(?:\s+{num}){{4}} \|(?:\s+{num}){{3}}\s+({num})\s+\d+\s+(?:memory|compute) \|\s+{num}$",
        text, re.M)}
    assert set(mech) == {1, 4, 8, 16, 32, 64, 128, 256}
    assert mech[1] < 1.2 and mech[256] > 3.7, "verify/decode of the tree: about one step at batch 1, past tau at 256"
    # the tree on three GPUs: slowdown earliest on the RTX 3090, latest on the H100; the 3090's sweep fits 24 GB
    slow = {d: int(b) for d, b in re.findall(r"^(H100-SXM|A100-SXM-80GB|RTX-3090) tree: slowdown from batch (\d+)$", text, re.M)}
    assert slow["RTX-3090"] < slow["A100-SXM-80GB"] < slow["H100-SXM"] == first["tree"], slow
    fits = {m[0]: (int(m[1]), float(m[2])) for m in re.findall(
        rf"^(H100-SXM|A100-SXM-80GB|RTX-3090)\s+(?:{num}\s+){{4}}(\d+)\s+({num})\s+{num}\s+{num}\s+\d+$", text, re.M)}
    assert set(fits) == {"H100-SXM", "A100-SXM-80GB", "RTX-3090"}
    assert fits["RTX-3090"][1] <= 24 * 0.9 and fits["RTX-3090"][0] < fits["A100-SXM-80GB"][0]
    spec = figures[0]
    assert {t["meta"]["technique"] for t in spec["data"]} == {"chain", "tree, lookup", "tree"}
    assert all(t["x"][0] == 1 and t["x"][-1] == 256 for t in spec["data"])
    devices = figures[1]
    assert {t["meta"]["device"] for t in devices["data"]} == {"A100-SXM-80GB", "RTX-3090"}
    for t in devices["data"]:
        assert max(t["x"]) == fits[t["meta"]["device"]][0], "swept up to what fits, no further"

    # 2. KV bits: the ratios, the batches, and only attention shrinking at a fixed batch
    kv = re.findall(rf"^(A100-SXM-40GB|H100-SXM)\s+(\d+)\s+([24])\s+({num})\s+({num})x\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)"
                    rf"\s+({num})x\s+({num})x\s+({num})\s+({num})\s+({num})$", text, re.M)
    assert {(d, int(c), int(b)) for d, c, b, *_ in kv} == {(d, c, b) for d in ("A100-SXM-40GB", "H100-SXM")
                                                           for c in (4096, 8192, 16384, 32768) for b in (2, 4)}
    thr = {}
    for d, c, bits, bpe, mem, b16, bq, exact, tps16, tpsq, ratio, speedup, a16, aq, rest in kv:
        assert float(mem) == pytest.approx(16 / float(bpe), abs=0.01) and float(bpe) == float(bits) + 0.25
        assert int(b16) < int(bq) == int(exact), "the compressed cache fits more sequences: as many as its bytes allow"
        assert 1 < float(ratio) <= int(bq) / int(b16) * 1.01, "no more than the batch it makes room for"
        assert float(aq) < float(a16) and float(speedup) == pytest.approx((float(a16) + float(rest)) / (float(aq) + float(rest)), rel=0.01)
        thr[(d, int(c), int(bits))] = float(ratio)
    assert all(thr[(d, c, 2)] > thr[(d, c, 4)] for d, c, _ in thr)

    # 3. Hydragen: the split adds up, plain decoding grows with the prefix, Hydragen barely, the speedup climbs
    hyd = [[float(x) for x in m] for m in re.findall(
        rf"^\s*(\d+)\s+{num} \|\s+({num})\s+({num})\s+({num}) \|\s+({num})\s+({num})\s+({num})\s+({num}) \|\s+({num})x", text, re.M)]
    assert [int(r[0]) for r in hyd] == [512 * 2**k for k in range(7)]
    for prefix, plain, layers, attn, total, layers2, suffix, pre, speedup in hyd:
        assert plain == pytest.approx(layers + attn, abs=0.02) and total == pytest.approx(layers2 + suffix + pre, abs=0.02)
        assert speedup == pytest.approx(plain / total, rel=0.02)
    assert all(a[8] < b[8] for a, b in zip(hyd, hyd[1:]))
    assert hyd[-1][1] > 30 * hyd[0][1] and hyd[-1][4] < 2 * hyd[0][4]

    # 4. context parallelism: every method, GPU count and link; ring hidden on NVLink; LASP-2 fastest; PCIe never better
    cp = {(t, int(n), m): (float(time_s), float(exposed)) for t, n, m, time_s, exposed in re.findall(
        rf"^(NVLink|PCIe)\s+(\d)\s+(ring|TokenRing|LASP-2)\s+({num})\s+{num}\s+{num}\s+({num})\s+{num} +(?:\dx\S+ switch|PCIe box)", text, re.M)}
    assert set(cp) == {(t, n, m) for t in ("NVLink", "PCIe") for n in (2, 4, 8) for m in ("ring", "TokenRing", "LASP-2")}
    for n in (2, 4, 8):
        assert cp[("NVLink", n, "ring")][1] == 0
        for t in ("NVLink", "PCIe"):
            assert cp[(t, n, "LASP-2")][0] < cp[(t, n, "ring")][0] <= cp[(t, n, "TokenRing")][0]
        for m in ("ring", "TokenRing", "LASP-2"):
            assert cp[("PCIe", n, m)][0] >= cp[("NVLink", n, m)][0] and cp[("PCIe", n, m)][1] >= cp[("NVLink", n, m)][1]
    assert cp[("NVLink", 2, "ring")][0] / cp[("NVLink", 8, "ring")][0] == pytest.approx(4, rel=0.05)
    assert re.search(r"^cp=1: .* -> does not fit$", text, re.M) and len(re.findall(r"^cp=[248]: .* -> fits$", text, re.M)) == 3
    same = re.search(rf"TokenRing over ring at 8 GPUs: ({num})x \(from the table: ({num})x\)", text)
    assert same and same.group(1) == same.group(2)
    lines = next(f for f in figures if f["layout"]["title"]["text"].startswith("128k-token prefill"))
    assert {(t["meta"]["topology"], t["meta"]["method"]) for t in lines["data"]} == {
        (t, m) for t in ("NVLink", "PCIe") for m in ("ring", "TokenRing", "LASP-2")}

    # 5. decode over a split cache: the tree loses to one GPU only at short contexts, always beats the ring, pays sooner
    # at batch 16 and over NVLink, and never buys more than the 8 GPUs
    cpd = {(t, int(b), int(k)): (float(one), float(ring)) for t, b, k, one, ring in re.findall(
        rf"^(NVLink|PCIe)\s+(1|16)\s+(\d+)k\s+({num})x\s+({num})x\s+{num}\s+{num}$", text, re.M)}
    assert set(cpd) == {(t, b, k) for t in ("NVLink", "PCIe") for b in (1, 16) for k in (8, 32, 128, 512, 1024)}
    assert all(one < 8 and ring > 1 for one, ring in cpd.values())
    assert cpd[("NVLink", 1, 8)][0] < 1 < cpd[("NVLink", 1, 1024)][0]
    cross = {(t, int(b)): int(k) for t, b, k in re.findall(r"(NVLink|PCIe) batch (1|16): (\d+)k tokens", text)}
    assert cross[("NVLink", 16)] <= cross[("NVLink", 1)] <= cross[("PCIe", 1)]
    assert all(cpd[(t, b, k)][0] > 1 for (t, b), c in cross.items() for k in (8, 32, 128, 512, 1024) if k >= c)
    split = next(f for f in figures if f["layout"]["title"]["text"].startswith("Llama-3.1-8B decode attention split"))
    assert {(t["meta"]["link"], t["meta"]["batch"]) for t in split["data"]} == {(t, b) for t in ("NVLink", "PCIe") for b in (1, 16)}


KERNEL_SIM_KERNELS = {"lean": "LeanAttention", "split-kv": "FlashDecoding", "flash": "FlashAttention-2"}
KERNEL_SIM_SHAPES = ("b1 x 8 KV heads", "b1 x 32 heads", "b16 x 32 heads", "b64 x 32 heads")


def check_kernel_sim_notebook(nb):
    """It answers the issue: the decode sweep on A100 and H100 with its win table, three timelines, tree cost T = 1..256."""
    text = outputs_text(nb)
    figures = plotly_figures(nb)
    traces = [t for f in figures for t in f["data"]]
    devices = ("A100-SXM-80GB", "H100-SXM")

    # 1. decode time over 1k..512k for every kernel, shape and device (two figures: time, slowdown)
    decode = [t for t in traces if t.get("meta", {}).get("kind") == "decode"]
    want = {(d, s, k) for d in devices for s in KERNEL_SIM_SHAPES for k in KERNEL_SIM_KERNELS}
    assert {(t["meta"]["device"], t["meta"]["shape"], t["meta"]["kernel"]) for t in decode} == want
    assert len(decode) == 2 * len(want)
    for t in decode:
        assert t["x"][0] == 1024 and t["x"][-1] == 512 * 1024 and len(t["x"]) >= 8
        assert all(math.isfinite(y) and y > 0 for y in t["y"]), t["meta"]
    assert "sanity: 0 runs faster than the HBM floor, 0 runs faster than at half the context" in text
    # the win table: all three kernels in its header, a row for every device and shape, a known winner in each
    table = text[text.rfind("\n", 0, text.index(" winner ")) + 1 :].splitlines()
    header = table[0]
    assert all(name in header for name in KERNEL_SIM_KERNELS.values())
    rows = [line for line in table if line.startswith(devices) and line[15:31].strip() in KERNEL_SIM_SHAPES]
    contexts = [2**k for k in range(10, 20)]
    for d in devices:
        for s in KERNEL_SIM_SHAPES:
            mine = [r for r in rows if r.startswith(d) and r[15:31].strip() == s]
            assert all(r[44:60].strip() in KERNEL_SIM_KERNELS.values() for r in mine), mine
            covered = []  # the runs of contexts, in order, cover 1k..512k once
            for r in mine:
                first, _, last = r[32:42].strip().partition("-")
                lo, hi = int(first[:-1]) * 1024, int((last or first)[:-1]) * 1024
                covered += [c for c in contexts if lo <= c <= hi]
            assert covered == contexts, (d, s, mine)

    # 2. the under-filled timelines: FA2 leaves most SMs idle, Lean uses them all and wins several-fold
    titles = [f["layout"]["title"]["text"] for f in figures]
    for name in KERNEL_SIM_KERNELS.values():
        assert any(t.startswith(f"{name} on H100-SXM") for t in titles), name
    placed = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^(\S+)\s+[\d.]+ us\s+\d+ CTAs on\s+(\d+) of (\d+) SMs", text, re.M)}
    assert set(placed) == set(KERNEL_SIM_KERNELS.values())
    assert placed["FlashAttention-2"][0] < placed["FlashAttention-2"][1] / 2
    assert placed["LeanAttention"][0] == placed["LeanAttention"][1]
    ratio = re.search(r"FlashAttention-2 / LeanAttention = ([\d.]+)x", text)
    assert ratio and float(ratio.group(1)) > 3

    # 3. tree verification: T = 1..256 on all three devices, relative to T = 1; the measured reference labelled generic
    tree = [t for t in traces if t.get("meta", {}).get("kind") == "simulated"]
    assert {t["meta"]["device"] for t in tree} == {"A100-SXM-80GB", "H100-SXM", "RTX-4090"}
    assert {(t["meta"]["batch"], t["meta"]["prefix"]) for t in tree} == {(1, 1024), (1, 8192), (8, 1024), (8, 8192)}
    assert len(tree) == 12
    for t in tree:
        assert t["x"][0] == 1 and t["x"][-1] == 256 and {1, 2, 4, 8, 16, 32, 64, 128, 256} <= set(t["x"])
        assert t["y"][0] == 1.0 and all(math.isfinite(y) and y > 0 for y in t["y"])
    measured = [t for t in traces if t.get("meta", {}).get("kind") == "measured"]
    assert {t["meta"]["kernel"] for t in measured} >= {"efficient_tree_mask", "cudnn_tree_mask"}
    assert all("measured" in t["name"] and "generic" in t["name"] for t in measured)
    assert all(t["y"][0] == 1.0 and t["x"][-1] == 256 for t in measured)
    for d in ("A100-SXM-80GB", "H100-SXM", "RTX-4090"):
        assert len(re.findall(rf"^{d} simulated\s+[18]\s+[18]k(\s+[\d.]+){{7}}$", text, re.M)) == 4, d


def check_roofline_notebook(nb):
    text = outputs_text(nb)
    table = text[text.index("attainable") :]  # the placement table's header, then its rows
    for device in ("A100-SXM-80GB", "H100-SXM", "H200", "MI300X"):
        name = hwmodels.get_device(device).name
        rows = [line for line in table.splitlines() if line.startswith(name)]
        assert len(rows) == 4, f"{name}: one placement row per operation, got {rows}"
        assert all(("memory" in r or "compute" in r) for r in rows)
    # the decode GEMV is memory-bound on every device, the 4096^3 GEMM compute-bound on every device
    assert all("memory" in line for line in table.splitlines() if "decode GEMV" in line)
    assert all("compute" in line for line in table.splitlines() if "GEMM 4096" in line)
    figures = [
        out.data["application/vnd.plotly.v1+json"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "data" in out and "application/vnd.plotly.v1+json" in out.data
    ]
    assert figures, "the figure is displayed"
    traces = figures[-1]["data"]
    assert {t["meta"]["device"] for t in traces} == {hwmodels.get_device(n).name for n in ("A100-SXM-80GB", "H100-SXM", "H200", "MI300X")}
    assert sum(len(t["x"]) for t in traces if t["meta"]["kind"] == "operations") == 16
    wrote = [line for line in text.splitlines() if line.startswith("wrote ")]
    assert wrote and wrote[0].split()[1].endswith("roofline.html")
    assert Path(wrote[0].split()[1]).is_file()

"""Every notebook in ``analyses/`` runs top to bottom in a fresh ``python3`` kernel.

The kernel imports the same ``hwmodels`` the tests import: the installed
package when the tests run against ``pip install .``, or the checkout when
``python -m pytest`` runs from the repo root (its directory is put first on
the kernel's ``PYTHONPATH``). The kernel starts in a temporary directory (also
its ``TMPDIR``), so a notebook cannot lean on files outside the package and
leaves nothing behind.
"""

from __future__ import annotations

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


def test_notebooks_exist():
    assert ANALYSES.joinpath("roofline.ipynb") in NOTEBOOKS


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

"""The serving simulator against published serving results (sim/data/measured/serving_published.csv).

The issue's bound: the direction and size, within 25%, of Sarathi-Serve's capacity
gain over vLLM (Mistral-7B, one A100, strict TBT SLO) and of Hydragen's throughput
as the shared prefix grows from 1K to 16K tokens (CodeLlama-13B, 8xA100-40GB, TP=8,
batch 1024). The README's table is this module's output.
"""

from __future__ import annotations

import pytest

from sim.serving import validation

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def checks() -> dict[str, validation.Check]:
    return {c.id: c for c in validation.checks()}


def test_every_published_row_is_predicted(checks):
    assert set(checks) == {r["id"] for r in validation.published()}


def test_sarathi_serves_more_than_vllm_under_the_strict_slo_within_25_percent_of_the_paper(checks):
    c = checks["sarathi-mistral7b-a100-strict-gain"]
    assert c.predicted > 1.0, c.how
    assert abs(c.error) <= validation.TOLERANCE, f"{c.predicted:.2f}x against the paper's {c.reported}x: {c.how}"


@pytest.mark.parametrize("series", ["hydragen-codellama13b", "vllm027"])
def test_throughput_falls_as_the_shared_prefix_grows_as_the_paper_measured(checks, series):
    rows = [c for c in checks.values() if c.id.startswith(series)]
    predicted = [c.predicted for c in rows]
    assert predicted == sorted(predicted, reverse=True), "throughput should fall with every longer prefix"
    for cid, reported, pred in validation.prefix_growth(rows, series)[1:]:
        assert pred / reported - 1 == pytest.approx(0, abs=validation.TOLERANCE), (cid, reported, pred)


def test_hydragen_keeps_most_of_its_throughput_where_vllm_loses_most_of_it(checks):
    hyd = validation.prefix_growth(list(checks.values()), "hydragen-codellama13b")[-1][2]
    vllm = validation.prefix_growth(list(checks.values()), "vllm027")[-1][2]
    assert hyd > 0.75 and vllm < 0.15, (hyd, vllm)


@pytest.mark.xfail(strict=True, reason="Hydragen's model code runs the layers at half the step model's rate: its own "
                   "no-attention ceiling is 18.5k tokens/s where the step model predicts about 36k; absolute levels miss by +64% to +97%")
def test_absolute_shared_prefix_throughputs_within_25_percent(checks):
    for c in checks.values():
        if c.metric == "decode_tokens_per_s":
            assert abs(c.error) <= validation.TOLERANCE, (c.id, c.reported, c.predicted)


def test_readme_shows_the_validation_table(checks):
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for line in validation.table(list(checks.values())).splitlines()[2:]:
        assert line in readme, f"README is out of date; rerun python -m sim.serving.validation: missing {line}"

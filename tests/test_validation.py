"""The step model against published measurements (sim/data/measured/llm_inference.csv)."""

import pytest

from sim.validation import evaluate, is_held_out, load_rows, summary

PREDICTIONS = evaluate()


def test_at_least_twenty_rows_over_three_gpu_types_are_predicted():
    rows = {r["id"]: r for r in load_rows()}
    predicted = [p for p in PREDICTIONS if p.predicted is not None]
    assert len(predicted) >= 20
    assert len({rows[p.row_id]["device"] for p in predicted}) >= 3


def test_every_row_is_either_predicted_or_says_why_not():
    for p in PREDICTIONS:
        assert p.reason, p.row_id
        if p.predicted is None:
            assert "serving" in p.reason or "not predicted" in p.reason or "backward" in p.reason, p.reason


def test_the_held_out_third_is_fixed_by_the_ids_alone():
    ids = [r["id"] for r in load_rows()]
    held = [i for i in ids if is_held_out(i)]
    assert 0.2 < len(held) / len(ids) < 0.45
    assert [i for i in ids if is_held_out(i)] == held  # deterministic


def test_flash_attention_2_decode_pays_for_its_padded_query_tile():
    """FA2 without split-KV at batch 1, 64k context: 16 CTAs each computing a 128-row tile for one query."""
    p = next(p for p in PREDICTIONS if p.row_id == "fa2-decode-a100-b1-s65536")
    assert abs(p.error) < 0.15


@pytest.mark.xfail(
    strict=True,
    reason=(
        "issue 3's bound is not met yet: held-out median |error| is about 17% and max about 55%. "
        "Known causes: TensorRT-LLM v0.5 FP8 first-token latency is 1.2-2.4x the calibrated-roofline time; "
        "gpt-fast's int8 weight-only kernels (fused by its 2023 compiler) were not measured, so int8 is costed by "
        "bytes alone; gpt-fast's bf16 decode runs ~15% below the model (GEMV streaming and small-kernel costs, "
        "as our own H100 steps show); the shortest Flash-Decoding calls carry fixed costs not modelled"
    ),
)
def test_held_out_error_is_within_the_issues_bounds():
    held = summary(PREDICTIONS)["held_out"]
    assert held["median_abs_error"] <= 0.10
    assert held["max_abs_error"] <= 0.30


def test_the_readme_table_is_the_current_one():
    """The README shows every predicted row; a model change must update it (python -m sim.validation)."""
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not beside the tests")
    ids = {p.row_id for p in PREDICTIONS}
    shown = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] in ids:
            shown[cells[0]] = cells[4]
    current = {p.row_id: f"{p.error:+.1%}" for p in PREDICTIONS if p.predicted is not None}
    assert shown == current

"""The published LLM-inference measurements file is well formed.

``sim/data/measured/llm_inference.csv`` is transcribed from primary sources (see the README next to
it). These tests check its integrity only: that it parses, that rows are complete enough to be used,
and that names match the device catalog. They do not check the numbers against any model.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import pytest

import hwmodels as hw

CSV_PATH = Path(__file__).resolve().parent.parent / "sim" / "data" / "measured" / "llm_inference.csv"

REQUIRED = ("id", "kind", "metric", "value", "device", "n_gpus", "model", "source_url")
COLUMNS = REQUIRED + (
    "tp", "pp", "weight_bits", "kv_bits", "batch", "input_tokens", "output_tokens", "context_tokens",
    "heads", "kv_heads", "head_dim", "causal", "framework", "framework_version", "source_locator", "date", "note",
)
KINDS = {"decode_step", "prefill", "end_to_end", "throughput", "attention_kernel"}
METRICS = {
    "tokens_per_s_per_sequence", "ttft_s", "tpot_s", "itl_s", "output_tokens_per_s",
    "output_tokens_per_s_per_gpu", "requests_per_s", "latency_s", "flop_per_s", "flop_per_s_fwd_bwd",
}
INTEGER_COLUMNS = (
    "n_gpus", "tp", "pp", "weight_bits", "kv_bits", "batch", "input_tokens", "output_tokens",
    "context_tokens", "query_tokens", "heads", "kv_heads", "head_dim",
)


def _rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


ROWS = _rows()


def test_csv_parses_with_expected_columns():
    with CSV_PATH.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    missing = [c for c in COLUMNS if c not in header]
    assert not missing, f"missing columns: {missing}"
    assert len(header) == len(set(header)), "duplicate column names"
    for row in ROWS:
        assert None not in row, f"row {row.get('id')} has more cells than the header"
        assert all(v is not None for v in row.values()), f"row {row.get('id')} has fewer cells than the header"


def test_enough_rows_over_enough_devices():
    assert len(ROWS) >= 20
    assert len({r["device"] for r in ROWS}) >= 3


def test_ids_unique():
    dup = [i for i, n in Counter(r["id"] for r in ROWS).items() if n > 1]
    assert not dup, f"duplicate ids: {dup}"


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_row_is_complete_and_consistent(row):
    for col in REQUIRED:
        assert row[col].strip(), f"{col} is empty"
    value = float(row["value"])
    assert math.isfinite(value) and value > 0
    assert row["source_url"].startswith("https://")
    assert row["device"] in hw.CATALOG.names()
    assert row["kind"] in KINDS
    assert row["metric"] in METRICS
    for col in INTEGER_COLUMNS:
        if row.get(col, "").strip():
            assert int(row[col]) > 0, f"{col} must be a positive integer"
    tp = int(row["tp"]) if row["tp"] else 1
    pp = int(row["pp"]) if row["pp"] else 1
    assert int(row["n_gpus"]) % (tp * pp) == 0, "n_gpus must be a whole number of tp*pp instances"
    for flag in ("sku_verified", "read_from_plot"):
        if flag in row:
            assert row[flag] in {"yes", "no"}, f"{flag} must be yes or no"
    if row["causal"]:
        assert row["causal"] in {"true", "false"}


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r["kind"] == "attention_kernel"],
    ids=[r["id"] for r in ROWS if r["kind"] == "attention_kernel"],
)
def test_attention_rows_carry_their_shape(row):
    for col in ("heads", "head_dim", "context_tokens", "batch"):
        assert row[col].strip(), f"attention row needs {col}"
    assert row["metric"] in {"latency_s", "flop_per_s", "flop_per_s_fwd_bwd"}

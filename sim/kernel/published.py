"""The kernel simulator against published attention-kernel figures.

Two files feed it (both under ``sim/data/measured/``):

- ``attention_kernels_published.csv``: decode-attention latencies, FlashInfer's
  decode bandwidth utilisation and LeanAttention's speedups, one published
  number a row (columns in that folder's README);
- the ``attention_kernel`` rows of ``llm_inference.csv`` (Flash-Decoding and
  FlashAttention-2 latencies, FlashAttention-2/3 forward FLOP/s), adapted to
  the same row shape.

Every row whose setting is complete and whose kernel maps to a simulator
schedule (``lean``, ``split-kv``, ``flash``) is run through
:func:`sim.kernel.schedules.run.simulate_schedule`; nothing is fitted and
nothing is cached, so the table follows the engine as it changes. A speedup
is predicted as the ratio of the two simulated kernels' times. A row that
cannot be predicted says why.

Orderings: a speedup row's published ordering is whether it is above 1. Rows
of one source that share device, kind and setting but name different
schedules form pairs; their published ordering is which value is better
(lower latency, higher bandwidth or FLOP/s). A pair is only counted where
the published difference exceeds what the source can resolve (5 % for plot
readings, any difference otherwise).

``python -m sim.kernel.published`` prints both tables.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import hwmodels as hw
from hwmodels.errors import DataFileError, KernelabError

DATA = resources.files("sim") / "data" / "measured" / "attention_kernels_published.csv"
LLM_DATA = resources.files("sim") / "data" / "measured" / "llm_inference.csv"

COLUMNS = ("id", "kind", "value", "kernel", "schedule", "baseline_kernel", "baseline_schedule", "device",
           "device_as_stated", "sku_verified", "batch", "heads", "kv_heads", "head_dim", "context", "query_tokens",
           "dtype", "source_url", "source_locator", "date", "value_as_published", "read_from_plot", "note")
KINDS = ("speedup", "latency_s", "bytes_per_s", "flop_per_s", "bandwidth_fraction")
SCHEDULES = ("lean", "split-kv", "flash")
SETTING = ("batch", "heads", "kv_heads", "head_dim", "context", "query_tokens", "dtype")
REQUIRED = ("id", "kind", "value", "kernel", "device_as_stated", "sku_verified", "source_url", "source_locator",
            "value_as_published", "read_from_plot", "note")
HIGHER_IS_BETTER = {"latency_s": False, "bytes_per_s": True, "flop_per_s": True, "bandwidth_fraction": True}
PLOT_RESOLUTION = 0.05  # relative difference below which two plot readings are not taken as ordered

# llm_inference.csv attention_kernel rows: framework prefix -> schedule
_LLM_SCHEDULE = {"flash-decoding": "split-kv", "flashattention-2": "flash"}


@dataclass(frozen=True)
class Row:
    id: str
    kind: str
    value: float
    kernel: str
    schedule: str  # "" when no simulator schedule models the kernel
    baseline_kernel: str
    baseline_schedule: str
    device: str  # "" when the source does not state it
    batch: int | None
    heads: int | None
    kv_heads: int | None
    head_dim: int | None
    context: int | None
    query_tokens: int | None
    causal: bool
    dtype: str
    source_url: str
    source_locator: str
    read_from_plot: bool
    sku_verified: bool
    file: str

    @property
    def setting(self) -> tuple:
        return (self.device, self.batch, self.heads, self.kv_heads, self.head_dim, self.context, self.query_tokens,
                self.causal, self.dtype)

    @property
    def missing(self) -> list[str]:
        """Setting fields the source leaves unstated (the row cannot be simulated while any is)."""
        out = [] if self.device else ["device"]
        return out + [f for f in SETTING if getattr(self, f) in (None, "")]


@dataclass(frozen=True)
class Result:
    row: Row
    predicted: float | None
    reason: str  # how it was predicted, or why not

    @property
    def measured(self) -> float:
        return self.row.value

    @property
    def error(self) -> float | None:
        """Predicted / published - 1."""
        return None if self.predicted is None else self.predicted / self.measured - 1.0

    @property
    def ordering_ok(self) -> bool | None:
        """Speedup rows: whether the simulated ratio is on the same side of 1 as the published one."""
        if self.row.kind != "speedup" or self.predicted is None or self.measured == 1.0:
            return None
        return (self.predicted > 1.0) == (self.measured > 1.0)


@dataclass(frozen=True)
class Pair:
    """Two rows of one source at one setting, naming different schedules; ``better`` is the published winner."""

    better: Result
    worse: Result

    @property
    def name(self) -> str:
        return f"{self.better.row.id} > {self.worse.row.id}"

    @property
    def ordering_ok(self) -> bool | None:
        a, b = self.better.predicted, self.worse.predicted
        if a is None or b is None:
            return None
        return a > b if HIGHER_IS_BETTER[self.better.row.kind] else a < b


def _fail(path, field, problem):
    raise DataFileError(path, field, problem)


def _positive_int(path, row_id, row, key) -> int | None:
    v = row.get(key, "")
    if v in (None, ""):
        return None
    try:
        f = float(v)
    except ValueError:
        _fail(path, key, f"row {row_id!r}: not a number: {v!r}")
    if f != int(f) or f < 1:
        _fail(path, key, f"row {row_id!r}: must be a positive integer, got {v!r}")
    return int(f)


def _yes_no(path, row_id, row, key) -> bool:
    v = row.get(key, "")
    if v not in ("yes", "no"):
        _fail(path, key, f"row {row_id!r}: must be 'yes' or 'no', got {v!r}")
    return v == "yes"


def _parse(path, raw: dict, n: int) -> Row:
    row_id = raw.get("id") or ""
    if not row_id:
        _fail(path, "id", f"empty in data row {n}")
    for key in REQUIRED:
        if not (raw.get(key) or "").strip():
            _fail(path, key, f"row {row_id!r}: empty")
    if raw["kind"] not in KINDS:
        _fail(path, "kind", f"row {row_id!r}: {raw['kind']!r} is not one of {', '.join(KINDS)}")
    try:
        value = float(raw["value"])
    except ValueError:
        _fail(path, "value", f"row {row_id!r}: not a number: {raw['value']!r}")
    if not math.isfinite(value) or value <= 0:
        _fail(path, "value", f"row {row_id!r}: must be positive and finite, got {raw['value']!r}")
    for key in ("schedule", "baseline_schedule"):
        if raw.get(key) and raw[key] not in SCHEDULES:
            _fail(path, key, f"row {row_id!r}: {raw[key]!r} is not one of {', '.join(SCHEDULES)} (or empty)")
    speedup = raw["kind"] == "speedup"
    if speedup != bool(raw.get("baseline_kernel")):
        _fail(path, "baseline_kernel", f"row {row_id!r}: needed for speedup rows and only for them")
    if raw.get("device") and raw["device"] not in hw.CATALOG.names():
        _fail(path, "device", f"row {row_id!r}: {raw['device']!r} is not a catalog name "
                              f"({', '.join(hw.CATALOG.names())})")
    if not raw["source_url"].startswith("https://"):
        _fail(path, "source_url", f"row {row_id!r}: must be an https URL")
    return Row(id=row_id, kind=raw["kind"], value=value, kernel=raw["kernel"], schedule=raw.get("schedule", ""),
               baseline_kernel=raw.get("baseline_kernel", ""), baseline_schedule=raw.get("baseline_schedule", ""),
               device=raw.get("device", ""),
               **{k: _positive_int(path, row_id, raw, k) for k in SETTING if k != "dtype"},
               causal=raw.get("causal", "") == "true", dtype=raw.get("dtype", ""),
               source_url=raw["source_url"], source_locator=raw["source_locator"],
               read_from_plot=_yes_no(path, row_id, raw, "read_from_plot"),
               sku_verified=_yes_no(path, row_id, raw, "sku_verified"), file=Path(str(path)).name)


def _read(source) -> tuple[str, list[str], list[dict]]:
    with resources.as_file(source) as path, open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        return str(path), header, list(reader)


def load_rows(path: str | Path | None = None) -> list[Row]:
    """Parse ``attention_kernels_published.csv`` (or ``path``); a bad cell raises :class:`DataFileError`."""
    path_str, header, raws = _read(Path(path) if path is not None else DATA)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        _fail(path_str, missing[0], "column missing from the header")
    rows = [_parse(path_str, raw, n) for n, raw in enumerate(raws, start=1)]
    seen = set()
    for r in rows:
        if r.id in seen:
            _fail(path_str, "id", f"duplicate id {r.id!r}")
        seen.add(r.id)
    return rows


def llm_inference_rows() -> list[Row]:
    """The ``attention_kernel`` rows of ``llm_inference.csv`` in this module's row shape (that file's own test checks it)."""
    path_str, _, raws = _read(LLM_DATA)
    out = []
    for raw in raws:
        if raw["kind"] != "attention_kernel":
            continue
        fw = raw["framework"].lower()
        sched = next((s for f, s in _LLM_SCHEDULE.items() if fw.startswith(f)), "")
        metric = raw["metric"]  # flop_per_s_fwd_bwd is kept (parsed as a rate) but not predicted
        adapted = {
            "id": raw["id"], "kind": metric if metric in KINDS else "flop_per_s", "value": raw["value"], "kernel": raw["framework"], "schedule": sched,
            "device": raw["device"], "batch": raw["batch"], "heads": raw["heads"], "kv_heads": raw["kv_heads"],
            "head_dim": raw["head_dim"], "context": raw["context_tokens"], "query_tokens": raw["query_tokens"],
            "causal": raw["causal"], "dtype": "fp16" if raw["kv_bits"] == "16" else "",
            "source_url": raw["source_url"], "source_locator": raw["source_locator"],
            "read_from_plot": raw["read_from_plot"], "sku_verified": raw["sku_verified"],
        }
        row = _parse(path_str, {**adapted, "device_as_stated": raw["device_as_stated"], "note": raw["note"],
                                "value_as_published": raw["value_as_published"]}, 0)
        if metric not in KINDS:
            row = Row(**{**row.__dict__, "kind": metric})
        out.append(row)
    return out


def _problem(row: Row):
    from sim.kernel.schedules.problem import AttentionProblem

    return AttentionProblem(batch=row.batch, heads=row.heads, kv_heads=row.kv_heads, head_dim=row.head_dim,
                            context=row.context, query_tokens=row.query_tokens, causal=row.causal, dtype=row.dtype)


def _time(schedule: str, row: Row, device) -> float:
    from sim.kernel.schedules.run import simulate_schedule

    res, _ = simulate_schedule(schedule, _problem(row), device)
    return float(res.seconds)


def predict(row: Row) -> Result:
    """Simulate ``row``'s kernel (and its baseline, for a speedup) at the row's setting."""
    if row.kind not in KINDS:
        return Result(row, None, f"{row.kind}: the schedules simulate the forward pass only")
    if not row.schedule or (row.kind == "speedup" and not row.baseline_schedule):
        return Result(row, None, f"no simulator schedule models {row.kernel}"
                      + (f" or {row.baseline_kernel}" if row.kind == "speedup" else ""))
    if row.missing:
        return Result(row, None, "setting not stated by the source: " + ", ".join(row.missing))
    device = hw.get_device(row.device)
    try:
        t = _time(row.schedule, row, device)
        if row.kind == "speedup":
            tb = _time(row.baseline_schedule, row, device)
            return Result(row, tb / t, f"{row.baseline_schedule} {tb * 1e6:.1f} us / {row.schedule} {t * 1e6:.1f} us")
    except KernelabError as e:
        return Result(row, None, f"simulator refused the setting: {e}")
    p = _problem(row)
    if row.kind == "latency_s":
        return Result(row, t, f"{row.schedule} on {device.name}")
    if row.kind == "flop_per_s":
        return Result(row, p.flops / t, f"{row.schedule}: {p.flops:.3g} FLOP in {t * 1e6:.1f} us")
    achieved = p.min_bytes / t
    if row.kind == "bytes_per_s":
        return Result(row, achieved, f"{row.schedule}: {p.min_bytes:.3g} B in {t * 1e6:.1f} us")
    return Result(row, achieved / device.hbm_bytes_per_s,
                  f"{row.schedule}: {p.min_bytes:.3g} B in {t * 1e6:.1f} us over {device.hbm_bytes_per_s / 1e9:.0f} GB/s")


def results(include_llm_inference: bool = True) -> list[Result]:
    rows = load_rows() + (llm_inference_rows() if include_llm_inference else [])
    return [predict(r) for r in rows]


def _source_doc(url: str) -> str:
    """The document a URL names: a figure and the post around it share a commit, so compare the repository and commit."""
    if "github.com/" in url and "/blob/" in url:
        return url.split("/blob/")[0] + "@" + url.split("/blob/")[1].split("/")[0]
    return url


def pairs(res: list[Result]) -> list[Pair]:
    """Rows of one source and setting with different schedules, ordered as published (see the module docstring)."""
    groups: dict[tuple, list[Result]] = {}
    for r in res:
        if r.row.kind in HIGHER_IS_BETTER and r.row.schedule:
            groups.setdefault((_source_doc(r.row.source_url), r.row.kind) + r.row.setting, []).append(r)
    out = []
    for group in groups.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a.row.schedule == b.row.schedule or a.measured == b.measured:
                    continue
                if (a.row.read_from_plot or b.row.read_from_plot) and \
                        abs(a.measured - b.measured) <= PLOT_RESOLUTION * max(a.measured, b.measured):
                    continue
                a_wins = (a.measured > b.measured) == HIGHER_IS_BETTER[a.row.kind]
                out.append(Pair(a, b) if a_wins else Pair(b, a))
    return out


def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "latency_s":
        return f"{v * 1e6:.1f} us"
    if kind.startswith("flop_per_s"):
        return f"{v / 1e12:.0f} TFLOP/s"
    if kind == "bytes_per_s":
        return f"{v / 1e9:.0f} GB/s"
    if kind == "bandwidth_fraction":
        return f"{v * 100:.0f} %"
    return f"{v:.2f}x"


def table(res: list[Result] | None = None) -> str:
    res = results() if res is None else res
    lines = ["| row | published | simulated | error | ordering ok |", "| --- | --- | --- | --- | --- |"]
    for r in res:
        err = "-" if r.error is None else f"{r.error * 100:+.0f} %"
        ok = {None: "-", True: "yes", False: "no"}[r.ordering_ok]
        pred = _fmt(r.predicted, r.row.kind) if r.predicted is not None else f"- ({r.reason})"
        lines.append(f"| {r.row.id} | {_fmt(r.measured, r.row.kind)} | {pred} | {err} | {ok} |")
    lines += ["", "| published ordering (better > worse) | simulated | ok |", "| --- | --- | --- |"]
    for p in pairs(res):
        ok = {None: "-", True: "yes", False: "no"}[p.ordering_ok]
        lines.append(f"| {p.name} | {_fmt(p.better.predicted, p.better.row.kind)} vs "
                     f"{_fmt(p.worse.predicted, p.worse.row.kind)} | {ok} |")
    return "\n".join(lines)


def main() -> None:
    print(table())


if __name__ == "__main__":
    main()

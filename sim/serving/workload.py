"""Requests for the serving simulator: arrivals, prompt and output lengths, shared prefixes.

A :class:`Workload` is a set of requests as numpy arrays, sorted by arrival.
Arrival processes: Poisson (exponential gaps at ``qps``), bursty gamma (gaps
of the same mean with coefficient of variation ``cv``; ``cv = 1`` is Poisson),
all at once (``qps = inf``: an offline batch), or replayed from a trace CSV.
Lengths come from dataset descriptions in ``sim/data/serving/datasets.toml``
(each with its source): a log-normal fitted to the published median and P90
(or mean and standard deviation), clipped to the published range.
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hwmodels.datafile import load_toml
from hwmodels.errors import InvalidValueError, KernelabError, UnknownNameError

DATASETS_FILE = Path(__file__).resolve().parent.parent / "data" / "serving" / "datasets.toml"
Z90 = 1.2815515655446004  # the standard normal's 90th percentile


class TraceError(KernelabError, ValueError):
    """A trace file that cannot be read, naming the file, the line and the field."""


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests sorted by arrival: times in seconds, lengths in tokens.

    ``prefix_id`` groups requests whose first ``prefix_tokens`` prompt tokens
    are the same (``-1``: no shared prefix); the prefix is part of the prompt.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_id: np.ndarray
    prefix_tokens: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        for field_name in ("prompt_tokens", "output_tokens", "prefix_id", "prefix_tokens"):
            object.__setattr__(self, field_name, np.asarray(getattr(self, field_name), dtype=np.int64).ravel())
        object.__setattr__(self, "arrival_s", np.asarray(self.arrival_s, dtype=float).ravel())
        n = len(self.arrival_s)
        for field_name in ("prompt_tokens", "output_tokens", "prefix_id", "prefix_tokens"):
            if len(getattr(self, field_name)) != n:
                raise InvalidValueError(f"workload {field_name} has {len(getattr(self, field_name))} entries, arrival_s has {n}")
        if n == 0:
            raise InvalidValueError("a workload needs at least one request")
        if not np.all(np.isfinite(self.arrival_s)) or np.any(self.arrival_s < 0) or np.any(np.diff(self.arrival_s) < 0):
            raise InvalidValueError("arrival times must be finite, non-negative and sorted")
        if np.any(self.prompt_tokens < 1) or np.any(self.output_tokens < 1):
            raise InvalidValueError("every request needs at least one prompt token and one output token")
        if np.any(self.prefix_tokens < 0) or np.any(self.prefix_tokens > self.prompt_tokens - 1):
            raise InvalidValueError("a shared prefix must leave at least one prompt token of the request's own")
        if np.any((self.prefix_id < 0) & (self.prefix_tokens > 0)):
            raise InvalidValueError("prefix_tokens > 0 needs a prefix_id")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def total_output_tokens(self) -> int:
        return int(self.output_tokens.sum())


# -- arrivals -----------------------------------------------------------------------------
def arrivals(n: int, qps: float, rng: np.random.Generator, process: str = "poisson", cv: float = 1.0) -> np.ndarray:
    """Arrival times of ``n`` requests at ``qps`` on average (``inf``: all at t = 0).

    ``gamma``: gaps drawn from a gamma distribution of mean ``1/qps`` and
    coefficient of variation ``cv`` (shape ``1/cv^2``), the bursty arrivals
    used by AlpaServe (Li et al., OSDI 2023) and DistServe (Zhong et al., OSDI 2024).
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise InvalidValueError(f"the number of requests must be a positive integer, got {n!r}")
    if not (qps > 0):
        raise InvalidValueError(f"qps must be positive (inf for all at once), got {qps!r}")
    if math.isinf(qps):
        return np.zeros(n)
    if process == "poisson":
        gaps = rng.exponential(1.0 / qps, n)
    elif process == "gamma":
        if not (cv > 0):
            raise InvalidValueError(f"the gamma process needs cv > 0, got {cv!r}")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (qps * shape), n)
    else:
        raise UnknownNameError("arrival process", process, ("poisson", "gamma"))
    return np.cumsum(gaps)


# -- datasets -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LengthDistribution:
    """A log-normal over tokens, clipped to ``[min, max]``."""

    mu: float
    sigma: float
    minimum: int
    maximum: int

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x = np.exp(rng.normal(self.mu, self.sigma, n))
        return np.clip(np.rint(x), self.minimum, self.maximum).astype(np.int64)


@dataclass(frozen=True)
class LengthPairs:
    """Measured (prompt, output) pairs, drawn with replacement."""

    prompt: np.ndarray
    output: np.ndarray

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = rng.integers(0, len(self.prompt), n)
        return self.prompt[i].copy(), self.output[i].copy()


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    source: str
    lengths: LengthPairs | tuple[LengthDistribution, LengthDistribution]
    max_total_tokens: int | None

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.lengths, LengthPairs):
            return self.lengths.sample(n, rng)
        prompt, output = self.lengths
        return prompt.sample(n, rng), output.sample(n, rng)


def _pairs(path: Path) -> LengthPairs:
    with gzip.open(path, "rt", newline="") as f:
        rows = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    return LengthPairs(rows[:, 0], rows[:, 1])


def _lengths(doc: dict, where: str) -> LengthDistribution:
    try:
        if "median" in doc:
            mu = math.log(doc["median"])
            sigma = math.log(doc["p90"] / doc["median"]) / Z90
        else:  # moments of a log-normal: sigma^2 = ln(1 + (std/mean)^2), mu = ln(mean) - sigma^2/2
            s2 = math.log(1.0 + (doc["std"] / doc["mean"]) ** 2)
            mu, sigma = math.log(doc["mean"]) - s2 / 2, math.sqrt(s2)
        return LengthDistribution(mu, sigma, int(doc.get("min", 1)), int(doc["max"]))
    except KeyError as exc:
        raise KernelabError(f"{DATASETS_FILE}: {where} needs median and p90 (or mean and std) and max; missing {exc}") from None


@lru_cache(maxsize=1)
def datasets() -> dict[str, Dataset]:
    doc = load_toml(DATASETS_FILE)
    out = {}
    for name, d in doc.get("datasets", {}).items():
        kind = d.get("kind", "lognormal")
        needs = ("description", "source") + (("file",) if kind == "lengths" else ("prompt_tokens", "output_tokens"))
        for key in needs:
            if key not in d:
                raise KernelabError(f"{DATASETS_FILE}: datasets.{name} has no {key}")
        if kind == "lengths":
            lengths = _pairs(DATASETS_FILE.parent / d["file"])
        elif kind == "lognormal":
            lengths = (_lengths(d["prompt_tokens"], f"datasets.{name}.prompt_tokens"),
                       _lengths(d["output_tokens"], f"datasets.{name}.output_tokens"))
        else:
            raise KernelabError(f"{DATASETS_FILE}: datasets.{name}.kind must be lengths or lognormal, got {kind!r}")
        out[name] = Dataset(name, d["description"], d["source"], lengths, d.get("max_total_tokens"))
    return out


def get_dataset(name: str) -> Dataset:
    table = datasets()
    key = name.strip().lower()
    if key not in table:
        raise UnknownNameError("dataset", name, tuple(table))
    return table[key]


def synthetic(dataset: str = "openchat_sharegpt4", requests: int = 1000, qps: float = 1.0, seed: int = 0,
              process: str = "poisson", cv: float = 1.0) -> Workload:
    """``requests`` requests with a dataset's length distributions, arriving at ``qps``.

    Pairs whose prompt plus output exceed the dataset's length limit are
    redrawn, as the papers filter them out.
    """
    ds = get_dataset(dataset)
    rng = np.random.default_rng(seed)
    t = arrivals(requests, qps, rng, process, cv)
    prompt, output = ds.sample(requests, rng)
    if ds.max_total_tokens:
        for _ in range(100):
            bad = prompt + output > ds.max_total_tokens
            if not bad.any():
                break
            prompt[bad], output[bad] = ds.sample(int(bad.sum()), rng)
        output = np.minimum(output, ds.max_total_tokens - prompt).clip(1)
    none = np.full(requests, -1)
    return Workload(t, prompt, output, none, np.zeros(requests, dtype=np.int64), f"{ds.name}, {requests} requests at {qps:g} QPS ({process})")


def shared_prefix(groups: int = 1, group_size: int = 256, prefix_tokens: int = 2048, suffix_tokens: int = 64,
                  output_tokens: int = 128, qps: float = math.inf, seed: int = 0) -> Workload:
    """Batches of requests that share a prefix (a few-shot prompt or a document), as in
    Hydragen (Juravsky et al., arXiv:2402.05099) and BatchLLM (Zheng et al., arXiv:2412.03594):
    ``groups x group_size`` requests, each ``prefix_tokens`` shared plus ``suffix_tokens`` of its own."""
    for name, v, lo in (("groups", groups, 1), ("group_size", group_size, 1), ("prefix_tokens", prefix_tokens, 0),
                        ("suffix_tokens", suffix_tokens, 1), ("output_tokens", output_tokens, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InvalidValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    n = groups * group_size
    rng = np.random.default_rng(seed)
    t = arrivals(n, qps, rng)
    pid = np.repeat(np.arange(groups), group_size) if prefix_tokens else np.full(n, -1)
    return Workload(t, np.full(n, prefix_tokens + suffix_tokens), np.full(n, output_tokens), pid,
                    np.full(n, prefix_tokens), f"{groups} x {group_size} requests sharing {prefix_tokens}-token prefixes")


TRACE_FIELDS = ("arrival_s", "prompt_tokens", "output_tokens")
TRACE_MINIMUM = {"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1, "prefix_tokens": 0}


def from_trace(path: str | Path) -> Workload:
    """Replay a CSV with columns ``arrival_s, prompt_tokens, output_tokens`` and optional
    ``prefix_id, prefix_tokens``; rows are sorted by arrival."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in TRACE_FIELDS if c not in header]
            if missing:
                raise TraceError(f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(header) or 'none'})")
            rows = list(enumerate(reader, start=2))
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace ({exc.strerror})") from None
    if not rows:
        raise TraceError(f"{path}: no requests")
    cols: dict[str, list] = {c: [] for c in (*TRACE_FIELDS, "prefix_id", "prefix_tokens")}
    for line, row in rows:
        for c in cols:
            text = row.get(c)
            if c not in TRACE_FIELDS and (text is None or text == ""):
                cols[c].append(-1 if c == "prefix_id" else 0)
                continue
            try:
                v = float(text)
            except (TypeError, ValueError):
                raise TraceError(f"{path}, line {line}: {c} must be a number, got {text!r}") from None
            if not math.isfinite(v):
                raise TraceError(f"{path}, line {line}: {c} must be finite, got {text!r}")
            if c != "arrival_s" and v != int(v):
                raise TraceError(f"{path}, line {line}: {c} must be a whole number, got {text!r}")
            if v < TRACE_MINIMUM.get(c, -math.inf):
                raise TraceError(f"{path}, line {line}: {c} must be at least {TRACE_MINIMUM[c]}, got {text!r}")
            cols[c].append(v)
        if cols["prefix_tokens"][-1] > 0 and (cols["prefix_id"][-1] < 0 or cols["prefix_tokens"][-1] >= cols["prompt_tokens"][-1]):
            raise TraceError(f"{path}, line {line}: prefix_tokens needs a prefix_id >= 0 and must leave the request at least one "
                             f"prompt token of its own, got {row.get('prefix_tokens')!r} of {row.get('prompt_tokens')!r}")
    order = np.argsort(np.asarray(cols["arrival_s"]), kind="stable")
    try:
        return Workload(*(np.asarray(cols[c])[order] for c in (*TRACE_FIELDS, "prefix_id", "prefix_tokens")), name=str(path))
    except InvalidValueError as exc:
        raise TraceError(f"{path}: {exc}") from None

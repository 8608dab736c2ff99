"""The paper registry: every seed paper, its quantified cost claims, and kernelab's prediction of each.

One TOML file per paper in ``sim/data/papers/`` (format in that folder's
README): its title, status (``modelled``, ``not-cost``, ``cost-no-setting``,
``pending``) with a reason where it is not modelled, the algorithmic parameters
it states (with locators), and its claims, each with the paper's setting and,
where kernelab predicts it, a ``predict`` table naming the technique, the
setting and the parameters. A prediction uses nothing else: device-global
hardware parameters and the paper's own algorithmic ones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from hwmodels.datafile import load_toml
from hwmodels.errors import KernelabError
from sim.model import get_model
from sim.precision import Precision
from sim.techniques import Setting, get_technique

PAPERS_DIR = Path(__file__).resolve().parent.parent / "data" / "papers"
SEED_TITLES = PAPERS_DIR / "seed_titles.txt"
STATUSES = ("modelled", "pending", "cost-no-setting", "not-cost")


class RegistryError(KernelabError, ValueError):
    """A registry file that cannot be used, naming the file and the field."""


@dataclass(frozen=True)
class Claim:
    paper: str
    metric: str
    reported: float
    setting: dict
    locator: str
    predict: dict | None
    note: str = ""
    path: str = ""  # the registry file it comes from
    predicted: float | None = None
    explain: str = ""

    @property
    def error(self) -> float | None:
        return None if self.predicted is None else self.predicted / self.reported - 1.0

    @property
    def assumed(self) -> str:
        """What the registry assumed about the setting where the paper's text was out of reach ('' if nothing)."""
        return (self.predict or {}).get("assumed", "")

    def as_dict(self) -> dict:
        return {"metric": self.metric, "reported": self.reported, "predicted": self.predicted, "error": self.error,
                "setting": self.setting, "locator": self.locator, "technique": (self.predict or {}).get("technique"),
                "assumed": self.assumed,
                "explain": self.explain, "note": self.note}


@dataclass(frozen=True)
class Paper:
    slug: str
    title: str
    arxiv: str
    status: str
    reason: str
    family: str
    mechanism: str
    technique: str = ""  # the technique that models the mechanism ("": none does yet)
    claims: list[Claim] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"slug": self.slug, "title": self.title, "arxiv": self.arxiv, "status": self.status, "reason": self.reason,
                "family": self.family, "mechanism": self.mechanism, "technique": self.technique,
                "claims": [c.as_dict() for c in self.claims]}


def _require(doc: dict, key: str, path: Path, where: str = ""):
    if key not in doc:
        raise RegistryError(f"{path}: {where}{key} is missing")
    return doc[key]


def load_paper(path: Path) -> Paper:
    doc = load_toml(path)
    status = _require(doc, "status", path)
    if status not in STATUSES:
        raise RegistryError(f"{path}: status must be one of {', '.join(STATUSES)}, got {status!r}")
    if status != "modelled" and not doc.get("reason"):
        raise RegistryError(f"{path}: a {status} paper needs a reason")
    claims = []
    for i, c in enumerate(doc.get("claims", [])):
        where = f"claims[{i}]."
        predict = c.get("predict")
        if predict is not None:
            _require(predict, "technique", path, where + "predict.")
        reported = _require(c, "reported", path, where)
        if isinstance(reported, bool) or not isinstance(reported, (int, float)) or not math.isfinite(reported) or reported <= 0:
            raise RegistryError(f"{path}: {where}reported must be a positive number, got {reported!r}")
        claims.append(Claim(path.stem, _require(c, "metric", path, where), float(reported),
                            {k: c[k] for k in ("device", "model", "batch", "input_tokens", "output_tokens", "baseline") if k in c},
                            _require(c, "locator", path, where), predict, c.get("note", ""), str(path)))
    if status == "modelled" and not any(c.predict for c in claims):
        raise RegistryError(f"{path}: a modelled paper needs at least one claim with a predict table")
    technique = _require(doc, "technique", path)
    if technique:
        try:
            get_technique(technique)
        except KernelabError as exc:
            raise RegistryError(f"{path}: technique: {exc}") from None
    return Paper(path.stem, _require(doc, "title", path), doc.get("arxiv", ""), status, doc.get("reason", ""),
                 doc.get("family", ""), doc.get("mechanism", ""), technique, claims)


def resolve_local_configs(values: dict) -> dict:
    """A model named by a ``.json`` file is one of the registry's own configs (``sim/data/papers/models/``)."""
    return {k: str(PAPERS_DIR / v) if isinstance(v, str) and v.endswith(".json") else v for k, v in values.items()}


def predict_claim(claim: Claim) -> Claim:
    p = resolve_local_configs(dict(claim.predict))
    p["set"] = resolve_local_configs(p.get("set", {}))
    p.pop("assumed", None)  # what the registry had to assume about the setting: shown, not used
    where = f"{claim.path}: the predict table of the {claim.metric} claim at {claim.locator!r}"
    try:
        technique = get_technique(p.pop("technique"))(**p.pop("set", {}))
    except KernelabError as exc:
        raise RegistryError(f"{where}: technique or set: {exc}") from None
    try:
        precision = Precision(p.pop("weight_bits", 16), 16, p.pop("kv_bits", 16))
        setting = Setting(precision=precision, **p)
        prediction = technique.predict(setting)
    except TypeError as exc:
        raise RegistryError(f"{where}: predict table: {exc}") from None
    except KernelabError as exc:
        raise RegistryError(f"{where}: {exc}") from None
    if prediction.metric != claim.metric:
        raise RegistryError(f"{where}: {technique.name} predicts {prediction.metric}, the claim reports {claim.metric}")
    return dataclasses.replace(claim, predicted=prediction.value, explain=prediction.explain)


@lru_cache(maxsize=1)
def registry() -> tuple[Paper, ...]:
    """Every paper, its predicted claims filled in."""
    papers = (load_paper(path) for path in sorted(PAPERS_DIR.glob("*.toml")))
    return tuple(dataclasses.replace(p, claims=[predict_claim(c) if c.predict else c for c in p.claims]) for p in papers)


def seed_titles() -> list[str]:
    return [line.strip() for line in SEED_TITLES.read_text().splitlines() if line.strip()]


def predicted_claims() -> list[Claim]:
    return [c for p in registry() for c in p.claims if c.predicted is not None]


def summary() -> dict:
    claims = predicted_claims()
    errors = sorted(abs(c.error) for c in claims)
    n = len(errors)
    median = (errors[n // 2] if n % 2 else (errors[n // 2 - 1] + errors[n // 2]) / 2) if n else math.nan
    counts = {s: sum(p.status == s for p in registry()) for s in STATUSES}
    return {"papers": len(registry()), "by_status": counts, "predicted_claims": n,
            "papers_with_predicted_claims": len({c.paper for c in claims}), "median_abs_error": median,
            "max_abs_error": errors[-1] if n else math.nan}


def table() -> str:
    """The README's table: every predicted claim, reported against predicted, on the device it was predicted for."""
    lines = ["| paper | technique | metric | model, device | reported | predicted | error | setting partly assumed |",
             "|---|---|---|---|---|---|---|---|"]
    for p in registry():
        for c in p.claims:
            if c.predicted is None:
                continue
            model = c.predict.get("model", "")
            if model.endswith(".json"):
                model = get_model(str(PAPERS_DIR / model)).name
            where = f"{model}, {c.predict.get('device', '')}"
            knobs = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                              for k, v in c.predict.get("set", {}).items()
                              if k in ("mean_accepted_tokens", "sequential", "prefix_tokens", "kept_fraction", "method", "round"))
            lines.append(f"| {p.slug} | {c.predict['technique']}{f' ({knobs})' if knobs else ''} | {c.metric} | {where} | {c.reported:.3g} | {c.predicted:.3g} | {c.error:+.0%} | "
                         f"{'yes' if c.assumed else 'no'} |")
    return "\n".join(lines)

if __name__ == "__main__":
    s = summary()
    print(f"{s['papers']} papers: " + ", ".join(f"{v} {k}" for k, v in s["by_status"].items())
          + f"; {s['predicted_claims']} claims predicted from {s['papers_with_predicted_claims']} papers, "
          f"median |error| {s['median_abs_error']:.0%}, max {s['max_abs_error']:.0%}\n")
    print(table())

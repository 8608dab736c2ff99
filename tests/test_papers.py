"""The seed-paper registry (``sim/data/papers/``, :mod:`sim.techniques.papers`) and ``kernelab papers``.

``papers.registry()`` predicts every claim with a predict table once (a few seconds, then cached);
each test reads that one result.
"""

import json
import math
import statistics

import pytest

from hwmodels.errors import DataFileError
from kernelab.cli import main
from sim.precision import Precision
from sim.techniques import TECHNIQUES, Setting, get_technique
from sim.techniques import papers
from sim.techniques.papers import PAPERS_DIR, STATUSES, Claim, RegistryError, load_paper, predict_claim

#: techniques whose prediction runs serving simulations: not predicted again here
SERVING = {"chunked-prefill", "shared-prefix-serving"}


def files():
    return sorted(PAPERS_DIR.glob("*.toml"))


def claims(predicted=None):
    return [(p, c) for p in papers.registry() for c in p.claims if predicted is None or (c.predicted is not None) == predicted]


# -- the registry is complete ---------------------------------------------------------------------------------------
def test_the_seed_list_has_no_blank_or_repeated_title():
    titles = papers.seed_titles()
    assert len(titles) == len(set(titles)) == len(files())
    assert all(t == t.strip() and t for t in titles)


def test_every_seed_title_has_exactly_one_registry_file_and_every_file_is_a_seed_paper():
    by_title: dict[str, list[str]] = {}
    for path in files():
        by_title.setdefault(load_paper(path).title, []).append(path.name)
    seed = papers.seed_titles()
    missing = [t for t in seed if t not in by_title]
    assert not missing, f"seed papers with no file in {PAPERS_DIR}: {missing}"
    assert not [t for t in by_title if t not in seed], "registry files whose title is not in seed_titles.txt"
    assert {t: f for t, f in by_title.items() if len(f) > 1} == {}


def test_the_registry_holds_every_file_once_in_slug_order():
    reg = papers.registry()
    assert [p.slug for p in reg] == [f.stem for f in files()]


@pytest.mark.parametrize("path", files(), ids=lambda p: p.stem)
def test_every_paper_has_a_valid_status_and_a_reason_unless_modelled(path):
    paper = load_paper(path)
    assert paper.status in STATUSES
    if paper.status != "modelled":
        assert paper.reason.strip(), f"{path.name}: a {paper.status} paper says why"
    assert paper.title.strip() and paper.mechanism.strip()


def test_a_paper_is_modelled_exactly_when_one_of_its_claims_is_predicted():
    for p in papers.registry():
        predicted = [c for c in p.claims if c.predicted is not None]
        assert (p.status == "modelled") == bool(predicted), p.slug


def test_every_claim_has_a_metric_a_locator_and_a_positive_reported_value():
    for p, c in claims():
        assert c.metric.strip() and c.locator.strip(), p.slug
        assert math.isfinite(c.reported) and c.reported > 0, (p.slug, c.locator)


def test_every_predict_table_names_a_known_technique():
    for p, c in claims():
        if c.predict:
            assert c.predict["technique"] in TECHNIQUES, (p.slug, c.locator)


def test_every_predicted_claim_is_finite_and_its_error_is_predicted_over_reported():
    assert claims(predicted=True)
    for p, c in claims(predicted=True):
        assert math.isfinite(c.predicted) and c.predicted > 0, (p.slug, c.locator)
        assert c.error == pytest.approx(c.predicted / c.reported - 1)
        assert c.explain, (p.slug, c.locator)


def test_every_predicted_claims_prediction_has_the_claims_metric():
    checked = 0
    for p, c in claims(predicted=True):
        if c.predict["technique"] in SERVING:  # predict_claim checked these while building the registry
            continue
        table = papers.resolve_local_configs(dict(c.predict))  # models given as the registry's own config files
        table.pop("assumed", None)
        technique = get_technique(table.pop("technique"))(**papers.resolve_local_configs(table.pop("set", {})))
        precision = Precision(table.pop("weight_bits", 16), 16, table.pop("kv_bits", 16))
        prediction = technique.predict(Setting(precision=precision, **table))
        assert prediction.metric == c.metric, (p.slug, c.locator)
        assert prediction.value == pytest.approx(c.predicted, rel=1e-12)  # the registry shows what the model says
        checked += 1
    assert checked


def test_a_prediction_of_another_metric_than_the_claims_is_a_registry_error():
    claim = Claim("8bit-optimizers", "speedup", 2.0, {}, "Table 1", {"technique": "8bit-optimizer", "model": "Llama-2-7B"})
    with pytest.raises(RegistryError, match="8bit-optimizer predicts memory_ratio, the claim reports speedup"):
        predict_claim(claim)


def test_the_median_error_of_the_predicted_claims_is_within_20_percent():
    errors = [abs(c.error) for _, c in claims(predicted=True)]
    assert statistics.median(errors) <= 0.20
    assert papers.summary()["median_abs_error"] == pytest.approx(statistics.median(errors))


@pytest.mark.xfail(strict=True, reason="fewer than 30 claims from 20 papers are predicted (papers.summary() gives "
                                      "today's counts): most seed papers' result tables were out of reach, or no "
                                      "technique model covers their setting yet")
def test_the_issues_bound_at_least_30_claims_from_20_papers_within_a_median_of_20_percent():
    s = papers.summary()
    assert s["predicted_claims"] >= 30
    assert s["papers_with_predicted_claims"] >= 20
    assert s["median_abs_error"] <= 0.20


def test_the_summary_counts_every_paper_and_claim():
    s = papers.summary()
    reg = papers.registry()
    assert s["papers"] == len(reg) == len(papers.seed_titles())
    assert sum(s["by_status"].values()) == len(reg) and set(s["by_status"]) == set(STATUSES)
    assert s["predicted_claims"] == len(claims(predicted=True)) == len(papers.predicted_claims())
    assert s["papers_with_predicted_claims"] == s["by_status"]["modelled"]
    assert s["max_abs_error"] == max(abs(c.error) for _, c in claims(predicted=True))


def test_the_readme_table_has_one_row_per_predicted_claim():
    rows = papers.table().splitlines()
    assert len(rows) == 2 + len(claims(predicted=True))
    assert all(r.startswith("|") and r.endswith("|") and r.count("|") == rows[0].count("|") for r in rows)


# -- malformed registry files ------------------------------------------------------------------------------------
VALID = """\
title = "A paper"
arxiv = "0000.00000"
status = "modelled"
reason = ""
family = "training"
mechanism = "states in 8 bits"
technique = "8bit-optimizer"  # the paper's

[[claims]]
metric = "memory_ratio"
reported = 0.25
locator = "Table 1"

[claims.predict]
technique = "8bit-optimizer"
model = "Llama-2-7B"
"""


def write(tmp_path, text, name="a-paper"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_and_its_claim_is_predicted(tmp_path):
    paper = load_paper(write(tmp_path, VALID))
    assert (paper.slug, paper.title, paper.status) == ("a-paper", "A paper", "modelled")
    claim = predict_claim(paper.claims[0])
    assert claim.predicted == pytest.approx((1 + 4 / 2048) / 4)
    assert claim.error == pytest.approx(claim.predicted / 0.25 - 1)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda t: t.replace('title = "A paper"', 'title = "A paper'), "<file>"),  # not TOML
    (lambda t: t.replace('status = "modelled"\n', ""), "status"),
    (lambda t: t.replace('status = "modelled"', 'status = "done"'), "status"),
    (lambda t: t.replace('status = "modelled"', 'status = "pending"'), "reason"),
    (lambda t: t.split("[claims.predict]")[0], "predict"),  # modelled without a predict table
    (lambda t: t.replace('technique = "8bit-optimizer"\n', ""), "predict.technique"),
    (lambda t: t.replace('title = "A paper"\n', ""), "title"),
    (lambda t: t.replace('metric = "memory_ratio"\n', ""), "claims[0].metric"),
    (lambda t: t.replace('reported = 0.25\n', ""), "claims[0].reported"),
    (lambda t: t.replace('locator = "Table 1"\n', ""), "claims[0].locator"),
    (lambda t: t.replace('technique = "8bit-optimizer"  # the paper\'s\n', ""), "technique"),
    (lambda t: t.replace('technique = "8bit-optimizer"  #', 'technique = "8bit-optimiser"  #'), "technique"),
], ids=["bad-toml", "no-status", "unknown-status", "pending-without-reason", "modelled-without-predict",
        "predict-without-technique", "no-title", "claim-without-metric", "claim-without-reported", "claim-without-locator",
        "no-technique", "unknown-technique"])
def test_a_malformed_file_is_refused_naming_the_file_and_the_field(tmp_path, edit, field):
    path = write(tmp_path, edit(VALID))
    with pytest.raises((RegistryError, DataFileError)) as exc:
        load_paper(path)
    assert str(path) in str(exc.value) and field in str(exc.value)


def test_a_predict_table_with_an_unknown_setting_field_is_a_registry_error_naming_the_paper(tmp_path):
    paper = load_paper(write(tmp_path, VALID.replace('model = "Llama-2-7B"', 'model = "Llama-2-7B"\ncontxt = 512')))
    with pytest.raises(RegistryError, match=r"a-paper\.toml: .*predict table: .*contxt"):
        predict_claim(paper.claims[0])


@pytest.mark.parametrize("edit", [
    lambda t: t.replace('technique = "8bit-optimizer"', 'technique = "8bit-optimiser"'),
    lambda t: t.replace('model = "Llama-2-7B"', 'model = "Llama-2-7B"\nset = { block_sise = 256 }'),
    lambda t: t.replace('model = "Llama-2-7B"', 'model = "Llama-2-7B"\nset = { block_size = 0 }'),
], ids=["unknown-technique", "unknown-parameter", "bad-parameter-value"])
def test_an_unusable_predict_table_is_a_registry_error_naming_the_file_and_the_field(tmp_path, edit):
    path = write(tmp_path, edit(VALID))
    with pytest.raises(RegistryError, match=r"a-paper\.toml.*(technique|set)"):
        for claim in load_paper(path).claims:
            predict_claim(claim)


def test_a_non_numeric_reported_value_is_a_registry_error_naming_the_file(tmp_path):
    path = write(tmp_path, VALID.replace("reported = 0.25", 'reported = "0.25x"'))
    with pytest.raises(RegistryError, match=r"a-paper\.toml.*reported"):
        load_paper(path)


# -- kernelab papers ------------------------------------------------------------------------------------------------
def test_papers_json_gives_every_paper_with_its_claims_and_writes_the_html(capsys, tmp_path):
    out = tmp_path / "papers.html"
    assert main(["papers", "--json", "-o", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["title"] for r in rows) == sorted(papers.seed_titles())
    for r in rows:
        assert r["status"] in STATUSES
        for c in r["claims"]:
            assert set(c) >= {"metric", "reported", "predicted", "error", "locator", "technique"}
            if c["predicted"] is None:
                assert c["error"] is None
            else:
                assert c["error"] == pytest.approx(c["predicted"] / c["reported"] - 1)
    assert sum(c["predicted"] is not None for r in rows for c in r["claims"]) == papers.summary()["predicted_claims"]
    html = out.read_text()
    assert html.startswith("<html>") and "plotly" in html.lower() and "predicted against reported" in html
    assert f"{len(rows)} papers; {papers.summary()['predicted_claims']} claims predicted" in html


def test_papers_table_prints_the_summary_and_where_it_wrote(capsys, tmp_path):
    out = tmp_path / "p.html"
    assert main(["papers", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    s = papers.summary()
    assert f"{s['papers']} papers" in text and f"{s['predicted_claims']} claims predicted" in text
    assert "wrote" in text and out.exists()


def test_the_readme_shows_the_papers_table():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for line in papers.table().splitlines()[2:]:
        assert line in readme, f"README is out of date; rerun python -m sim.techniques.papers: missing {line}"


def test_every_paper_names_the_technique_that_models_it_or_none():
    from sim.techniques import get_technique

    reg = papers.registry()
    for p in reg:
        if p.technique:
            get_technique(p.technique)  # a known name
        if p.status == "modelled":
            used = {c.predict["technique"] for c in p.claims if c.predict}
            assert p.technique in used, (p.slug, p.technique, used)
    speculative = [p for p in reg if p.family == "speculative" and p.status != "not-cost"]
    assert all(p.technique for p in speculative), [p.slug for p in speculative if not p.technique]


def test_the_registrys_own_model_configs_load_and_are_used():
    from sim.model import get_model

    configs = sorted((papers.PAPERS_DIR / "models").glob("*.json"))
    assert configs
    used = {v for _, c in claims(predicted=True) for v in [c.predict.get("model", ""), *c.predict.get("set", {}).values()]
            if isinstance(v, str) and v.endswith(".json")}
    for path in configs:
        assert get_model(str(path)).num_layers > 0
        assert f"models/{path.name}" in used, path.name

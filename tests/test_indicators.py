"""hipfrac.indicators: catalogue validation and indicator evaluation on a small hand-made cohort."""

import numpy as np
import pandas as pd
import pytest
import yaml

from hipfrac import indicators as ind_mod
from hipfrac.indicators import CatalogueError, load_catalogue

ISSUE_IDS = ["surgery_24h", "surgery_48h", "surgery_24h_adm", "surgery_48h_adm", "arthroplasty_displaced",
             "cemented", "nail", "shs_a1", "nerve_block", "osteo_med_12m", "survival_30d",
             "arthroplasty_no_reop_1y", "coverage"]


def _cohort():
    """Hospital A: 10 operated, 9 within 48 h (one with a missing time); B: 4 operated, 2 within 48 h;
    one NPR-only fracture at B (coverage 4/5)."""
    rows = []
    for i in range(10):
        rows.append(dict(hospital="A", hosp_region="R1", year=2015 + i % 2, op_id=f"a{i}", source="both",
                         surgery_48h=None if i == 9 else 1, age=75.0 + i, fracture_type="fn_displaced",
                         arthroplasty=1 if i < 8 else 0, dead_30d=int(i == 0)))
    for i in range(4):
        rows.append(dict(hospital="B", hosp_region="R1", year=2015, op_id=f"b{i}", source="both",
                         surgery_48h=int(i < 2), age=65.0 + 3 * i, fracture_type="troch_a1", arthroplasty=0,
                         dead_30d=0))
    rows.append(dict(hospital="B", hosp_region="R1", year=2016, op_id=None, source="npr_only", surgery_48h=None,
                     age=90.0, fracture_type=None, arthroplasty=None, dead_30d=1))
    d = pd.DataFrame(rows)
    for c in ("surgery_48h", "arthroplasty"):
        d[c] = d[c].astype("Int64")
    return d


def test_catalogue_has_issue_indicators_and_targets():
    cat = load_catalogue()
    assert set(ISSUE_IDS) <= set(cat)
    assert cat["surgery_48h"].green == 0.90 and cat["surgery_48h"].yellow == 0.80
    assert cat["surgery_24h"].green == 0.80 and cat["surgery_24h"].yellow == 0.60
    for i in cat.values():
        assert i.title["en"] and i.title["no"] and i.source


@pytest.mark.parametrize("patch, message", [
    ({"direction": "up"}, "direction"),
    ({"eligible": "not_a_column == 1"}, "not in the cohort dictionary"),
    ({"numerator": "surgery_48h == "}, "does not parse"),
    ({"green": 0.7, "yellow": 0.9}, "beyond green"),
    ({"green": 1.5}, "proportion"),
    ({"colour": "red"}, "unknown key"),
])
def test_catalogue_errors_are_clear(tmp_path, patch, message):
    raw = yaml.safe_load(open(ind_mod.resources.files("hipfrac").joinpath("data/indicators.yaml")))
    raw["indicators"]["surgery_48h"].update(patch)
    p = tmp_path / "cat.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(CatalogueError, match=message) as err:
        load_catalogue(p)
    assert "surgery_48h" in str(err.value)


def test_adding_an_indicator_is_data_only(tmp_path):
    raw = yaml.safe_load(open(ind_mod.resources.files("hipfrac").joinpath("data/indicators.yaml")))
    raw["indicators"]["young_arthroplasty"] = {
        "title": {"en": "Arthroplasty, age under 80", "no": "Protese, under 80 år"}, "type": "process",
        "eligible": "op_id.notna() and age < 80", "numerator": "arthroplasty == 1", "direction": "higher",
        "green": None, "yellow": None, "source": "test", "min_n": 3}
    p = tmp_path / "cat.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    cat = load_catalogue(p)
    res = ind_mod.evaluate(_cohort(), cat["young_arthroplasty"], unit="hospital").set_index("unit")
    # A: ages 75..79 operated, arthroplasty for all 5; B: 4 operated under 80, none arthroplasty
    assert res.loc["A", "n"] == 5 and res.loc["A", "events"] == 5
    assert res.loc["B", "n"] == 4 and res.loc["B", "events"] == 0
    assert (res["level"] == "none").all()


def test_evaluate_counts_levels_and_flags():
    cat = load_catalogue()
    res = ind_mod.evaluate(_cohort(), cat["surgery_48h"], unit="hospital").set_index("unit")
    # A: 9 analysed (one missing time), all 9 within 48 h -> green; B: 2/4 -> red, low n (min 5)
    assert res.loc["A", ["n", "events", "n_missing"]].tolist() == [9, 9, 1]
    assert res.loc["A", "level"] == "green" and not res.loc["A", "low_n_flag"]
    assert res.loc["B", ["n", "events"]].tolist() == [4, 2]
    assert res.loc["B", "level"] == "red" and res.loc["B", "low_n_flag"]
    assert res.loc["B", "prop"] == 0.5
    assert res.loc["B", "lower"] < 0.5 < res.loc["B", "upper"]
    # coverage: A 10/10, B 4/5; neither below 60 %
    assert res.loc["A", "coverage"] == 1.0 and res.loc["B", "coverage"] == pytest.approx(0.8)
    assert not res["low_coverage"].any()
    flagged = ind_mod.evaluate(_cohort(), cat["surgery_48h"], unit="hospital", low_coverage=0.9)
    assert flagged.set_index("unit").loc["B", "low_coverage"]


def test_evaluate_national_by_year_and_coverage_indicator():
    cat = load_catalogue()
    nat = ind_mod.evaluate(_cohort(), cat["coverage"], unit=None)
    assert nat["unit"].item() == "Norway" and nat["prop"].item() == pytest.approx(14 / 15)
    assert nat["level"].item() == "green"
    yr = ind_mod.evaluate(_cohort(), cat["surgery_48h"], unit="hosp_region", by_year=True)
    assert yr["year"].tolist() == [2015, 2016]
    assert yr["n"].sum() == 13
    # the cohort without NPR-only rows: coverage not computable
    cov = ind_mod.evaluate(_cohort().query("source != 'npr_only'"), cat["surgery_48h"], unit="hospital")
    assert cov["coverage"].isna().all() and not cov["low_coverage"].any()


def test_eligibility_arthroplasty_displaced_age_over_70():
    cat = load_catalogue()
    res = ind_mod.evaluate(_cohort(), cat["arthroplasty_displaced"], unit="hospital")
    # only hospital A has displaced femoral neck fractures over 70: 8 of 10 arthroplasty -> yellow
    assert res["unit"].tolist() == ["A"]
    assert res[["n", "events"]].iloc[0].tolist() == [10, 8]
    assert res["level"].item() == "yellow"


def test_levels_direction_lower():
    i = ind_mod.Indicator(id="x", title={"en": "x", "no": "x"}, type="outcome", eligible="age > 0",
                          numerator="dead_30d == 1", direction="lower", green=0.05, yellow=0.10,
                          source="t", min_n=5)
    assert i.level([0.04, 0.05, 0.08, 0.2, np.nan]).tolist() == ["green", "green", "yellow", "red", "none"]


def test_case_mix_expected_sums_to_observed():
    rng = np.random.default_rng(3)
    n = 2000
    d = pd.DataFrame({"hospital": rng.choice(list("ABCDE"), n), "age": rng.uniform(60, 95, n),
                      "op_id": "x", "sex": rng.choice(["female", "male"], n)})
    d["male"] = (d["sex"] == "male").astype(int)
    d["asa_group"] = rng.choice(["1-2", "3", "4-5", None], n)
    lin = -1 + 0.05 * (d["age"] - 80) + 0.5 * d["male"]
    d["surgery_48h"] = pd.array(rng.binomial(1, 1 / (1 + np.exp(-lin))), dtype="Int64")
    cat = load_catalogue()
    oe, coefs = ind_mod.case_mix(d, cat["surgery_48h"], "hospital", adjustment=["age", "male", "asa_group"])
    # a logistic model with an intercept reproduces the total: sum expected = sum observed
    assert oe["expected"].sum() == pytest.approx(oe["observed"].sum(), rel=1e-6)
    assert "asa_group[missing]" in set(coefs["term"])
    assert coefs.set_index("term").loc["age", "estimate"] == pytest.approx(0.05, abs=0.02)


def test_case_mix_records_non_convergence_instead_of_warning():
    """Separation (every ASA 4-5 patient operated within 48 h) makes the ML fit diverge: recorded as
    converged = False, no warning in the notebook; a well-posed fit is converged."""
    import warnings

    rng = np.random.default_rng(4)
    n = 300
    d = pd.DataFrame({"hospital": rng.choice(list("AB"), n), "age": rng.uniform(60, 95, n), "op_id": "x",
                      "male": rng.integers(0, 2, n), "asa_group": rng.choice(["1-2", "3", "4-5"], n)})
    y = rng.binomial(1, 0.7, n)
    y[d["asa_group"].to_numpy() == "4-5"] = 1
    d["surgery_48h"] = pd.array(y, dtype="Int64")
    cat = load_catalogue()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oe, coefs = ind_mod.case_mix(d, cat["surgery_48h"], "hospital", adjustment=["age", "male", "asa_group"])
    assert not coefs["converged"].any()
    assert oe["expected"].sum() == pytest.approx(oe["observed"].sum(), rel=1e-3)
    d["surgery_48h"] = pd.array(rng.binomial(1, 0.7, n), dtype="Int64")
    _, ok = ind_mod.case_mix(d, cat["surgery_48h"], "hospital", adjustment=["age", "male", "asa_group"])
    assert ok["converged"].all()


def test_restrict_counts_dropped():
    rows, dropped = ind_mod.restrict(_cohort(), period=(2015, 2015), min_age=70)
    assert dropped["n"].tolist() == [6, 2]
    assert len(rows) == 7


def test_every_indicator_evaluates_on_the_built_cohort(tiny_cohort):
    """The catalogue's expressions run on the real cohort contract and give sensible denominators."""
    cat = load_catalogue()
    for i in cat.values():
        if "include_npr_only" in i.requires and not (tiny_cohort["source"] == "npr_only").any():
            continue
        res = ind_mod.evaluate(tiny_cohort, i, unit=None)
        assert res["n"].item() > 0, i.id
        assert 0 <= res["prop"].item() <= 1, i.id
        per = ind_mod.evaluate(tiny_cohort, i, unit="hospital")
        assert per["n"].sum() == res["n"].item() and per["events"].sum() == res["events"].item()
    # eligibility by hand for one indicator
    el, _ = ind_mod.eligible(tiny_cohort, cat["arthroplasty_displaced"])
    assert (el["fracture_type"] == "fn_displaced").all() and (el["age"] > 70).all()


def test_adjusted_funnel_z_from_expected_variance():
    oe = pd.DataFrame({"indicator": "x", "unit": ["a", "b"], "n": [100, 100], "observed": [60.0, 90.0],
                       "expected": [80.0, 80.0], "oe": [0.75, 1.125], "std_prop": [0.6, 0.9],
                       "var_expected": [16.0, 16.0]})
    adj = ind_mod.adjusted_funnel(oe, 0.8).set_index("unit")
    assert adj.loc["a", "z"] == pytest.approx(-5.0) and adj.loc["b", "z"] == pytest.approx(2.5)
    assert adj.loc["a", "outside_99.8"] == "low" and adj.loc["b", "outside_99.8"] == ""
    assert adj.loc["b", "outside_95"] == "high"


def test_random_effects_offset_close_to_joint():
    rng = np.random.default_rng(5)
    n = 4000
    d = pd.DataFrame({"hospital": rng.choice([f"h{i}" for i in range(15)], n), "age": rng.uniform(60, 95, n),
                      "op_id": "x", "asa_group": rng.choice(["1-2", "3", "4-5"], n)})
    u = pd.Series(rng.normal(0, 0.6, 15), index=[f"h{i}" for i in range(15)])
    lin = 1 + 0.04 * (d["age"] - 80) - 0.5 * (d["asa_group"] == "4-5") + d["hospital"].map(u)
    d["surgery_48h"] = pd.array(rng.binomial(1, 1 / (1 + np.exp(-lin))), dtype="Int64")
    cat = load_catalogue()
    _, joint = ind_mod.random_effects(d, cat["surgery_48h"], "hospital", ["age", "asa_group"], method="joint")
    null, off = ind_mod.random_effects(d, cat["surgery_48h"], "hospital", ["age", "asa_group"], method="offset")
    assert off.sigma2 == pytest.approx(joint.sigma2, rel=0.05)
    assert joint.params.set_index("term").loc["age", "estimate"] == pytest.approx(0.04, abs=0.01)
    assert list(off.params["term"]) == ["Intercept"]


def test_outside_summary_names_strong_candidates():
    flags = pd.DataFrame({"indicator": "x", "unit": ["a", "b", "c"], "outside_99.8": ["low", "high", ""],
                          "outside_add_99.8": ["low", "", ""], "adj_outside_99.8": ["low", "high", ""]})
    text = ind_mod.outside_summary(flags, {"x": "Indicator X"})
    assert "2 of 3 units outside the exact limits" in text
    assert "beyond both case-mix and overdispersion-adjusted limits: a (below)" in text

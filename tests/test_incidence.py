"""Incidence, coverage, completeness, self-sufficiency and Table 1 masking against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from hipfrac import coverage, incidence, protection, table1


def _cohort():
    # area A: 2015 women 80-84 x3, men 80-84 x1; 2016 women 80-84 x1; area B: 2015 women 80-84 x2
    rows = [("A", 2015, "female", "80-84")] * 3 + [("A", 2015, "male", "80-84")] + \
           [("A", 2016, "female", "80-84")] + [("B", 2015, "female", "80-84")] * 2
    return pd.DataFrame(rows, columns=["referral_area", "year", "sex", "age_band5"])


def _population():
    rows = []
    for area, f, m in (("A", 1000, 500), ("B", 4000, 1000)):
        for year in (2015, 2016):
            rows += [(year, area, "R", "female", "80-84", f), (year, area, "R", "male", "80-84", m)]
    return pd.DataFrame(rows, columns=["year", "referral_area", "region", "sex", "age_band5", "population"])


def test_incidence_data_aggregates_events_and_population():
    d = incidence.incidence_data(_cohort(), _population(), "referral_area", years=(2015, 2016))
    a = d[d["referral_area"] == "A"].set_index(["year", "sex"])
    assert a.loc[(2015, "female"), "events"] == 3 and a.loc[(2015, "female"), "population"] == 1000
    assert a.loc[(2016, "male"), "events"] == 0 and a.loc[(2016, "male"), "population"] == 500
    assert d["events"].sum() == 7 and d["population"].sum() == 2 * (1500 + 5000)


def test_aggregated_events_give_the_same_data_as_rows():
    rows = _cohort()
    agg = rows.assign(region="R").groupby(["year", "referral_area", "region", "sex", "age_band5"]).size()
    agg = agg.rename("events").reset_index().assign(events_registered=0)
    for unit in ("referral_area", "region"):
        r = incidence.incidence_data(rows.assign(res_region="R"), _population(), unit, years=(2015, 2016))
        a = incidence.incidence_data(agg, _population(), unit, years=(2015, 2016))
        pd.testing.assert_frame_equal(r, a)


def test_fracture_without_population_is_an_error():
    c = pd.concat([_cohort(), pd.DataFrame([("C", 2015, "female", "80-84")], columns=_cohort().columns)])
    with pytest.raises(ValueError, match="1 fractures without population, e.g. C 2015"):
        incidence.incidence_data(c, _population(), "referral_area")


def test_direct_standardisation_and_scv_by_hand():
    d = incidence.incidence_data(_cohort(), _population(), "referral_area")
    r = incidence.standardised_incidence(d, "referral_area").set_index("referral_area")
    # standard population = national 2015: women 5000, men 1500 -> weights 5000/6500, 1500/6500
    wf, wm = 5000 / 6500, 1500 / 6500
    a = (wf * 4 / 2000 + wm * 1 / 1000) * 1e5      # period: women 4 / 2000 py, men 1 / 1000 py
    b = (wf * 2 / 8000 + wm * 0 / 2000) * 1e5
    assert r.loc["A", "std_rate"] == pytest.approx(a) and r.loc["B", "std_rate"] == pytest.approx(b)
    assert r.loc["A", "crude_rate"] == pytest.approx(5 / 3000 * 1e5)
    # expected from national stratum rates: women 6/10000, men 1/3000
    ea, eb = 2000 * 6 / 10000 + 1000 / 3000, 8000 * 6 / 10000 + 2000 / 3000
    assert r.loc["A", "expected"] == pytest.approx(ea) and r.loc["B", "expected"] == pytest.approx(eb)
    st = incidence.area_variation(r.reset_index()).set_index("statistic")["value"]
    scv = 100 / 2 * (((5 - ea) / ea) ** 2 + ((2 - eb) / eb) ** 2 - 1 / ea - 1 / eb)
    assert st["scv"] == pytest.approx(scv)
    assert st["eq"] == pytest.approx(a / b)
    assert st["cv"] == pytest.approx(100 * np.std([a, b], ddof=1) / np.mean([a, b]))


def test_coverage_union_formula_and_levels():
    cov = pd.DataFrame({"hospital": ["H1", "H1", "H2"], "year": [2015, 2016, 2015], "n_both": [80, 90, 50],
                        "n_nhfr_only": [5, 0, 0], "n_npr_only": [15, 10, 50]})
    t = coverage.coverage_table(cov, by=["hospital"]).set_index("hospital")
    assert t.loc["H1", "coverage"] == pytest.approx((80 + 5 + 90) / (80 + 5 + 15 + 90 + 10))
    assert t.loc["H2", "coverage"] == 0.5 and t.loc["H2", "level"] == "low coverage (<60%)"
    assert coverage.coverage_level([0.59, 0.6, 0.8, 0.9]).tolist() == list(coverage.COVERAGE_LEVELS)
    y = coverage.coverage_table(cov, by=["year"], years=(2016, 2016))
    assert y["coverage"].tolist() == [0.9]


def test_completeness_and_self_sufficiency_by_hand():
    c = pd.DataFrame({"hospital": ["H1", "H1", "H1", "H2"], "source": ["both", "both", "npr_only", "both"],
                      "asa": [1, None, None, 3], "arthroplasty": [1, 0, None, 1],
                      "stem_fixation": [None, None, None, "cemented"],
                      "res_trust": ["T1", "T1", "T2", "T2"], "hosp_trust": ["T1", "T2", "T2", "T2"],
                      "res_region": ["R"] * 4, "hosp_region": ["R", "R", "R", "S"],
                      "referral_area": ["a", "a", "b", "b"]})
    comp = coverage.completeness(c, variables={"asa": None, "stem_fixation": "arthroplasty == 1"})
    comp = comp.set_index(["hospital", "variable"])
    assert comp.loc[("H1", "asa"), "n"] == 2 and comp.loc[("H1", "asa"), "complete"] == 0.5   # NPR-only left out
    assert comp.loc[("H1", "stem_fixation"), "n"] == 1 and comp.loc[("H2", "stem_fixation"), "complete"] == 1
    s = coverage.self_sufficiency(c).set_index("referral_area")
    assert s.loc["a", "own_trust"] == 0.5 and s.loc["b", "own_region"] == 0.5
    assert s.loc["Norway", "n"] == 4 and s.loc["Norway", "own_trust"] == 0.75


def test_table1_is_a_long_result_protected_by_the_exporter_rules():
    c = pd.DataFrame({"sex": ["female"] * 30 + ["male"] * 3, "age": np.linspace(60, 95, 33),
                      "res_region": ["X"] * 20 + ["Y"] * 13})
    t = table1.table_one(c, groupby="res_region", categorical=["sex"], continuous=["age"], nonnormal=[])
    assert t.loc[t["variable"] == "n"].set_index("group").loc["Overall", "n"] == 33
    safe = protection.protect(t, 5).frame.set_index(["variable", "level", "group"])
    assert pd.isna(safe.loc[("sex", "male", "Overall"), "n"]) and pd.isna(safe.loc[("sex", "female", "Overall"), "n"])
    assert safe.loc[("age", "", "Overall"), "mean"] == pytest.approx(77.5)
    assert "SMD (X,Y)" in table1.display(protection.protect(t, 5).frame, table1.smd_table(protection.protect(t, 5).frame)).columns

"""Disclosure metadata of the risk-factor results (hipfrac.risk, hipfrac.competing; notebook 03, issue 13).

Small synthetic cohorts built so that a count of 1-4 hides behind published counts: new fractures between two
table times of the cumulative incidence, survivors of a model level (n - deaths), missing values; the
metadata's cells are checked against the data, and the second-fracture cells of notebook 03 are the cells
of notebook 04's cumulative incidence of the same outcome.
"""

import numpy as np
import pandas as pd
import pytest

from hipfrac import competing, protection, results, risk, sdc
from hipfrac import prevention as pv

MIN = 5


def _patients(n, *, sex, region, fx_days=(), dead_days=(), fu=4000.0, seed=0):
    """n patients: second hip fractures on `fx_days`, deaths (without one) on `dead_days`, the rest censored
    alive at `fu` days. Integer days, as the cohort's."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        r = {"sex": sex, "res_region": region, "age": float(rng.integers(65, 100)), "male": int(sex == "male"),
             "charlson": int(rng.integers(0, 4)), "residence": "home", "cognitive": "no",
             "second_hip_fracture": 0, "days_to_second_fracture": np.nan, "dead": 0, "followup_days": fu,
             "fracture_date": pd.Timestamp("2014-01-01")}
        if i < len(fx_days):
            r.update(second_hip_fracture=1, days_to_second_fracture=float(fx_days[i]), followup_days=fu)
        elif i - len(fx_days) < len(dead_days):
            r.update(dead=1, followup_days=float(dead_days[i - len(fx_days)]))
        rows.append(r)
    return rows


@pytest.fixture(scope="module")
def cohort():
    # Helse Nord: 12 second fractures by day 365, 3 more by day 730 (the step of 3 must not be readable)
    rows = (_patients(120, sex="female", region="Helse Nord", fx_days=[100] * 12 + [500] * 3 + [1500] * 6,
                      dead_days=[50] * 20 + [600] * 10)
            + _patients(150, sex="male", region="Helse Vest", fx_days=[200] * 10 + [400] * 8 + [1000] * 7,
                        dead_days=[30] * 25 + [900] * 15, seed=1)
            + _patients(200, sex="female", region="Helse Sør-Øst", fx_days=[300] * 20 + [700] * 9 + [2000] * 9,
                        dead_days=[80] * 30 + [1200] * 20, seed=2)
            + _patients(160, sex="male", region="Helse Midt-Norge", fx_days=[10] * 6 + [720] * 6 + [1800] * 5,
                        dead_days=[20] * 15 + [3000] * 15, seed=3))
    return results.with_population(pd.DataFrame(rows))


def _cells(frame):
    return results.row_cells(results.Meta(frame))


def test_cif_cells_are_interval_atoms_of_one_variable(cohort):
    cr, dropped = risk.second_fracture_frame(cohort, ["age10", "male", "charlson"])
    assert dropped == 0
    tab = risk.second_fracture_cif(cr, times=[365, 730, 1826], group="res_region")
    cells = _cells(tab)
    for i, r in tab.reset_index(drop=True).iterrows():
        ev = dict(cells[(i, "events")].conds)[risk.FX2]
        kind = "fx" if r["cause"] == "second hip fracture" else "dead"
        assert ev == sdc.interval_atom(kind, -np.inf, r["time"])
        at = sdc.atoms(dict(cells[(i, "n_risk")].conds)[risk.FX2])
        assert at == {sdc.interval_atom(k, r["time"], np.inf) for k in ("fx", "dead", "cens")}
        # the metadata's claims hold on the data
        g = cr[cr["res_region"] == r["res_region"]]
        code = 1 if kind == "fx" else 2
        assert r["events"] == int(((g.cr_event == code) & (g.cr_time <= r["time"])).sum())
        assert r["n_risk"] == int((g.cr_time > r["time"]).sum())


def _small_steps(safe, group):
    """(group, cause, t0, t1, step) where events(t1) - events(t0) is readable and 1-4."""
    out = []
    for (g, c), h in safe.groupby([group, "cause"]):
        h = h.sort_values("time")
        ev, tt = h["events"].to_numpy(dtype=float), h["time"].to_numpy()
        for i in range(len(h)):
            for j in range(i + 1, len(h)):
                d = ev[j] - ev[i]
                if np.isfinite(d) and 1 <= d < MIN:
                    out.append((g, c, tt[i], tt[j], d))
    return out


def test_cif_table_protected_alone_withholds_small_events_between_table_times(cohort):
    cr, _ = risk.second_fracture_frame(cohort, ["age10", "male", "charlson"])
    tab = risk.second_fracture_cif(cr, times=[365, 730, 1826], group="res_region")
    assert _small_steps(tab.copy(), "res_region"), "the data hold a step of 1-4 (Helse Nord: 3 between 365 and 730)"
    prot = protection.protect(tab, MIN, strict=True, name="cif")
    assert prot.exposed == [] and "_next" not in prot.frame.columns
    assert _small_steps(prot.frame, "res_region") == []


def test_cif_table_withholds_small_events_between_table_times(cohort):
    """As in notebook 03: the table by sex is published first, then the one by region."""
    cr, _ = risk.second_fracture_frame(cohort, ["age10", "male", "charlson"])
    reg = protection.Registry()
    reg.record(protection.protect(risk.second_fracture_cif(cr, times=[365, 730, 1826], group="sex"), MIN,
                                  registry=reg, strict=True, name="by sex"))
    tab = risk.second_fracture_cif(cr, times=[365, 730, 1826], group="res_region")
    raw = tab.copy()
    assert _small_steps(raw, "res_region"), "the data must hold a step of 1-4 (Helse Nord: 3 between 365 and 730)"
    prot = protection.protect(tab, MIN, registry=reg, strict=True, name="cif")
    assert prot.exposed == []
    assert _small_steps(prot.frame, "res_region") == []
    # derived estimates go with their events
    for c in ("cif", "lower", "upper"):
        assert (prot.mask[c] | ~prot.mask["events"]).all()
    # survivors: n_risk(t1) - n_risk(t0) - (fractures + deaths between) is censoring: none here; no
    # published number at risk is withheld for that
    assert prot.frame["n_risk"].notna().all()


def test_cif_table_and_curve_share_their_at_risk_cells(cohort):
    cr, _ = risk.second_fracture_frame(cohort, ["age10", "male", "charlson"])
    tab = risk.second_fracture_cif(cr, times=[365, 730], group="sex")
    cv = risk.second_fracture_curves(cr, group="sex", min_events=MIN, at_risk_times=[365, 730])
    tc, cc = _cells(tab), _cells(cv)
    t = tab.reset_index(drop=True)
    c = cv.reset_index(drop=True)
    i = int(np.flatnonzero((t.sex == "male") & (t.time == 365) & (t.cause == "second hip fracture"))[0])
    j = int(np.flatnonzero((c.sex == "male") & (c.time == 365))[0])
    assert tc[(i, "n_risk")] == cc[(j, "n_risk")] and t.at[i, "n_risk"] == c.at[j, "n_risk"]
    # rows of the curve without a number at risk count nothing of the outcome
    k = int(np.flatnonzero(c.n_risk.isna())[0])
    assert risk.FX2 not in cc[(k, "n_risk")].vars
    protection.protect(cv, MIN, strict=True, name="curve")


def test_notebook_03_and_04_count_the_same_cells(cohort):
    """Notebook 03's cumulative incidence of a second hip fracture by sex at day 365 / 730 and notebook 04's
    at 1 / 2 years are the same cells (one status variable, days), so the audit links them."""
    cr, _ = risk.second_fracture_frame(cohort, ["age10", "male", "charlson"])
    t3 = risk.second_fracture_cif(cr, times=[365, 730], group="sex")
    t3 = t3[t3.cause == "second hip fracture"].reset_index(drop=True)
    t4 = pv.new_fracture_cif(cohort, "second_hip_fracture", years=(1, 2), by="sex")
    c3, c4 = _cells(t3), _cells(t4)
    for i, r in t3.iterrows():
        j = int(np.flatnonzero((t4.sex == r.sex) & (t4.years == {365: 1, 730: 2}[r.time]))[0])
        for col in ("events", "n_risk"):
            assert c3[(i, col)] == c4[(j, col)], col
            assert r[col] == t4.at[j, col]
    assert competing.OUTCOME_STATUS["second_hip_fracture"] == risk.FX2
    # 04 publishes day 365, 03 day 730 of the same groups: the fractures between them are a cell across tables
    reg = protection.Registry()
    p4 = protection.protect(pv.new_fracture_cif(cohort, "second_hip_fracture", years=(1,), by="res_region"), MIN,
                            registry=reg, strict=True, name="04")
    reg.record(p4)
    t3r = risk.second_fracture_cif(cr, times=[730], group="res_region")
    p3 = protection.protect(t3r, MIN, registry=reg, strict=True, name="03")
    a = p4.frame.set_index("res_region")["events"]
    b = p3.frame[p3.frame.cause == "second hip fracture"].set_index("res_region")["events"]
    step = (b - a).dropna()
    assert not ((step >= 1) & (step < MIN)).any(), step.to_dict()


def test_complete_cases_are_a_subpopulation_of_the_same_cells(cohort):
    d = cohort.copy()
    d.loc[:6, "cognitive"] = np.nan
    d = results.with_population(d)
    cr, dropped = risk.second_fracture_frame(d, ["age10", "cognitive"])
    assert dropped == 7
    t3 = risk.second_fracture_cif(cr, times=[365], group="sex")
    t4 = pv.new_fracture_cif(d, "second_hip_fracture", years=(1,), by="sex")
    c3, c4 = _cells(t3)[(0, "events")], _cells(t4)[(0, "events")]
    extra = set(c3.conds) - set(c4.conds)
    assert len(extra) == 1 and next(iter(extra))[0].startswith("#complete:") and set(c4.conds) < set(c3.conds)


def _model_cohort():
    """Deaths by day 30: level 4-5 has 10 patients of whom 8 die (2 survivors), level 3 has 3 deaths."""
    rng = np.random.default_rng(5)
    rows = []
    for asa, n, d30 in (("1-2", 150, 20), ("3", 120, 3), ("4-5", 10, 8)):
        for i in range(n):
            rows.append({"asa_group": asa, "age": float(rng.integers(65, 100)), "hospital": f"H{i % 6}",
                         "dead": int(i < d30 or i % 3 == 0), "followup_days": float(rng.integers(1, 30)) if i < d30
                         else float(rng.integers(31, 3000))})
    return results.with_population(pd.DataFrame(rows))


def test_regression_table_withholds_small_deaths_and_survivors():
    d = _model_cohort()
    res = risk.fit_cox(d, ["age", "asa_group"], horizon_days=30)
    tab = risk.regression_table(res, d)
    m = results.Meta(tab)
    assert set(m.counts) == {"n", "deaths"} and m.derived["hr"] == ["deaths"]
    cells = results.row_cells(m)
    lv = tab.reset_index(drop=True)
    i5 = int(np.flatnonzero(lv.level == "4-5")[0])
    assert dict(cells[(i5, "deaths")].conds)[risk.FU] == risk.dead_by(30)
    assert lv.at[i5, "n"] == 10 and lv.at[i5, "deaths"] == 8
    prot = protection.protect(tab, MIN, strict=True, name="cox")
    f, mask = prot.frame, prot.mask
    i3 = int(np.flatnonzero(lv.level == "3")[0])
    assert mask.at[i3, "deaths"] and mask.at[i3, "hr"] and mask.at[i3, "upper"]
    assert mask.at[i5, "n"] or mask.at[i5, "deaths"], "4-5: n - deaths = 2 survivors readable"
    # the levels add up to the model's patients (first row): a withheld level is not the difference
    shown = f.iloc[1:]
    if f.at[0, "n"] is not pd.NA:
        assert shown.loc[shown.factor == "ASA class", "n"].isna().sum() != 1
    # the pooled (no data) table: estimates only
    assert results.Meta(risk.regression_table(res)).counts == {}


def test_missingness_and_models_count_one_complete_case_variable():
    d = _model_cohort()
    d.loc[:3, "asa_group"] = np.nan
    d = results.with_population(d)
    miss = risk.missingness_table(d, ["age", "asa_group"])
    cells = _cells(miss)
    row = int(np.flatnonzero(miss.factor == "asa_group")[0])
    assert dict(cells[(row, "n_missing")].conds) == {"#complete:asa_group": "missing"}
    allf = int(np.flatnonzero(miss.factor == "all factors")[0])
    cv = dict(cells[(allf, "n_missing")].conds)
    res = {h: risk.fit_cox(d, ["age", "asa_group"], horizon_days=h) for h in (30, None)}
    ov = risk.model_overview(res)
    oc = _cells(ov)
    assert set(cv) == {res[30].cases_var} and cv[res[30].cases_var] == "dropped"
    assert dict(oc[(0, "n_dropped")].conds) == cv and ov["n_dropped"].iloc[0] == miss["n_missing"].iloc[allf] == 4
    assert ov["n"].iloc[0] + ov["n_dropped"].iloc[0] == len(d)
    # the regression table's first row is the overview's n (the complete cases as a population)
    tab = risk.regression_table(res[30], d)
    assert set(_cells(tab)[(0, "n")].conds) == set(oc[(0, "n")].conds)
    for fr in (miss, ov, tab):
        protection.protect(fr, MIN, strict=True, name="m")


def test_model_tables_roles_and_episode_atoms():
    d = _model_cohort()
    res = risk.fit_cox(d, ["age", "asa_group"])
    pw = risk.piecewise_cox(d, ["age", "asa_group"], cuts=(30, 365), cluster=None)
    cells = _cells(pw)
    p = pw.reset_index(drop=True)
    for i, r in p.iterrows():
        kind, a, b = sdc.parse_interval(dict(cells[(i, "events")].conds)[risk.FU])
        assert kind == "dead" and (a, b) == (r.start_day, r.end_day)
        assert r.n == int((d.followup_days > a).sum())
        assert r.events == int(((d.followup_days > a) & (d.followup_days <= b) & (d.dead == 1)).sum())
    sm = risk.schoenfeld_smooth(res, d, bins=4)
    m = results.Meta(sm)
    assert m.counts == {"events": [("#schoenfeld_bin", "{_bin}")]} and m.derived["beta_t"] == ["events"]
    stats = [risk.ph_test(res, d), risk.anova_importance(res), risk.age_effect(res),
             risk.adjusted_survival(res, {"a": {"age": 80, "asa_group": "3"}}, days=[30, 365]),
             risk.stack_summaries({"x": res, "y": res})]
    for fr in [pw, sm, *stats]:
        prot = protection.protect(fr, MIN, strict=True, name="t")
        assert prot.exposed == []
    for fr in stats:
        assert results.Meta(fr).counts == {}

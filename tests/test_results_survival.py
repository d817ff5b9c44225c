"""Disclosure metadata of the survival results (issue 13): annotated counts and merged curves."""

import numpy as np
import pandas as pd
import pytest

from hipfrac import competing, curves, protection, results, survival


def _cohort(n_units=4, n=40, seed=1):
    rng = np.random.default_rng(seed)
    units = np.repeat([f"U{i}" for i in range(n_units)], n)
    fu = rng.integers(1, 2000, len(units)).astype(float)
    dead = (rng.random(len(units)) < 0.6).astype(int)
    return pd.DataFrame({"unit": units, "followup_days": fu, "dead": dead})


def test_merge_steps_every_step_holds_min_events_and_n_risk_only_at_at_risk_times():
    rng = np.random.default_rng(3)
    t = np.sort(rng.choice(np.arange(1, 1000), 120, replace=False)).astype(float)
    e = rng.integers(1, 4, len(t)).astype(float)
    s = np.cumprod(1 - e / 500)
    at = [0.0, 365.25, 730.5]
    mc = curves.merge_steps(t, e, {"surv": s}, {"surv": 1.0}, min_events=5, at_risk_times=at,
                            n_risk_at=lambda x: 500 - np.searchsorted(t, x) * 2)
    assert (mc.events[mc.step] >= 5).all()
    # the events of the published steps are the merged events of the input, in order
    cum = np.cumsum(e)
    pub = np.searchsorted(t, mc.times[mc.step])
    assert np.allclose(np.diff(np.r_[0, cum[pub]]), mc.events[mc.step])
    assert set(mc.times[~np.isnan(mc.n_risk)]) <= set(at)
    with pytest.raises(ValueError):
        curves.merge_steps(t, e, {"surv": s}, {"surv": 1.0}, min_events=None, at_risk_times=at,
                           n_risk_at=lambda x: x)


def test_merge_steps_drops_at_risk_time_with_small_gap():
    mc = curves.merge_steps([1.0, 2.0], [5, 5], {"s": [0.9, 0.8]}, {"s": 1.0}, min_events=5,
                            at_risk_times=[0.0, 10.0, 20.0], n_risk_at=lambda x: np.array([100, 97, 90])[:len(x)])
    nr = dict(zip(mc.times, mc.n_risk))
    assert nr[0.0] == 100 and np.isnan(nr[10.0]) and nr[20.0] == 90


def test_km_curves_merged_and_annotated():
    c = _cohort()
    at = [0.0, 365.25, 730.5, 1095.75]
    k = survival.km_curves(c, "unit", min_events=5, at_risk_times=at)
    assert results.is_result(k)
    for u, g in k.groupby("unit"):
        d = c[c.unit == u]
        steps = np.r_[0.0, g.loc[g.step, "time"].to_numpy()]
        deaths = [int(((d.followup_days > a) & (d.followup_days <= b) & (d.dead == 1)).sum())
                  for a, b in zip(steps[:-1], steps[1:])]
        assert min(deaths) >= 5
        assert set(g.loc[g.n_risk.notna(), "time"]) <= set(at)
        nr = g.n_risk.dropna().to_numpy()
        assert (-np.diff(nr) >= 5).all()
    # old unmerged publication is gone: no default
    with pytest.raises(TypeError):
        survival.km_curves(c, "unit")


def test_mortality_at_protects_small_non_events_and_derived():
    c = _cohort(n_units=3, n=30)
    # unit U0: 3 alive at 90 days, everyone else dead (non-events 3); no censoring before 90
    c.loc[c.unit == "U0", "followup_days"] = [5.0] * 27 + [400.0] * 3
    c.loc[c.unit == "U0", "dead"] = 1
    m = survival.mortality_at(c, "unit", horizons=[90])
    row = m[m.unit == "U0"].iloc[0]
    assert row["n"] - row["deaths"] - row["_cens"] == row["n_risk"] == 3
    p = protection.protect(m, 5)
    pr = p.frame[p.frame.unit == "U0"].iloc[0]
    # n - deaths = 3 must not be readable: deaths (or n) withheld, mortality and CI with it
    assert pd.isna(pr["deaths"]) or pd.isna(pr["n"])
    assert pd.isna(pr["n_risk"])
    assert pd.isna(pr["mortality"]) and pd.isna(pr["lower"])
    assert "_cens" not in p.frame.columns


def test_cif_curves_and_table_annotated():
    rng = np.random.default_rng(2)
    d = pd.DataFrame({"t": rng.integers(1, 1500, 300).astype(float), "e": rng.choice([0, 1, 2], 300, p=[.5, .2, .3]),
                      "g": rng.choice(["a", "b"], 300)})
    tab = competing.cumulative_incidence(d, time="t", event="e", times=[365, 730], group="g")
    assert results.is_result(tab)
    cv = competing.cif_curves(d, time="t", event="e", group="g", causes=(1,), min_events=5, at_risk_times=[0, 365, 730])
    for _, g in cv.groupby("g"):
        steps = np.r_[0.0, g.loc[g.step, "time"].to_numpy()]
        sub = d[d.g == g.g.iloc[0]]
        ev = [int(((sub.t > a) & (sub.t <= b) & (sub.e == 1)).sum()) for a, b in zip(steps[:-1], steps[1:])]
        assert min(ev) >= 5
    p = protection.protect(cv, 5)
    assert "_cr" not in p.frame.columns


# --- notebook 02's results (issue 13: no counts=/derived= left in the notebook) ---------------------------
def _casemix_cohort(n=400, seed=5):
    rng = np.random.default_rng(seed)
    units = np.array([f"H{i}" for i in range(8)])[rng.integers(0, 8, n)]
    units[:6] = "Tiny"                   # a hospital of 6 patients
    fu = rng.integers(1, 3000, n).astype(float)
    dead = (rng.random(n) < 0.5).astype(int)
    d = pd.DataFrame({"hospital": units, "referral_area": np.where(rng.random(n) < 0.5, "A1", "A2"),
                      "followup_days": fu, "dead": dead, "age": rng.normal(82, 7, n),
                      "male": rng.integers(0, 2, n), "fracture_date": pd.Timestamp("2015-01-01"),
                      "end_of_followup": pd.Timestamp("2024-12-31")})
    d["dead_30d"] = ((d.dead == 1) & (d.followup_days <= 30)).astype(int)
    d["dead_1y"] = ((d.dead == 1) & (d.followup_days <= 365)).astype(int)
    return results.with_population(d)


def test_risk_adjusted_mortality_of_several_horizons_is_one_annotated_table():
    c = _casemix_cohort()
    parts = [survival.risk_adjusted_mortality(c, ["hospital", "referral_area"], horizon=h, casemix=["age", "male"])[0]
             for h in (30, 365)]
    adj = results.concat(parts)          # raised before: the horizons' populations differed
    assert results.is_result(adj) and set(adj["horizon_days"]) == {30, 365}
    cells = results.row_cells(results.Meta(adj), ["n"])
    n30 = cells[(0, "n")]
    n365 = cells[(int(np.flatnonzero(adj["horizon_days"] == 365)[0]), "n")]
    assert n30 != n365                   # different patients (complete follow-up to 30 days vs 1 year)
    p = protection.protect(adj, 5)
    tiny = p.frame[p.frame["unit"] == "Tiny"]
    assert tiny["n"].isna().all() and tiny["oe"].isna().all() and tiny["std_rate"].isna().all()


def test_cohort_overview_annotated_and_small_deaths_withheld():
    c = _cohort(n_units=1, n=40)
    c["year"] = 2020
    c["dead"] = 0
    c.loc[:2, "dead"] = 1
    ov = survival.cohort_overview(c)
    assert int(ov["deaths"].iloc[0]) == 3 and results.is_result(ov)
    p = protection.protect(ov, 5)
    assert pd.isna(p.frame["deaths"].iloc[0])
    assert p.frame["person_years"].notna().all()     # a statistic of the whole cohort


def test_model_summaries_are_statistics():
    c = _casemix_cohort()
    c["res_region"] = np.where(c["hospital"].isin(["H0", "H1", "H2"]), "R1", "R2")
    cox = survival.CoxModel(engine="breslow").fit(c, "res_region", casemix=["age", "male"], reference="R1")
    m = results.Meta(cox.summary)
    assert not m.counts and set(m.stats) == {"coef", "se", "hr", "lower", "upper", "p"}
    p = protection.protect(cox.summary, 5)
    assert not p.mask.to_numpy().any()

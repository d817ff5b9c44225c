"""hipfrac.relsurv against R (relsurv::rs.surv, survival::survexp/pyears, glm with the Dickman link).

Fixtures are written by tests/reference/relsurv.R on relsurv's colrec data with the slopop rate table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hipfrac import relsurv as rs

FX = __import__("pathlib").Path(__file__).resolve().parent / "reference" / "fixtures"
KW = dict(time="time", event="stat", age="age", sex="sex", year="year")


@pytest.fixture(scope="module")
def colrec():
    return pd.read_csv(FX / "relsurv_colrec.csv")


@pytest.fixture(scope="module")
def slopop():
    return rs.LifeTable(pd.read_csv(FX / "relsurv_slopop.csv"))


@pytest.mark.parametrize("method", ["pohar-perme", "ederer2"])
def test_net_survival_matches_relsurv(colrec, slopop, method):
    ref = pd.read_csv(FX / "relsurv_netsurv.csv").query("method == @method")
    out = rs.net_survival(colrec, **KW, lifetable=slopop, method=method, times=ref["time"])
    assert list(out.columns) == ["time", "surv", "std_err", "lower", "upper"]
    for col in ("surv", "std_err", "lower", "upper"):
        np.testing.assert_allclose(out[col].to_numpy(), ref[col].to_numpy(), atol=5e-4, rtol=0, err_msg=col)
    # the standard errors are far tighter than the tolerance: check them relatively too
    np.testing.assert_allclose(out["std_err"].to_numpy(), ref["std_err"].to_numpy(), rtol=1e-3)


def test_net_survival_by_sex_matches_relsurv(colrec, slopop):
    ref = pd.read_csv(FX / "relsurv_netsurv_by_sex.csv")
    out = rs.net_survival_by(colrec, "sex", **KW, lifetable=slopop, times=sorted(ref["time"].unique()))
    m = ref.merge(out, on=["sex", "time"], suffixes=("_r", ""))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["surv"], m["surv_r"], atol=5e-4, rtol=0)
    np.testing.assert_allclose(m["std_err"], m["std_err_r"], atol=5e-4, rtol=0)


def test_expected_survival_matches_survexp(colrec, slopop):
    ref = pd.read_csv(FX / "relsurv_expected.csv")
    out = rs.expected_survival(colrec, times=ref["time"], age="age", sex="sex", year="year", lifetable=slopop)
    np.testing.assert_allclose(out["expected_surv"], ref["surv"], atol=1e-5, rtol=0)


def test_split_followup_matches_pyears(colrec, slopop):
    ref = pd.read_csv(FX / "relsurv_pyears.csv")
    brk = np.r_[0, 30, 90, np.array([1, 2, 5, 10, 100]) * rs.DAYS_PER_YEAR]
    sp = rs.split_followup(colrec, brk, **KW, lifetable=slopop, keep=["sex"])
    agg = sp.groupby(["sex", "band"])[["person_years", "observed", "expected"]].sum().reset_index()
    ref["band"] = ref.groupby("sex").cumcount()
    m = ref.merge(agg, on=["sex", "band"], suffixes=("_r", ""))
    assert len(m) == len(ref) == 14
    np.testing.assert_allclose(m["person_years"], m["person_years_r"], rtol=1e-9)
    np.testing.assert_array_equal(m["observed"], m["observed_r"])
    # R steps calendar time by dates, hipfrac by 365.241-day years: agreement to 2e-4 relative
    np.testing.assert_allclose(m["expected"], m["expected_r"], rtol=2e-4)


def test_excess_hazard_fitter_matches_glm():
    agg = pd.read_csv(FX / "relsurv_excess_agg.csv")
    ref = pd.read_csv(FX / "relsurv_excess_glm.csv")
    f = rs.ExcessHazardFitter().fit(agg, "0 + C(fu) + male + C(age_group, Treatment('<65'))")
    got = f.summary.set_index("term")
    names = {"fu1": "C(fu)[1]", "fu2": "C(fu)[2]", "fu3": "C(fu)[3]", "fu4": "C(fu)[4]", "male": "male",
             "age_group65-74": "C(age_group, Treatment('<65'))[T.65-74]",
             "age_group75+": "C(age_group, Treatment('<65'))[T.75+]"}
    for r in ref.itertuples():
        assert got.loc[names[r.term], "coef"] == pytest.approx(r.estimate, abs=1e-6)
        assert got.loc[names[r.term], "se"] == pytest.approx(r.std_err, rel=1e-4)
    assert f.deviance_ == pytest.approx(ref["deviance"].iloc[0], rel=1e-6)
    assert f.df_resid_ == ref["df_resid"].iloc[0]


def test_excess_fitter_close_to_rsadd():
    """relsurv::rsadd(method="glm.poi") approximates d* per 1-year interval; same model, close estimates."""
    agg = pd.read_csv(FX / "relsurv_excess_agg.csv")
    ref = pd.read_csv(FX / "relsurv_rsadd.csv").set_index("term")["estimate"]
    f = rs.ExcessHazardFitter().fit(agg, "0 + C(fu) + male + C(age_group, Treatment('<65'))")
    got = f.params_
    assert got["male"] == pytest.approx(ref["male"], abs=2e-3)
    assert got["C(age_group, Treatment('<65'))[T.75+]"] == pytest.approx(ref["agegr[75,200)"], abs=2e-3)


def test_poisson_ci_matches_exact():
    lo, hi = rs.poisson_ci([0, 1, 10])
    # R: poisson.test(10)$conf.int = 4.795389 18.390356; poisson.test(1): 0.02531781 5.57164339
    assert lo[0] == 0 and hi[0] == pytest.approx(3.688879, abs=1e-6)
    assert (lo[1], hi[1]) == pytest.approx((0.02531781, 5.57164339), abs=1e-7)
    assert (lo[2], hi[2]) == pytest.approx((4.795389, 18.390356), abs=1e-6)


def test_lifetable_errors():
    lt = pd.DataFrame({"year": [2000, 2000], "age": [0, 1], "sex": ["female", "female"], "rate": [0.1, 0.1]})
    with pytest.raises(ValueError, match="rate"):
        rs.LifeTable(lt.drop(columns="rate"))
    with pytest.raises(ValueError, match="not complete"):
        rs.LifeTable(pd.concat([lt, lt.assign(sex="male").iloc[:1]]))
    t = rs.LifeTable(lt)
    with pytest.raises(ValueError, match="not in the life table"):
        t.sex_index(["male"])


def test_constant_hazard_net_survival_exact():
    """Population hazard constant (0.1 / year) and no censoring before 2 years: Ederer II and Pohar Perme
    both equal KM / exp(-0.1 t) exactly when the rate does not depend on age, sex or year."""
    rng = np.random.default_rng(3)
    n = 2000
    lt = pd.DataFrame([(y, a, s, 0.1) for y in range(1990, 2031) for a in range(0, 111)
                       for s in ("female", "male")], columns=["year", "age", "sex", "rate"])
    d = pd.DataFrame({"time": np.ceil(rng.exponential(800, n)), "age": rng.uniform(60, 90, n),
                      "sex": rng.choice(["female", "male"], n), "year": rng.uniform(2000, 2010, n)})
    d["stat"] = 1
    t = np.array([100.0, 365.0, 700.0])
    km = np.array([(d["time"] > x).mean() for x in t])
    truth = km / np.exp(-0.1 * t / rs.DAYS_PER_YEAR)
    for m in ("ederer2", "pohar-perme"):
        out = rs.net_survival(d, **KW, lifetable=lt, method=m, times=t)
        # each step's population part is exact; relative survival differs from KM/S* only at second order
        np.testing.assert_allclose(out["surv"], truth, rtol=2e-3)


def test_duration_definition():
    c = pd.DataFrame({"start": [0, 365, 730, 1095], "stop": [365, 730, 1095, 1460],
                      "lower": [0.5, 0.1, -0.1, -0.2]})
    assert rs.duration_of_excess(c) == (pytest.approx(730 / rs.DAYS_PER_YEAR), False)
    c.loc[3, "lower"] = 0.01
    dur, cens = rs.duration_of_excess(c)
    assert cens and dur == pytest.approx(1460 / rs.DAYS_PER_YEAR)


# --- annotated results of notebook 02 (issue 13) ----------------------------------------------------------
def test_relative_survival_withholds_estimates_with_few_deaths(colrec, slopop):
    from hipfrac import protection, results

    d = colrec[colrec["stat"] == 1].iloc[:300].copy()
    d["stat"] = np.where(d["time"] <= 30, 0, d["stat"])      # no death in the first 30 days ...
    first = d.index[:3]
    d.loc[first, "time"], d.loc[first, "stat"] = 10, 1         # ... but 3
    rel = rs.relative_survival(d, **KW, lifetable=slopop, times=[30, 365])
    assert results.is_result(rel) and "_deaths" in results.Meta(rel).private
    p = protection.protect(rel, 5)
    row = p.frame[p.frame["time"] == 30].iloc[0]
    assert row["n_risk"] > 5                                   # many at risk, but 3 deaths: withheld
    for c in ("observed", "net_pohar_perme", "pp_lower", "net_ederer2"):
        assert pd.isna(row[c]), c
    assert row["expected_ederer1"] == pytest.approx(float(rel["expected_ederer1"].iloc[0]))
    assert "_deaths" not in p.frame.columns
    assert p.frame.loc[p.frame["time"] == 365, "observed"].notna().all()


def test_grouped_results_stack_with_group_dimensions(colrec, slopop):
    from hipfrac import results

    d = colrec.iloc[:600]
    g = rs.net_survival_groups(d, ["sex"], **KW, lifetable=slopop, times=[365])
    assert results.Meta(g).dims == {"group": "{group_type}"}
    assert list(g["group_type"].unique()) == ["sex"]
    dur = rs.duration_by_groups(d, ["sex"], **KW, lifetable=slopop, breaks=[0, 365, 730, 1826], n_boot=2, seed=1)
    assert list(dur["group_type"]) == ["all", "sex", "sex"] and dur["n"].iloc[0] == len(d)
    assert dur["n"].iloc[1:].sum() == len(d)


def test_excess_hazard_models_check_their_levels_and_convergence(colrec, slopop):
    d = colrec.iloc[:800].copy()
    d["age_band"] = np.where(d["age"] < 70, "<70", "70+")
    d["area"] = np.where(np.arange(len(d)) % 3 == 0, "A", "B")
    kw = dict(KW, lifetable=slopop)
    with pytest.raises(ValueError, match="reference level 'Nowhere'"):
        rs.excess_hazard_regression(d, breaks=[0, 365, 1826], unit="area", reference_unit="Nowhere",
                                    reference_age_band="70+", **kw)
    f = rs.excess_hazard_regression(d, breaks=[0, 365, 1826], unit="area", reference_unit="B",
                                    reference_age_band="70+", **kw)
    assert f.converged_ and "age_70_x_late" in set(f.summary["term"])
    e = rs.excess_hr_by(d, "area", breaks=[0, 365, 1826], reference_age_band="70+", **kw)
    assert e.loc[e["area"] == "B", "excess_hr"].iloc[0] == 1.0 and e["n"].sum() == len(d)

    class NotConverged:
        converged_, n_iter_ = False, 200
    with pytest.raises(RuntimeError, match="did not converge"):
        rs._check_fit(NotConverged(), "test")


# --- net survival exact at any time (issue 14) ---------------------------------------------------------
def _product_integral(d, slopop, times, method):
    """Net survival from its definition, by brute force (independently of the accumulator): every patient's
    Lambda_i at every time from cumulative_expected_hazard, then the product integral of dN_w / Y_w
    (jumps) times exp of the continuous population part over each interval with a fixed risk set:
    Pohar Perme log(sum_R 1/S_i(t_j) / sum_R 1/S_i(t_{j-1})), Ederer II mean_R [Lambda_i(t_j) - Lambda_i(t_{j-1})]."""
    fu = d["time"].to_numpy(float)
    ev = d["stat"].to_numpy()
    grid = np.unique(np.r_[fu, times])
    grid = grid[grid <= fu.max()]
    lam = np.stack([rs.cumulative_expected_hazard(d, at=np.full(len(d), t), lifetable=slopop) for t in grid], 1)
    prev = np.zeros(len(d))
    s, out = 1.0, []
    for j, t in enumerate(grid):
        r = fu >= t
        dead = r & (fu == t) & (ev == 1)
        if method == "pohar-perme":
            a, b = np.exp(lam[r, j]).sum(), np.exp(prev[r]).sum()
            s *= (1 - np.exp(lam[dead, j]).sum() / a) * (a / b)
        else:
            s *= (1 - dead.sum() / r.sum()) * np.exp((lam[r, j] - prev[r]).mean())
        prev = lam[:, j]
        out.append(s)
    return np.asarray(out)[np.searchsorted(grid, times)]


@pytest.mark.parametrize("method", ["pohar-perme", "ederer2"])
def test_net_survival_is_the_product_integral_at_any_time(colrec, slopop, method):
    # old men: sparse late follow-up, long gaps between observed times, large weights
    d = colrec[(colrec["age"] > 80) & (colrec["sex"] == "male")].reset_index(drop=True)
    ft = np.sort(d["time"].unique())
    gaps = np.diff(ft)
    j = int(np.argmax(np.where(ft[:-1] > 1500, gaps, 0)))
    times = np.sort(np.r_[365.0, 1826.0, 3652.0, ft[j] + gaps[j] / 2])   # one in the middle of a long gap
    got = rs.net_survival(d, **KW, lifetable=slopop, method=method, times=times)["surv"].to_numpy()
    np.testing.assert_allclose(got, _product_integral(d, slopop, times, method), rtol=1e-10)
    step = rs.net_survival(d, **KW, lifetable=slopop, method=method, times=[ft[j]])["surv"].iloc[0]
    assert got[np.searchsorted(times, ft[j] + gaps[j] / 2)] != pytest.approx(step, rel=1e-6)  # moved in the gap


def test_requested_times_do_not_change_the_estimate(colrec, slopop):
    # the population part is integrated, not stepped: adding evaluation times changes nothing else
    d = colrec[colrec["age"] > 80]
    ft = np.sort(d["time"].unique())
    for method in ("pohar-perme", "ederer2"):
        plain = rs.net_survival(d, **KW, lifetable=slopop, method=method)
        dense = rs.net_survival(d, **KW, lifetable=slopop, method=method,
                                times=np.sort(np.r_[ft, (ft[:-1] + ft[1:]) / 2, np.arange(1.0, ft[-1], 1.0)]))
        on = dense.drop_duplicates("time").set_index("time").loc[ft]
        np.testing.assert_allclose(on["surv"].to_numpy(), plain["surv"].to_numpy(), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(on["std_err"].to_numpy(), plain["std_err"].to_numpy(), rtol=1e-11, atol=1e-13)


def test_net_survival_in_subgroups_is_the_limit_of_relsurv_on_finer_grids(colrec, slopop):
    """relsurv::rs.surv steps the population part at its evaluation times, so its estimate depends on the
    grid (add.times): on colrec's old patients at 10 years 0.2658 with the requested times only, 0.2636 /
    0.2634 / 0.2633 with a grid of 1 / 0.5 / 0.25 days, halving its distance to hipfrac's 0.2632 at each
    halving of the step (first-order convergence). hipfrac (the product integral, exact) must lie where
    that refinement is heading: within the remaining first-order error of the 0.25-day grid."""
    ref = pd.read_csv(FX / "relsurv_netsurv_subgroups.csv")
    sub = {"age80": colrec["age"] > 80, "stage3": colrec["stage"] == 3,
           "age80_stage3": (colrec["age"] > 80) & (colrec["stage"] == 3)}
    checked = 0
    for g, mask in sub.items():
        r = ref[ref["subgroup"] == g]
        out = rs.net_survival_by(colrec[mask], "sex", **KW, lifetable=slopop, times=sorted(r["time"].unique()))
        fine = r[r["step_days"] == 0.25].merge(r[r["step_days"] == 0.5], on=["sex", "time"], suffixes=("", "_half"))
        m = fine.merge(out, on=["sex", "time"], suffixes=("_r", ""))
        assert len(m) == len(fine)
        rem = (m["surv_r"] - m["surv_half"]).abs()          # the 0.25-day grid's remaining error (first order)
        np.testing.assert_array_less((m["surv"] - m["surv_r"]).abs(), 1.5 * rem + 2e-5)
        np.testing.assert_allclose(m["std_err"], m["std_err_r"], rtol=2e-3)
        np.testing.assert_array_equal(m["n_risk"], m["n_risk_r"])
        checked += len(m)
    assert checked >= 40
    # where the requested times are the only grid, relsurv is off by up to several 1e-3
    coarse = ref[ref["step_days"] == 0].merge(ref[ref["step_days"] == 0.25], on=["subgroup", "sex", "time"])
    assert (coarse["surv_x"] - coarse["surv_y"]).abs().max() > 1e-3


def test_no_estimate_after_the_last_follow_up(colrec, slopop):
    d = colrec.iloc[:300]
    r = rs.net_survival(d, **KW, lifetable=slopop, times=[100, d["time"].max(), d["time"].max() + 10])
    assert r["surv"].iloc[:2].notna().all() and np.isnan(r["surv"].iloc[2])


def test_tails_are_flagged(colrec, slopop):
    d = colrec[(colrec["age"] > 80) & (colrec["stage"] == 3)]
    r = rs.net_survival_by(d, "sex", **KW, lifetable=slopop, times=[30, 365, 1096])
    few = r["n_risk"] < rs.TAIL_MIN_AT_RISK
    assert few.any() and (r.loc[few, "tail_flag"].str.contains("few at risk")).all()
    ok = r["n_eff"].notna()
    assert (r.loc[ok, "n_eff"] <= r.loc[ok, "n_risk"] + 1e-9).all()             # Kish: never more than the number at risk
    big = rs.net_survival_by(colrec, None, **KW, lifetable=slopop, times=[30])
    assert big["tail_flag"].iloc[0] == "" and big["n_eff"].iloc[0] > 1000
    f = rs.tail_flags([50, 50, 5], [40, 40, 5], [0.9, 1.02, 1.1])
    assert list(f) == ["", "above 1", "few at risk; above 1"]


# ------------------------------------------------------------------------------------------------
# life years lost (relsurv::years, measure "yd") and crude probabilities (relsurv::cmp.rel)
# ------------------------------------------------------------------------------------------------
SUBGROUPS = {"all": "age > 0", "male": "sex == 'male'", "female": "sex == 'female'", "age80": "age > 80"}


@pytest.mark.parametrize("group", list(SUBGROUPS))
def test_life_years_lost_matches_relsurv_years(colrec, slopop, group):
    ref = pd.read_csv(FX / "relsurv_years.csv").query("subgroup == @group")
    d = colrec.query(SUBGROUPS[group])
    taus = sorted(ref["tau_days"].unique())
    out = rs.life_years_lost(d, **KW, lifetable=slopop, tau_days=taus)
    assert list(out.columns[:8]) == ["tau_days", "expected_years", "observed_years", "years_lost", "std_err",
                                     "std_err_observed", "lower", "upper"]
    r1 = ref.query("precision_days == 1").set_index("tau_days").loc[taus]
    # the observed part (Kaplan-Meier restricted mean) and its Greenwood SE are the same computation
    np.testing.assert_allclose(out["observed_years"], np.asarray(taus) / rs.DAYS_PER_YEAR - r1["observed_area"],
                               rtol=1e-10)
    np.testing.assert_allclose(out["std_err_observed"], r1["std_err"], rtol=1e-8)
    np.testing.assert_allclose(out["upper"] - out["lower"], 2 * 1.959964 * out["std_err"], rtol=1e-5)
    # the expected part: relsurv sums 1 - S_E on its grid (left Riemann sums), hipfrac integrates exactly;
    # relsurv's estimate approaches hipfrac's as its grid is refined (30 -> 5 -> 1 day), monotonically,
    # and on the 1-day grid it is within 2e-3 years (a few 1e-5 remain at 1 year whatever the grid: its
    # expected hazard weights each grid interval by S_E at the interval's start)
    gaps = [ref.query("precision_days == @p").set_index("tau_days").loc[taus, "years_lost"].to_numpy()
            - out["years_lost"].to_numpy() for p in (30, 5, 1)]
    assert np.all(gaps[0] > gaps[1]) and np.all(gaps[1] > gaps[2]) and np.all(gaps[2] > 0)
    assert np.abs(gaps[2]).max() < 2e-3
    if group != "age80":            # dense events: relsurv's grid is fine, the two agree within 1e-3 years
        assert np.abs(gaps[2]).max() < 1e-3


def test_life_years_lost_influence_variance(colrec, slopop):
    """The influence function of the Kaplan-Meier restricted mean gives the Greenwood-type variance
    (asymptotically: within 1 % on colrec); the full standard error adds the expected part's variation and
    subtracts its covariance with the observed part (older patients: both shorter), so it is smaller."""
    fu, ev = colrec["time"].to_numpy(float), colrec["stat"].to_numpy(float)
    for tau in (365.0, 1826.0, 3652.0):
        infl = rs._rmst_influence(fu, ev, tau)
        _, se_gw = rs._rmst_greenwood(fu, ev, tau)
        assert np.sqrt(np.sum(infl ** 2)) / len(fu) == pytest.approx(se_gw, rel=0.01)
        assert abs(infl.mean()) < 1e-9 * tau
    out = rs.life_years_lost(colrec, **KW, lifetable=slopop, tau_days=[1826.0, 3652.0])
    assert (out["std_err"] < out["std_err_observed"]).all()
    # against a bootstrap of the whole estimator (patients resampled, both parts recomputed)
    rng = np.random.default_rng(3)
    reps = [rs.life_years_lost(colrec.iloc[rng.integers(0, len(colrec), len(colrec))], **KW, lifetable=slopop,
                               tau_days=[1826.0])["years_lost"].iloc[0] for _ in range(200)]
    assert out["std_err"].iloc[0] == pytest.approx(np.std(reps, ddof=1), rel=0.15)


def test_life_years_lost_expected_part_is_the_integral_of_ederer1(colrec, slopop):
    d = colrec.query("age > 80")
    t = np.arange(0.0, 1826.0 + 1e-9, 0.5)
    e = rs.expected_survival(d, times=t, age="age", sex="sex", year="year", lifetable=slopop)["expected_surv"]
    trap = np.trapezoid(e.to_numpy(), t) / rs.DAYS_PER_YEAR
    out = rs.life_years_lost(d, **KW, lifetable=slopop, tau_days=[1826.0])
    assert out["expected_years"].iloc[0] == pytest.approx(trap, abs=1e-6)


def test_life_years_lost_by_group_and_after_follow_up(colrec, slopop):
    out = rs.life_years_lost(colrec, **KW, lifetable=slopop, tau_days=[365.0, 1e5], by="sex")
    assert list(out["sex"]) == ["female", "female", "male", "male"]
    one = rs.life_years_lost(colrec.query("sex == 'male'"), **KW, lifetable=slopop, tau_days=[365.0])
    assert out.query("sex == 'male' and tau_days == 365")["years_lost"].iloc[0] == one["years_lost"].iloc[0]
    assert out.query("tau_days == 1e5")["years_lost"].isna().all()      # after the last follow-up: nothing
    with pytest.raises(ValueError, match="positive"):
        rs.life_years_lost(colrec, **KW, lifetable=slopop, tau_days=[0])


@pytest.mark.parametrize("group", list(SUBGROUPS))
def test_crude_probability_matches_relsurv_cmp_rel(colrec, slopop, group):
    ref = pd.read_csv(FX / "relsurv_cmprel.csv").query("subgroup == @group")
    d = colrec.query(SUBGROUPS[group])
    out = rs.crude_probability(d, **KW, lifetable=slopop, times=ref["time"])
    assert list(out.columns[:4]) == ["time", "prob_excess", "prob_population", "std_err_excess"]
    # times between events (x.5 days) included: exact there, as cmp.rel with the time added to its grid
    np.testing.assert_allclose(out["prob_excess"], ref["prob_excess"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["prob_population"], ref["prob_population"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["std_err_excess"], np.sqrt(ref["var_excess"]), rtol=2e-3)
    np.testing.assert_allclose(out["std_err_population"], np.sqrt(ref["var_population"]), rtol=2e-3)


def test_crude_probabilities_add_up_to_observed_mortality(colrec, slopop):
    times = [30.0, 365.0, 1000.5, 3652.0]
    out = rs.crude_probability(colrec, **KW, lifetable=slopop, times=times)
    km = 1 - np.array([rs._km_parts(colrec["time"].to_numpy(float), colrec["stat"].to_numpy(float))[1][
        np.searchsorted(np.unique(colrec["time"]), t, "right") - 1] for t in times])
    np.testing.assert_allclose(out["prob_excess"] + out["prob_population"], km, atol=1e-12)
    # the population part grows between events: at a time between two events it is larger than at the
    # previous event time, while the excess part is smaller by the same amount
    ev_t = np.unique(colrec.loc[colrec["stat"] == 1, "time"])
    a = ev_t[np.searchsorted(ev_t, 2000.0)]
    b = ev_t[np.searchsorted(ev_t, 2000.0) + 1]
    two = rs.crude_probability(colrec, **KW, lifetable=slopop, times=[a, (a + b) / 2])
    assert two["prob_population"].iloc[1] > two["prob_population"].iloc[0]
    assert two["prob_excess"].iloc[1] < two["prob_excess"].iloc[0]

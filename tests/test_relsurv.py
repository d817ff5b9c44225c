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

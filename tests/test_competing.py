"""hipfrac.competing against cmprsk (fixtures from tests/reference/competing.R) and simulated truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hipfrac.competing import FineGrayFitter, cause_specific_cox, cumulative_incidence, fine_gray

FIX = __import__("pathlib").Path(__file__).parent / "reference" / "fixtures"


@pytest.fixture(scope="module")
def mgus2():
    return pd.read_csv(FIX / "competing_mgus2.csv")


@pytest.mark.parametrize("model", ["pcm_age_male_hgb", "death_age_male_hgb", "pcm_age_male_creat_mspike"])
def test_fine_gray_matches_cmprsk_crr(mgus2, model):
    ref = pd.read_csv(FIX / "competing_crr.csv")
    ref = ref[ref.model == model]
    f = FineGrayFitter().fit(mgus2, "etime", "event", cause=int(ref.cause.iloc[0]), covariates=list(ref.term))
    # crr drops rows with a missing covariate (na.omit); so do we, and we count them
    assert f.n == ref.n.iloc[0]
    assert f.n_dropped == len(mgus2) - ref.n.iloc[0]
    np.testing.assert_allclose(f.summary.coef, ref.coef, atol=1e-5, rtol=0)
    np.testing.assert_allclose(f.summary.se, ref.se, atol=1e-5, rtol=0)
    assert f.log_likelihood_ == pytest.approx(ref.loglik.iloc[0], abs=1e-6)
    assert f.log_likelihood_null_ == pytest.approx(ref.loglik_null.iloc[0], abs=1e-6)


def test_fine_gray_tidy_frame(mgus2):
    r = fine_gray(mgus2, time="etime", event="event", cause=1, covariates=["age", "male"])
    assert list(r.columns[:7]) == ["term", "coef", "se", "hr", "lower", "upper", "p"]
    np.testing.assert_allclose(r.hr, np.exp(r.coef))
    assert (r.lower < r.hr).all() and (r.hr < r.upper).all()


def test_cuminc_matches_cmprsk_by_group(mgus2):
    ref = pd.read_csv(FIX / "competing_cuminc.csv")
    d = mgus2.assign(sex=np.where(mgus2.male == 1, "male", "female"))
    mine = cumulative_incidence(d, time="etime", event="event", times=sorted(ref.time.unique()), group="sex")
    m = ref.merge(mine, left_on=["group", "cause", "time"], right_on=["sex", "cause", "time"], how="left")
    assert len(m) == len(ref)
    # cmprsk::timepoints gives NA after a group's last follow-up time; so do we
    assert (m.cif_y.isna() == m.cif_x.isna()).all() and m.cif_x.notna().sum() >= 24
    np.testing.assert_allclose(m.cif_y, m.cif_x, atol=1e-12)
    np.testing.assert_allclose(m.var_y, m.var_x, atol=1e-12)


def test_cuminc_matches_cmprsk_whole_step_function(mgus2):
    steps = pd.read_csv(FIX / "competing_cuminc_steps.csv").groupby("time").tail(1)  # value after each jump
    steps = steps[steps.time > 0]
    mine = cumulative_incidence(mgus2, time="etime", event="event", causes=[1])
    m = steps.merge(mine, on="time", how="left")
    assert m.cif_y.notna().all()
    np.testing.assert_allclose(m.cif_y, m.cif_x, atol=1e-12)
    np.testing.assert_allclose(m.var_y, m.var_x, atol=1e-12)


def test_cuminc_single_cause_is_one_minus_km(mgus2):
    from lifelines import KaplanMeierFitter

    d = mgus2.assign(ev=(mgus2.event > 0).astype(int))
    ci = cumulative_incidence(d, time="etime", event="ev", times=[12, 60, 200])
    km = KaplanMeierFitter().fit(d.etime, d.ev)
    np.testing.assert_allclose(ci.cif, 1 - km.survival_function_at_times([12, 60, 200]).to_numpy(), atol=1e-12)
    assert ((ci.lower <= ci.cif) & (ci.cif <= ci.upper)).all()


def test_cuminc_beyond_follow_up_is_missing(mgus2):
    ci = cumulative_incidence(mgus2, time="etime", event="event", times=[1e6])
    assert ci.cif.isna().all()


def test_fine_gray_without_competing_events_equals_cox():
    """With no competing events and no ties the subdistribution model is the Cox model."""
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(3)
    n = 400
    x = rng.normal(size=(n, 2))
    t = rng.exponential(1 / np.exp(0.5 * x[:, 0] - 0.3 * x[:, 1]))
    c = rng.exponential(2, n)
    d = pd.DataFrame({"t": np.minimum(t, c), "e": (t <= c).astype(int), "x0": x[:, 0], "x1": x[:, 1]})
    fg = fine_gray(d, time="t", event="e", cause=1, covariates=["x0", "x1"])
    cph = CoxPHFitter().fit(d, "t", "e")
    np.testing.assert_allclose(fg.coef, cph.params_.to_numpy(), atol=1e-6)


def _simulate_fine_gray(n, beta, p, rng):
    """Fine & Gray (1999) simulation design: F1(t|x) = 1 - (1 - p(1 - exp(-t)))^exp(x'b);
    cause 2 given not 1 exponential(exp(x'b)); independent uniform censoring."""
    x = rng.normal(size=(n, len(beta)))
    lp = x @ beta
    p1 = 1 - (1 - p) ** np.exp(lp)
    is1 = rng.uniform(size=n) < p1
    u = rng.uniform(size=n)
    # invert F1(t|x)/p1 = u for cause-1 times
    t1 = -np.log(1 - (1 - (1 - u * p1) ** np.exp(-lp)) / p)
    t2 = rng.exponential(1 / np.exp(lp))
    t = np.where(is1, t1, t2)
    c = rng.uniform(0, 3, n)
    return pd.DataFrame({"t": np.minimum(t, c), "e": np.where(t <= c, np.where(is1, 1, 2), 0),
                         **{f"x{j}": x[:, j] for j in range(len(beta))}})


def test_fine_gray_recovers_simulated_subdistribution_hazard_ratios():
    rng = np.random.default_rng(2026)
    beta = np.array([0.5, -0.5])
    d = _simulate_fine_gray(4000, beta, 0.4, rng)
    r = fine_gray(d, time="t", event="e", cause=1, covariates=["x0", "x1"])
    z = (r.coef.to_numpy() - beta) / r.se.to_numpy()
    assert np.all(np.abs(z) < 3.5), z


def test_cause_specific_cox_censors_competing_events(mgus2):
    r = cause_specific_cox(mgus2, time="etime", event="event", cause=1, covariates=["age", "male", "hgb"])
    assert r.events.iloc[0] == int(((mgus2.event == 1) & mgus2.hgb.notna()).sum())
    assert r.n_dropped.iloc[0] == int(mgus2.hgb.isna().sum())
    assert set(r.columns) >= {"term", "coef", "se", "hr", "lower", "upper", "p"}


def test_bad_input_is_named(mgus2):
    with pytest.raises(KeyError, match="nosuch"):
        fine_gray(mgus2, time="etime", event="event", covariates=["nosuch"])
    bad = mgus2.assign(event=mgus2.event.astype(float) + 0.5)
    with pytest.raises(ValueError, match="integers"):
        cumulative_incidence(bad, time="etime", event="event")
    with pytest.raises(ValueError, match="no events of cause 7"):
        fine_gray(mgus2, time="etime", event="event", cause=7, covariates=["age"])

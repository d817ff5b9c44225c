"""Recovery of the generator's true net survival and excess hazard (truth.json) by hipfrac.relsurv.

What the truth describes: truth.json's `mortality.net_survival` / `excess_hazard` are the marginal net
survival and net excess hazard over ALL generated index fractures (restricted here to the cohort's
fracture years with truth's `net_survival_by_year`); patients whose index is a later hip fracture
(previous_hip_fracture = 1) are left out, as the generator restarts no excess at it. The registry cohort cannot contain
patients who died before admission or surgery (no NHFR form; NPR-only fractures without surgery are
excluded), so the first days' deaths are under-represented. The comparisons therefore condition on
surviving the first 30 days: excess hazards on intervals from 30 days on, and net survival
NS(t) / NS(30 d). The duration is compared with the duration implied by the true marginal excess hazard
on the same intervals (the first interval from which the true excess is <= 0 throughout). Since the
generator of issue 14 the true excess stays positive over the whole follow-up (net survival never rises),
so that is the end of the follow-up; DURATION_DEFINITION (excess no longer distinguishable from zero)
depends on the number of patients, so its estimate may only not lie entirely after the truth (one-sided
check; the size-based durations in truth.json are the estimands to compare two-sided).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hipfrac import relsurv as rs

BREAKS = np.r_[30.0, 90.0, 182.6, np.arange(1, 12) * rs.DAYS_PER_YEAR]


def _truth(params):
    return json.loads((params.synth_dir / "truth.json").read_text())["mortality"]


def _true_net_curve(tr, years=None):
    """True marginal net survival (days, surv) over the index fractures of `years` (None = all),
    from truth's per-fracture-year sums."""
    nd = np.asarray(tr["net_survival"]["days"], float)
    by = tr.get("net_survival_by_year")
    if years is None or by is None:
        return nd, np.asarray(tr["net_survival"]["surv"], float)
    ys = [str(y) for y in years if str(y) in by["n"]]
    tot = sum(np.asarray(by["sum_surv"][y], float) for y in ys)
    return nd, tot / sum(by["n"][y] for y in ys)


def _true_interval_excess(tr, breaks, years=None):
    nd, ns = _true_net_curve(tr, years)
    S = np.interp(breaks, nd, ns)
    return np.log(S[:-1] / S[1:]) / (np.diff(breaks) / rs.DAYS_PER_YEAR), nd, ns


def _true_duration(rate, breaks):
    pos = rate > 0
    last_pos = np.flatnonzero(pos)
    return breaks[last_pos[-1] + 1] / rs.DAYS_PER_YEAR if len(last_pos) else breaks[0] / rs.DAYS_PER_YEAR


def _check_recovery(cohort, params, n_boot, min_cover, duration_two_sided=True):
    # the truth describes index fractures that are the person's first: the generator restarts no excess
    # mortality at a later hip fracture (docs/synthetic_registry.md), so patients whose index is a later
    # fracture (previous_hip_fracture, about 3 %) follow another model and are left out
    cohort = cohort[cohort["previous_hip_fracture"] == 0]
    lt = rs.lifetable_from_params(params)
    tr = _truth(params)
    C = rs.COHORT_COLUMNS
    fu_max = cohort["followup_days"].max()
    br = BREAKS[BREAKS <= fu_max]
    est = rs.net_excess_hazard(cohort, **C, lifetable=lt, breaks=br)
    years = sorted(cohort["year"].unique())
    true_rate, nd, ns = _true_interval_excess(tr, br, years)
    true_rate = true_rate[: len(est)]
    covered = (est["lower"].to_numpy() <= true_rate) & (true_rate <= est["upper"].to_numpy())
    assert covered.mean() >= min_cover, est.assign(truth=true_rate)
    # net survival conditional on 30 days, at 1, 3 and 5 years
    t = np.array([30.0, 365.0, 1095.0, 1826.0])
    full = rs.net_survival(cohort, **C, lifetable=lt, times=t)
    cond = full["surv"].to_numpy()[1:] / full["surv"].to_numpy()[0]
    truth = np.interp(t[1:], nd, ns) / np.interp(30.0, nd, ns)
    se = full["std_err"].to_numpy()[1:] / full["surv"].to_numpy()[1:]       # log scale, upper bound
    z = np.abs(np.log(cond / truth)) / se
    assert (z < 3.0).all(), (cond, truth, z)
    # duration
    dur = rs.bootstrap_duration(cohort, **C, lifetable=lt, breaks=np.r_[0.0, br], n_boot=n_boot, seed=5)
    d_true = _true_duration(_true_interval_excess(tr, np.r_[0.0, br], years)[0], np.r_[0.0, br])
    r = dur.iloc[0]
    assert r["lower"] <= d_true, (dur, d_true)
    if duration_two_sided:
        assert d_true <= r["upper"], (dur, d_true)
    return est, dur, d_true


def test_recovery_tiny(tiny_cohort, tiny_params):
    """Scale 0.02 (about 1,600 patients): wide intervals, but they must cover the truth.

    "No longer distinguishable from zero" depends on power: with 1,600 patients the excess of years 5-6
    is not detectable, so the estimated duration is shorter than at national scale. Here the duration is
    only checked one-sided (its CI must not lie entirely after the truth); the two-sided check is the
    national-scale test."""
    _check_recovery(tiny_cohort, tiny_params, n_boot=40, min_cover=0.8, duration_two_sided=False)


@pytest.mark.slow
def test_recovery_national(tmp_path_factory):
    """National scale (about 80,000 patients in the cohort): tight intervals around the truth."""
    from synthetic_run import synthetic_cohort

    p, data = synthetic_cohort(tmp_path_factory.mktemp("national"), scale=1.0, seed=2027)
    _check_recovery(data, p, n_boot=100, min_cover=0.85, duration_two_sided=False)


# ------------------------------------------------------------------------------------------------
# recovery with a fully known additive excess hazard (independent of the generator's truth definition)
# ------------------------------------------------------------------------------------------------
EXC_EDGES = np.array([0.0, 30.0, 365.241, 4 * 365.241, 6 * 365.241, np.inf])   # days
EXC_RATE = np.array([2.0, 0.30, 0.08, 0.03, 0.0])                              # per person-year


def _gompertz_table():
    import pandas as pd

    rows = [(y, a, s, min(2.0, 4e-5 * np.exp(0.1 * a) * (1.4 if s == "male" else 1.0) * 0.99 ** (y - 2000)))
            for y in range(2000, 2031) for a in range(0, 106) for s in ("female", "male")]
    return rs.LifeTable(pd.DataFrame(rows, columns=["year", "age", "sex", "rate"]))


def _simulate_known_excess(n, seed):
    """Death = min(population death, excess death): hazard h_pop(age+t, sex, year+t) + lambda_E(t)
    with lambda_E piecewise constant (EXC_RATE on EXC_EDGES); entry uniform 2008-2024, administrative
    censoring at 2025.0. Population death times are drawn exactly by inverting each patient's piecewise
    linear cumulative population hazard (hipfrac.relsurv._segments)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    lt = _gompertz_table()
    d = pd.DataFrame({"age": np.clip(rng.normal(81, 8, n), 50, 104), "sex": rng.choice(["female", "male"], n),
                      "year": rng.uniform(2008, 2025, n)})
    admin = (2025.0 - d["year"].to_numpy()) * rs.DAYS_PER_YEAR
    horizon = np.full(n, 40 * rs.DAYS_PER_YEAR)
    seg = rs._segments(horizon, d["age"].to_numpy(), d["year"].to_numpy(), lt.sex_index(d["sex"]), lt)
    E = rng.exponential(size=n)
    inc = seg.lam * (seg.stop - seg.start)
    hit = (seg.cum0 <= E[seg.ind]) & (E[seg.ind] < seg.cum0 + inc)
    t_pop = np.full(n, np.inf)
    t_pop[seg.ind[hit]] = seg.start[hit] + (E[seg.ind[hit]] - seg.cum0[hit]) / seg.lam[hit]
    # excess death time: invert the piecewise-constant cumulative excess hazard (per day)
    E2 = rng.exponential(size=n)
    width = np.diff(EXC_EDGES)
    cum = np.r_[0.0, np.cumsum(EXC_RATE[:-1] / rs.DAYS_PER_YEAR * width[:-1])]
    k = np.searchsorted(cum, E2, "right") - 1
    with np.errstate(divide="ignore"):
        t_exc = np.where(k < len(EXC_RATE) - 1, EXC_EDGES[k] + (E2 - cum[k]) / (EXC_RATE[k] / rs.DAYS_PER_YEAR),
                         np.inf)
    t = np.minimum(t_pop, t_exc)
    d["time"] = np.minimum(t, admin)
    d["stat"] = (t <= admin).astype(int)
    return d, lt


def _true_net(days):
    days = np.asarray(days, float)
    cum = 0.0 * days
    for lo, hi, r in zip(EXC_EDGES[:-1], EXC_EDGES[1:], EXC_RATE):
        cum += r / rs.DAYS_PER_YEAR * np.clip(days - lo, 0, hi - lo)
    return np.exp(-cum)


def test_recovery_known_excess():
    """20,000 simulated patients with a known excess hazard that ends at 6 years: Pohar Perme net
    survival, the interval net excess hazards and the duration recover the truth."""
    d, lt = _simulate_known_excess(20_000, seed=4)
    kw = dict(time="time", event="stat", age="age", sex="sex", year="year", lifetable=lt)
    t = np.array([30.0, 365.0, 1096.0, 1826.0, 3652.0])
    ns = rs.net_survival(d, **kw, times=t)
    z = (ns["surv"] - _true_net(t)) / ns["std_err"]
    assert (np.abs(z) < 3).all(), ns.assign(truth=_true_net(t), z=z)
    br = np.r_[0.0, 30.0, 365.241, np.arange(2, 13) * rs.DAYS_PER_YEAR]
    ex = rs.net_excess_hazard(d, **kw, breaks=br)
    truth = np.array([EXC_RATE[np.searchsorted(EXC_EDGES, s, "right") - 1] for s in ex["start"]])
    cover = (ex["lower"] <= truth) & (truth <= ex["upper"])
    assert cover.mean() >= 0.85, ex.assign(truth=truth)
    dur = rs.bootstrap_duration(d, **kw, breaks=br, n_boot=60, seed=2)
    r = dur.iloc[0]
    assert not r["censored"]
    assert r["lower"] <= 6.0 <= r["upper"], dur


# ------------------------------------------------------------------------------------------------
# life years lost and crude probabilities against the generator's exact truth (synth.core)
# ------------------------------------------------------------------------------------------------
GEN_YEARS = (2008, 2024)
LYL_TAUS = (365.25, 1826.25, 3652.5)
CRUDE_TIMES = (30.0, 365.25, 1826.25)


def _generator_patients(n, seed):
    """Patients drawn from the generator's own survival model (synth.core.simulate_survival: population
    hazard x frailty x the fracture's acute excess), heterogeneous in age, sex, year and every factor of
    the model; administrative censoring at 2025-01-01. Returns (data, life table, truth sums, n)."""
    import pandas as pd

    from hipfrac.synth import core, lifetable

    rng = np.random.default_rng(seed)
    lt = lifetable.life_table(GEN_YEARS)
    rates = lifetable.rate_array(lt, GEN_YEARS)
    year = rng.integers(2010, 2021, n)
    jan1 = np.array([core.day_of(f"{y}-01-01") for y in range(2010, 2021)])[year - 2010]
    doy = rng.integers(0, 365, n)
    df = pd.DataFrame({"male": (rng.random(n) < 0.32).astype(int),
                       "asa_group": rng.choice(["1-2", "3", "4-5"], n, p=[0.35, 0.5, 0.15]),
                       "cognitive": rng.choice(["no", "yes", "uncertain"], n, p=[0.65, 0.28, 0.07]),
                       "charlson": rng.poisson(1.2, n),
                       "residence": rng.choice(["home", "home_care", "nursing_home"], n, p=[0.55, 0.3, 0.15]),
                       "income_quintile": rng.integers(1, 6, n),
                       "education": rng.choice(["low", "medium", "high"], n, p=[0.35, 0.45, 0.2]),
                       "delay_gt48": (rng.random(n) < 0.12).astype(int),
                       "res_region": rng.choice(["Helse Sør-Øst", "Helse Vest", "Helse Midt-Norge", "Helse Nord"], n),
                       "age": np.clip(rng.normal(82, 8, n), 50, 104), "year": year,
                       "fracture_day": jan1 + doy})
    death, truth = core.simulate_survival(core.Streams(seed), df, rates, GEN_YEARS)
    ydec = year + doy / 365.25
    admin = (2025.0 - ydec) * 365.25
    data = pd.DataFrame({"time": np.minimum(death, admin), "stat": (death <= admin).astype(int),
                         "age": df["age"], "sex": np.where(df["male"] == 1, "male", "female"), "year": ydec,
                         "asa_group": df["asa_group"], "cognitive": df["cognitive"], "residence": df["residence"],
                         "charlson": df["charlson"]})
    table = lt.rename(columns={"mortality_rate": "rate"})[["year", "age", "sex", "rate"]]
    return data, rs.LifeTable(table), truth, n


_SUPER: dict = {}


def _superpopulation_truth(n=300_000):
    """The truth of the population the patients of _generator_patients are drawn from (their covariates
    vary between seeds): the generator's exact truth over a very large sample. Against the truth of the
    sample itself (fixed covariates) the CIs, which include the covariates' sampling variation, are
    conservative (observed: 98.7 % coverage of nominal 95 %)."""
    if "t" not in _SUPER:
        _, _, truth, m = _generator_patients(n, seed=99)
        _SUPER["t"] = (truth, m)
    return _SUPER["t"]


def _lyl_crude_z(data, table, truth, n):
    """z-scores (estimate - truth) / SE of the life years lost at LYL_TAUS and of the crude probability of
    death from the excess at CRUDE_TIMES; and whether the 95 % CIs cover the truth."""
    from hipfrac.synth import core

    kw = dict(time="time", event="stat", age="age", sex="sex", year="year", lifetable=table)
    c = truth["cumulative"]
    idx = [core.TRUTH_TIMES_DAYS.index(t) for t in LYL_TAUS]
    true_yl = (c["rm_pop"]["all"][idx] - c["rm_obs"]["all"][idx]) / n / rs.DAYS_PER_YEAR
    yl = rs.life_years_lost(data, **kw, tau_days=LYL_TAUS)
    idx = [core.TRUTH_TIMES_DAYS.index(t) for t in CRUDE_TIMES]
    true_pe = c["crude_exc"]["all"][idx] / n
    cp = rs.crude_probability(data, **kw, times=CRUDE_TIMES)
    z = np.r_[(yl["years_lost"] - true_yl) / yl["std_err"], (cp["prob_excess"] - true_pe) / cp["std_err_excess"]]
    cover = np.r_[(yl["lower"] <= true_yl) & (true_yl <= yl["upper"]),
                  (cp["lower_excess"] <= true_pe) & (true_pe <= cp["upper_excess"])]
    return z, cover


def test_life_years_lost_and_crude_probability_recover_the_generator_truth():
    """20,000 patients from the generator's model: the estimates lie within 3.5 SE of the exact truth
    (truth of this very sample of patients: the generator's expected restricted means and crude
    probabilities, computed from the model, not from the draws)."""
    z, _ = _lyl_crude_z(*_generator_patients(20_000, seed=11))
    assert np.all(np.abs(z) < 3.5), z


FLEX_TIMES = (365.25, 1826.25, 3652.5)


def _flexible_cover(data, table, truth, n):
    """Whether the 95 % CIs of the flexible model's marginal net survival (FLEX_TIMES), conditional
    one-year net survival (given 1 and 5 years) and marginal excess hazard (1 and 5 years) cover the
    sample's exact truth."""
    kw = dict(time="time", event="stat", age="age", sex="sex", year="year", lifetable=table)
    f = rs.FlexibleExcessHazardFitter(df=8, tvc={"age": 3}).fit(data, **kw, covariates=["age", "sex"])
    edges, net = truth["edges"], truth["net"]
    ns_true = np.interp(FLEX_TIMES, edges, net)
    ns = f.predict_net_survival(data, FLEX_TIMES)
    given = np.array([365.25, 1826.25])
    cns_true = np.interp(given + 365.25, edges, net) / np.interp(given, edges, net)
    cns = f.predict_conditional_net_survival(data, given, horizon_days=365.25)
    k = np.searchsorted(edges, given, "right") - 1
    exc_true = truth["excess"][k]
    exc = f.predict_excess_hazard(data, (edges[k] + edges[k + 1]) / 2)
    return np.r_[(ns["lower"] <= ns_true) & (ns_true <= ns["upper"]),
                 (cns["lower"] <= cns_true) & (cns_true <= cns["upper"]),
                 (exc["lower"] <= exc_true) & (exc_true <= exc["upper"])]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured 2026-12-06: pooled coverage 85 %; at 5 years net survival, "
                   "conditional net survival and the excess hazard cover at 94-96 %, but around 1 year the "
                   "smooth excess cannot follow the generator's steep acute phase followed by a flat excess "
                   "(1-year net survival 81 %, conditional 81 %, excess hazard 58 %): knot placement to fix")
def test_flexible_model_cis_cover_at_their_nominal_rate():
    """150 seeds x 10,000 patients from the generator's model (df 8, age with a time-varying effect,
    sex): the flexible model's 95 % CIs of marginal net survival, conditional net survival and the excess
    hazard cover the truth in 93-97 % of the intervals (pooled, 1,050). With fewer df (4) the smooth
    excess cannot follow the generator's steep acute phase and then its flat long-term part: the 1-year
    excess hazard is biased low and coverage falls (35 % at 1 year with df 4 on 3,000 patients)."""
    truth, m = _superpopulation_truth()
    covers = np.array([_flexible_cover(*_generator_patients(10_000, seed=2000 + s)[:2], truth, m)
                       for s in range(150)])
    assert 0.93 <= covers.mean() <= 0.97, covers.mean(axis=0)


@pytest.mark.slow
def test_life_years_lost_and_crude_probability_cis_cover_at_their_nominal_rate():
    """300 seeds x 3,000 patients: the 95 % CIs of the life years lost (1, 5, 10 years) and of the crude
    probability of death from the excess (30 days, 1 and 5 years) cover the truth in 93-97 % of the
    intervals (pooled, 1,800 intervals)."""
    truth, m = _superpopulation_truth()
    covers = np.array([_lyl_crude_z(*_generator_patients(3_000, seed=1000 + s)[:2], truth, m)[1]
                       for s in range(300)])
    assert 0.93 <= covers.mean() <= 0.97, covers.mean(axis=0)

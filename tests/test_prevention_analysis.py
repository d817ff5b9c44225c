"""Cohort-level prevention analyses on a simulated cohort with known truth (cheap, fast suite).

The simulation draws the columns the functions read, with known regional treatment shares and a known
hazard ratio of treatment (a time-dependent exposure) on second hip fracture, confounded by sex. The
estimates must cover the truth with their 95 % CIs (seeded, so deterministic). Recovery against the
project generator's truth.json is in test_prevention_recovery.py.
"""

import numpy as np
import pandas as pd
import pytest

from hipfrac import prevention as pv
from hipfrac.params.prevention import PreventionParams

REGION_RATE = {"Helse Nord": 0.10, "Helse Midt-Norge": 0.14, "Helse Vest": 0.18, "Helse Sør-Øst": 0.24}
HR_TREATMENT = 0.5
N = 12000


def simulate_cohort(n=N, seed=11, hr=HR_TREATMENT):
    rng = np.random.default_rng(seed)
    regions = np.array(list(REGION_RATE))
    region = regions[rng.integers(0, 4, n)]
    male = (rng.random(n) < 0.3).astype(int)
    # treatment within 12 months: regional share, men treated less often (confounding)
    p12 = np.array([REGION_RATE[r] for r in region]) * np.where(male == 1, 0.6, 1.0) / (0.7 + 0.3 * 0.6)
    treated = rng.random(n) < p12
    t_med = np.where(treated, rng.uniform(1, 365, n), np.where(rng.random(n) < 0.05, rng.uniform(366, 2000, n), np.nan))
    # death (exponential, 0.2/year; men 1.6x) and administrative censoring after 1-10 years
    t_death = rng.exponential(365.25 / (0.2 * np.where(male == 1, 1.6, 1.0)), n)
    t_cens = rng.uniform(365.25, 3652.5, n)
    fup = np.minimum(t_death, t_cens)
    dead = (t_death <= t_cens).astype(int)
    # second fracture: rate 0.04/year (men 0.7x), x hr after treatment starts
    lam = 0.04 / 365.25 * np.where(male == 1, 0.7, 1.0)
    e = rng.exponential(1.0, n)
    x = np.where(np.isnan(t_med), np.inf, t_med)
    h_before = lam * x
    with np.errstate(invalid="ignore"):
        t_frac = np.where(e <= h_before, e / lam, x + (e - h_before) / (lam * hr))
    frac = (t_frac <= fup).astype(int)
    med_before_alive = t_med <= fup
    t_med = np.where(med_before_alive, t_med, np.nan)  # dispensings only while alive
    start = pd.Timestamp("2014-01-01") + pd.to_timedelta(rng.integers(0, 3650, n), unit="D")
    last = np.where(np.isnan(t_med), np.nan, t_med + rng.exponential(500, n))
    last = np.minimum(last, fup)
    frac_new = np.where(frac == 1, t_frac, np.nan)
    return pd.DataFrame({
        "person_id": [f"p{i}" for i in range(n)],
        "fracture_date": start,
        "year": start.year,
        "sex": np.where(male == 1, "male", "female"), "male": male,
        "age": rng.normal(80, 8, n), "charlson": rng.integers(0, 4, n),
        "age_band": np.where(rng.random(n) < 0.5, "80-89", "70-79"),
        "cognitive": np.where(rng.random(n) < 0.2, "yes", "no"),
        "residence": np.where(rng.random(n) < 0.15, "nursing_home", "home"),
        "charlson_group": "0",
        "res_region": region, "hospital": region,
        "followup_days": fup, "dead": dead,
        "osteo_med_before": (rng.random(n) < 0.05).astype(int),
        "osteo_med_3m": (t_med <= 91).astype(int), "osteo_med_6m": (t_med <= 182).astype(int),
        "osteo_med_12m": (t_med <= 365).astype(int),
        "days_to_osteo_med": t_med,
        "osteo_med_last_date": start + pd.to_timedelta(last, unit="D"),
        "second_hip_fracture": frac, "days_to_second_fracture": frac_new,
        "any_new_fracture": frac, "new_fracture_date": start + pd.to_timedelta(frac_new, unit="D"),
    })


@pytest.fixture(scope="module")
def sim():
    return simulate_cohort()


def test_uptake_by_region_covers_the_true_rates(sim):
    up = pv.medication_uptake(sim, by="res_region", indicators=["12m"])
    # truth among the eligible (alive at 12 months): treatment is independent of survival given sex,
    # so the expected share is the sex-mix-weighted regional share among the eligible
    elig = sim[sim["followup_days"] >= 365]
    for _, row in up.iterrows():
        e = elig[elig["res_region"] == row["res_region"]]
        true = (REGION_RATE[row["res_region"]] * np.where(e["male"] == 1, 0.6, 1.0) / 0.88).mean()
        assert row["lower"] <= true <= row["upper"], (row["res_region"], true, row["prop"])
    assert set(up["indicator"]) == {"12m"} and (up["n"] == up.groupby("res_region")["n"].transform("max")).all()


def test_uptake_windows_are_nested_and_denominators_shrink(sim):
    up = pv.medication_uptake(sim).set_index("indicator")
    assert up.loc["3m", "n"] >= up.loc["6m", "n"] >= up.loc["12m", "n"]
    assert up.loc["before", "n"] == len(sim)
    assert up.loc["3m", "prop"] < up.loc["6m", "prop"] < up.loc["12m", "prop"]


def test_adjusted_uptake_sums_to_national(sim):
    adj = pv.uptake_adjusted(sim, "res_region", "12m", casemix=["sex"])
    assert adj["observed"].sum() == pytest.approx(adj["expected"].sum(), rel=1e-6)
    # men are treated less everywhere; the sex mix is the same in each region, so O/E ~ crude / national
    nat = adj["observed"].sum() / adj["n"].sum()
    np.testing.assert_allclose(adj["std_rate"], adj["crude"], atol=0.01)
    assert adj.set_index("res_region").loc["Helse Sør-Øst", "oe"] > 1 > adj.set_index("res_region").loc["Helse Nord", "oe"]
    assert nat == pytest.approx(adj["std_rate"].mul(adj["n"]).sum() / adj["n"].sum(), abs=0.01)


def test_treatment_model_finds_the_sex_effect(sim):
    m = pv.treatment_model(sim, "12m", terms=["C(sex)", "C(res_region)"]).set_index("term")
    assert m.loc["C(sex)[T.male]", "lower"] <= 0.6 / 1.0 * 1.1  # men ~ 0.6x the probability -> OR < 1
    assert m.loc["C(sex)[T.male]", "upper"] < 1
    assert (m["n"] + m["n_dropped"]).iloc[0] == (sim["followup_days"] >= 365).sum()


def test_time_varying_cox_recovers_the_treatment_hr(sim):
    s, info = pv.treatment_effect(sim, adjust=["male"], exclude_prior_users=False)
    row = s.set_index("term").loc["exposed"]
    assert row["lower"] <= HR_TREATMENT <= row["upper"], row.to_dict()
    assert info["n_events"] == sim["second_hip_fracture"].sum()
    assert info["n_rows"] == len(sim) + sim["days_to_osteo_med"].lt(
        np.where(sim["second_hip_fracture"] == 1, sim["days_to_second_fracture"], sim["followup_days"])).sum()


def test_ignoring_time_dependence_is_biased(sim):
    """Immortal time: counting treated patients as exposed from day 0 flatters treatment. The split
    analysis must not: its HR is closer to the truth than the naive one."""
    from lifelines import CoxPHFitter

    cr = pv.fracture_competing_data(sim)
    naive = CoxPHFitter().fit(pd.DataFrame({"t": cr["time"], "e": (cr["event"] == 1).astype(int),
                                            "ever": sim["days_to_osteo_med"].notna().astype(int),
                                            "male": sim["male"]}), "t", "e")
    hr_naive = float(np.exp(naive.params_["ever"]))
    s, _ = pv.treatment_effect(sim, adjust=["male"], exclude_prior_users=False)
    hr_tv = float(s.set_index("term").loc["exposed", "hr"])
    assert abs(np.log(hr_tv / HR_TREATMENT)) < abs(np.log(hr_naive / HR_TREATMENT))


def test_landmark_analysis_runs_and_points_the_right_way(sim):
    s, info = pv.landmark_effect(sim, landmark_days=182, adjust=["male"], exclude_prior_users=False)
    row = s.set_index("term").loc["treated"]
    assert row["upper"] < 1          # treated by 6 months: fewer second fractures (diluted by later starters)
    assert info["n_treated"] > 0 and info["n_patients"] < len(sim)


def test_cif_second_fracture_by_sex(sim):
    cif = pv.new_fracture_cif(sim, years=(1, 2, 5), by="sex")
    assert list(cif.columns[:3]) == ["sex", "outcome", "years"]
    for _, g in cif.groupby("sex"):
        assert g["cif"].is_monotonic_increasing
        assert (g["lower"] <= g["cif"]).all() and (g["cif"] <= g["upper"]).all()
    # 1-year CIF roughly 1 - exp(-0.04) in women without treatment effect, bounded by it
    f1 = cif[(cif["sex"] == "female") & (cif["years"] == 1)]["cif"].item()
    assert 0.02 < f1 < 0.045


def test_persistence_shares(sim):
    per = pv.persistence(sim, years=(1, 3), grace_days=180)
    assert list(per["years"]) == [1.0, 3.0]
    assert (per["prop"].diff().dropna() < 0).all()
    # by construction: still dispensed at 1 year iff last - first >= 365.25 - 180 ~ exp(500) tail
    p1 = per.set_index("years").loc[1.0]
    assert p1["lower"] - 0.05 <= np.exp(-(365.25 - 180) / 500) <= p1["upper"] + 0.05


def test_prevention_scenarios_arithmetic():
    rates = pd.DataFrame({"res_region": ["A", "B", "C"], "n": [1000, 2000, 1000], "events": [100, 300, 500]})
    sc = pv.prevention_scenarios(rates, unit="res_region", target_share=0.48, nnt_fracture=20, nnt_death=33,
                                 n_years=2)
    best = sc[sc["scenario"] == "best_unit"].set_index("res_region")
    assert best.loc["A", "additional_treated"] == pytest.approx((0.5 - 0.1) * 1000 / 2)
    assert best.loc["C", "additional_treated"] == 0
    assert best.loc["total", "additional_treated"] == pytest.approx(200 + 350)
    assert best.loc["total", "avoided_fractures"] == pytest.approx(550 / 20)
    assert best.loc["total", "avoided_deaths"] == pytest.approx(550 / 33)
    tgt = sc[sc["scenario"] == "target"].set_index("res_region")
    assert tgt.loc["C", "scenario_share"] == 0.5 and tgt.loc["B", "scenario_share"] == 0.48
    assert tgt.loc["total", "scenario_share"] == pytest.approx((480 + 960 + 500) / 4000)
    arr = pv.prevention_scenarios(rates, unit="res_region", target_share=0.48, nnt_fracture=20, nnt_death=33,
                                  risk_reduction=0.1)
    assert arr.set_index(["scenario", "res_region"]).loc[("target", "total"), "avoided_fractures"] == \
        pytest.approx(0.1 * (380 + 660 + 0))


def test_budget_for_cohort_uses_cohort_counts(sim):
    from hipfrac.params import Params

    params = Params(prevention=PreventionParams())
    res = pv.budget_for_cohort(sim, params)
    sav = res.savings.set_index("fracture_type")
    assert sav.loc["hip", "fractures"] == pytest.approx(len(sim) / sim["year"].nunique())
    assert list(res.participation["participation"]) == [0.25, 0.5, 0.7, 1.0]


def test_figures_draw_from_the_tidy_frames(sim):
    import matplotlib.pyplot as plt

    from hipfrac import variation
    from hipfrac.figures import prevention as pf

    up = pv.medication_uptake(sim, by="res_region", indicators=["12m"])
    up.loc[0, ["prop", "lower", "upper"]] = np.nan            # a suppressed unit is drawn as a gap
    figs = [pf.uptake_by_unit(up, "res_region", national=0.17, target=0.48)]
    funnel, info = variation.funnel_table(sim[sim["followup_days"] >= 365], "hospital", "osteo_med_12m")
    figs.append(pf.uptake_funnel(funnel, variation.funnel_limits(np.arange(10, 4000, 50), info["target"]),
                                 target=info["target"]))
    figs.append(pf.uptake_trend(pv.medication_uptake(sim, by="year", indicators=["3m", "12m"])))
    figs.append(pf.cif_by_group(pv.new_fracture_cif(sim, years=(1, 2), by="sex"), by="sex",
                                reference=pf.DANISH_SECOND_HIP))
    figs.append(pf.persistence_bars(pv.persistence(sim)))
    sc = pv.prevention_scenarios(up.fillna(0), unit="res_region", target_share=0.48, nnt_fracture=20, nnt_death=33)
    figs.append(pf.scenario_shares(sc[sc["res_region"] != "total"], unit="res_region"))
    figs.append(pf.budget_participation(pv.participation_table(1e6, 5e5, (0.25, 0.5, 1.0))))
    figs.append(pf.hr_forest(pd.DataFrame({"analysis": ["a", "b"], "hr": [0.5, 0.6], "lower": [0.4, 0.5],
                                           "upper": [0.7, 0.8]})))
    for f in figs:
        assert isinstance(f, plt.Figure) and f.axes
        plt.close(f)


def test_uptake_by_several_columns_and_bad_input(sim):
    up = pv.medication_uptake(sim, by=["res_region", "sex"], indicators=["6m"])
    assert len(up) == 8 and up["n"].sum() == (sim["followup_days"] >= 182).sum()
    with pytest.raises(KeyError, match="lack column"):
        pv.medication_uptake(sim.drop(columns=["osteo_med_6m"]), indicators=["6m"])
    with pytest.raises(ValueError, match="outcome must be one of"):
        pv.fracture_competing_data(sim, "wrist")

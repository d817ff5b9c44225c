"""Recovery of the generator's truth (truth.json) by hipfrac.prevention on the synthetic registry.

- treatment variation: the regional share treated within 12 months among patients alive at 12 months
  equals the mean model probability of those same patients (reconstructed from truth.json:
  intercept_by_year + hospital effect + region log-OR + patient log-ORs); every region within
  z < 2.81 (Bonferroni for 4 regions at a family-wise 1 %);
- between-hospital variation: the random-intercept variance's CI covers truth sigma2 (national scale);
- treatment effect on second hip fracture and any new fracture (time-varying Cox, exposure from the first
  dispensing on, as the generator applies hr_medication): the 95 % CI covers truth hr_medication.
Fast versions on the tiny (scale 0.02) cohort; national-scale versions under @pytest.mark.slow.
"""

import json

import numpy as np
import pytest
from scipy.special import expit

from hipfrac import prevention as pv

Z_BONF4 = 2.81  # two-sided 1 % / 4 regions


def truth_of(params) -> dict:
    return json.loads((params.synth_dir / "truth.json").read_text())


def model_probability(cohort, truth) -> np.ndarray:
    """The generator's probability of a first dispensing within 365 days (if alive), per cohort row."""
    t = truth["treatment"]["osteo_med_12m"]
    lor = t["patient_log_or"]
    lin = (cohort["year"].astype(str).map(t["intercept_by_year"]).to_numpy(float)
           + cohort["hospital"].map(t["hospital_effects"]).to_numpy(float)
           + cohort["res_region"].map(t["region_log_or"]).to_numpy(float)
           + lor["female"] * (cohort["male"].to_numpy() == 0)
           + lor["age_90plus"] * (cohort["age"].to_numpy() >= 90)
           + lor["residence[nursing_home]"] * (cohort["residence"] == "nursing_home").to_numpy()
           + lor["osteo_med_before"] * cohort["osteo_med_before"].to_numpy())
    return expit(lin)


def check_regional_uptake(cohort, truth):
    p = model_probability(cohort, truth)
    assert np.isfinite(p).all(), "a cohort hospital/region/year is missing from truth.json"
    elig = pv.eligible_for_window(cohort, 365).to_numpy()
    up = pv.medication_uptake(cohort, by="res_region", indicators=["12m"]).set_index("res_region")
    assert set(up.index) == set(truth["medication"]["region_rate"])
    z = {}
    for region, row in up.iterrows():
        m = elig & (cohort["res_region"] == region).to_numpy()
        expected, var = p[m].mean(), (p[m] * (1 - p[m])).sum() / m.sum() ** 2
        z[region] = (row["prop"] - expected) / np.sqrt(var)
    assert all(abs(v) < Z_BONF4 for v in z.values()), z
    return up, z


def check_treatment_hr(cohort, truth, outcome):
    hr_true = truth["second_fracture"]["hr_medication"]
    s, info = pv.treatment_effect(cohort, outcome, exposure="started")
    row = s.set_index("term").loc["exposed"]
    assert row["lower"] <= hr_true <= row["upper"], (outcome, row.to_dict(), hr_true)
    return row


def test_regional_uptake_tiny(tiny_cohort, tiny_params):
    check_regional_uptake(tiny_cohort, truth_of(tiny_params))


@pytest.mark.parametrize("outcome", ["second_hip_fracture", "any_new_fracture"])
def test_treatment_hr_tiny(tiny_cohort, tiny_params, outcome):
    check_treatment_hr(tiny_cohort, truth_of(tiny_params), outcome)


def test_observed_uptake_rises_over_time_like_the_truth(tiny_cohort, tiny_params):
    """The generator's national target rises from 10 % (2008) to 20 % (2024): the fitted trend slope is
    positive and its CI covers the model's mean slope in the cohort years."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    truth = truth_of(tiny_params)
    d = tiny_cohort[pv.eligible_for_window(tiny_cohort, 365)].assign(p=lambda x: model_probability(x, truth))
    fit = smf.logit("osteo_med_12m ~ year", data=d).fit(disp=0)
    lo, hi = fit.conf_int().loc["year"]
    true_slope = smf.glm("p ~ year", data=d, family=sm.families.Binomial()).fit().params["year"]
    assert lo <= true_slope <= hi and true_slope > 0


@pytest.fixture(scope="module")
def national(tmp_path_factory):
    import yaml

    from hipfrac import cohort, synth
    from hipfrac.params import load

    d = tmp_path_factory.mktemp("prevention_national")
    spec = {"run": "national", "synth": {"scale": 1.0, "seed": 2028, "out_dir": str(d / "synthetic")},
            "cohort": {"out_dir": str(d / "cohort")}}
    (d / "national.yaml").write_text(yaml.safe_dump(spec))
    p = load(d / "national.yaml")
    synth.generate(p.synth_dir, seed=p.synth.seed, years=p.synth.years, scale=p.synth.scale,
                   imperfections=p.synth.imperfections, fmt=p.synth.format)
    cohort.build(p)
    return cohort.load(p), truth_of(p)


@pytest.mark.slow
def test_regional_uptake_national(national):
    c, truth = national
    check_regional_uptake(c, truth)


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["second_hip_fracture", "any_new_fracture"])
def test_treatment_hr_national(national, outcome):
    c, truth = national
    row = check_treatment_hr(c, truth, outcome)
    assert row["upper"] / row["lower"] < 1.6     # national scale: a usefully narrow interval


@pytest.mark.slow
def test_hospital_variance_national(national):
    """Random-intercept variance of the 12-month treatment across hospitals, adjusted for the generator's
    patient factors, region and year: its CI covers truth sigma2."""
    from hipfrac import variation

    c, truth = national
    t = truth["treatment"]["osteo_med_12m"]
    d = c[pv.eligible_for_window(c, 365)].assign(
        female=lambda x: (x["male"] == 0).astype(int), age90=lambda x: (x["age"] >= 90).astype(int),
        nursing_home=lambda x: (x["residence"] == "nursing_home").astype(int), year_f=lambda x: x["year"].astype(str))
    fit = variation.random_intercept_logit(d, "osteo_med_12m", "hospital",
                                           ["female", "age90", "nursing_home", "osteo_med_before", "res_region",
                                            "year_f"])
    assert fit.sigma2_ci[0] <= t["sigma2"] <= fit.sigma2_ci[1], (fit.sigma2, fit.sigma2_ci, t["sigma2"])
    assert fit.mor_ci[0] <= t["mor"] <= fit.mor_ci[1]

"""Recovery of the generator's mortality hazard ratios (truth.json) by hipfrac.risk over several seeds
(slow: builds several synthetic registries and cohorts; run by `make test-slow`).

Generator: all-cause hazard = life-table hazard(age + t, sex, year + t) x m(t) x exp(beta'x). A Cox
model with age as a spline and sex adjusted therefore recovers the non-age, non-sex log hazard ratios
(the sex term also carries the life table's male/female ratio). Over seeds x terms the 95 % CIs should
cover the truth at close to the nominal rate, and the z-scores should centre on 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hipfrac import risk

pytestmark = pytest.mark.slow

SEEDS = [101, 202, 303, 404, 505]
SCALE = 0.25
FACTORS = ["age", "male", "asa_group", "cognitive", "charlson", "residence", "income_quintile", "education",
           "delay_band", "res_region"]


def _cohort(tmp_path_factory, seed):
    from hipfrac import cohort, synth
    from hipfrac.params import load

    root = tmp_path_factory.mktemp(f"rec{seed}")
    spec = yaml.safe_load(open("params/smoke.yaml"))
    spec.update(run=f"rec{seed}")
    spec["allow_outside_project"] = True
    spec["synth"].update(scale=SCALE, seed=seed, out_dir=str(root / "synthetic"))
    spec.setdefault("cohort", {})["out_dir"] = str(root / "cohort")
    (root / "p.yaml").write_text(yaml.safe_dump(spec))
    p = load(root / "p.yaml")
    s = p.synth
    synth.generate(p.synth_dir, seed=s.seed, years=s.years, scale=s.scale, imperfections=s.imperfections, fmt=s.format)
    cohort.build(p)
    truth = json.loads((p.synth_dir / "truth.json").read_text())["mortality"]["log_hr"]
    return cohort.load(p), truth


def test_cox_hazard_ratio_cis_cover_truth_over_seeds(tmp_path_factory):
    rows = []
    for seed in SEEDS:
        data, truth = _cohort(tmp_path_factory, seed)
        # patients whose index is a later hip fracture (previous_hip_fracture, about 3 %) are left out: the
        # generator simulates one life from the first fracture, so for them no excess mortality restarts
        # and their hazard uses the first fracture's ASA (docs/synthetic_registry.md); with them the CIs
        # covered 84 % of terms
        data = data[data["previous_hip_fracture"] == 0]
        r = risk.fit_cox(risk.prepare(data), FACTORS, cluster="hospital")
        s = r.summary.set_index("term")
        for term, b in truth.items():
            if term == "male":
                continue
            rows.append({"seed": seed, "term": term, "coef": s.loc[term, "coef"], "truth": b,
                         "se": s.loc[term, "se"], "covered": s.loc[term, "lower"] <= np.exp(b) <= s.loc[term, "upper"]})
    import pandas as pd

    res = pd.DataFrame(rows)
    res["z"] = (res.coef - res.truth) / res.se
    print(res.groupby("term")[["coef", "truth", "z"]].mean().round(3))
    coverage = res.covered.mean()
    # nominal 0.95; with ~75 intervals the binomial SD is 0.025: demand at least 0.87
    assert coverage >= 0.87, (coverage, res[~res.covered])
    assert abs(res.z.mean()) < 0.4
    # no term biased systematically: mean z over the seeds within +-2.2 (SE of a mean of 5 is 0.45)
    assert (res.groupby("term").z.mean().abs() < 2.2).all(), res.groupby("term").z.mean()


def test_cox_recovers_truth_from_the_generators_true_covariates():
    """Separates the estimator from the data path: the generator's own patient frame (true factors,
    exact death times, administrative censoring at the data end), before extracts and cohort building.
    Every non-sex log HR must be recovered (|z| < 3.5 each). If this passes while the cohort-based test
    above fails, the bias arises between the extracts and the cohort, not in hipfrac.risk."""
    import pandas as pd

    from hipfrac.synth import core, extracts, lifetable, model

    b = extracts.Builder(seed=2026, years=(2008, 2024), scale=0.5, imperfections=True)
    rates = lifetable.rate_array(lifetable.life_table(b.years), b.years)
    df = core.draw_patients(b.st, b.years, b.scale)
    effects = core.hospital_effects(b.st, list(b.hosp["hospital"]))
    tr, _ = core.treat(b.st, df, effects, "treatment_index")
    df = pd.concat([df, tr], axis=1)
    death_t, _ = core.simulate_survival(b.st, df, rates, b.years)
    cens = b.end_day - df["fracture_day"].to_numpy()
    df["followup_days"] = np.minimum(death_t, cens)
    df["dead"] = (death_t <= cens).astype(int)
    df["delay_band"] = np.where(df["delay_gt48"] == 1, ">48h", "<24h")
    r = risk.fit_cox(df, FACTORS, cluster=None, concordance=False)
    s = r.summary.set_index("term")
    z = {k: (s.loc[k, "coef"] - v) / s.loc[k, "se"] for k, v in model.LOG_HR.items() if k != "male"}
    assert len(z) >= 14 and all(abs(v) < 3.5 for v in z.values()), z

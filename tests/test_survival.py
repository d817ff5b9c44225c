"""hipfrac.survival against R's survival package (tests/reference/survival.R, veteran data) and on the
tiny synthetic cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hipfrac import survival as sv

FX = Path(__file__).resolve().parent / "reference" / "fixtures"


@pytest.fixture(scope="module")
def veteran():
    return pd.read_csv(FX / "survival_veteran.csv")


def test_km_matches_survfit(veteran):
    ref = pd.read_csv(FX / "survival_km.csv")
    out = sv.km_table(veteran, "celltype", times=[30, 90, 180, 365], time="time", event="status")
    m = ref.merge(out, on=["celltype", "time"], suffixes=("_r", ""))
    assert len(m) == len(ref) == 16
    np.testing.assert_array_equal(m["n_risk"], m["n_risk_r"])
    ok = m["surv_r"] > 0
    np.testing.assert_allclose(m.loc[ok, "surv"], m.loc[ok, "surv_r"], atol=1e-10)
    np.testing.assert_allclose(m.loc[ok, "lower"], m.loc[ok, "lower_r"], atol=1e-6)
    np.testing.assert_allclose(m.loc[ok, "upper"], m.loc[ok, "upper_r"], atol=1e-6)


def test_mortality_at_is_one_minus_km(veteran):
    ref = pd.read_csv(FX / "survival_km.csv").query("time == 90")
    out = sv.mortality_at(veteran, "celltype", horizons=[90], time="time", event="status")
    m = ref.merge(out, on="celltype")
    np.testing.assert_allclose(m["mortality"], 1 - m["surv"], atol=1e-10)
    np.testing.assert_allclose(m["lower_y"], 1 - m["upper_x"], atol=1e-6)


def test_cox_matches_coxph(veteran):
    ref = pd.read_csv(FX / "survival_cox.csv")
    m = sv.CoxModel().fit(veteran, "celltype", casemix=["karno", "age", "trt"], time="time", event="status",
                          reference="adeno")
    got = m.summary.set_index("term")
    names = {"celltypelarge": "C(celltype, Treatment('adeno'))[T.large]",
             "celltypesmallcell": "C(celltype, Treatment('adeno'))[T.smallcell]",
             "celltypesquamous": "C(celltype, Treatment('adeno'))[T.squamous]",
             "karno": "karno", "age": "age", "trt": "trt"}
    for r in ref.itertuples():
        assert got.loc[names[r.term], "coef"] == pytest.approx(r.coef, abs=1e-5)
        assert got.loc[names[r.term], "se"] == pytest.approx(r.se, rel=1e-4)
    assert m.cph.log_likelihood_ == pytest.approx(ref["loglik"].iloc[0], abs=1e-4)


def test_cox_breslow_engine_matches_coxph(veteran):
    ref = pd.read_csv(FX / "survival_cox_breslow.csv").set_index("term")
    m = sv.CoxModel(engine="breslow").fit(veteran, "celltype", casemix=["karno", "age", "trt"], time="time",
                                          event="status", reference="adeno")
    got = m.summary.set_index("term")
    for r_term, term in (("celltypelarge", "celltype[large]"), ("celltypesquamous", "celltype[squamous]"),
                         ("karno", "karno"), ("age", "age"), ("trt", "trt")):
        assert got.loc[term, "coef"] == pytest.approx(ref.loc[r_term, "coef"], abs=1e-6)
        assert got.loc[term, "se"] == pytest.approx(ref.loc[r_term, "se"], rel=1e-5)


def test_cox_model_standardised_matches_r_efron(veteran):
    ref = pd.read_csv(FX / "survival_standardised.csv")
    m = sv.CoxModel().fit(veteran, "celltype", casemix=["karno", "age", "trt"], time="time", event="status")
    out = m.standardised_survival([30, 90, 180, 365])
    m = ref.merge(out, on=["celltype", "time"], suffixes=("_r", ""))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["surv"], m["surv_r"], atol=1e-6)


def test_standardised_survival_matches_r(veteran):
    ref = pd.read_csv(FX / "survival_standardised_breslow.csv")
    out = sv.standardised_survival(veteran, "celltype", times=[30, 90, 180, 365],
                                   casemix=["karno", "age", "trt"], time="time", event="status", n_boot=0)
    m = ref.merge(out, on=["celltype", "time"], suffixes=("_r", ""))
    assert len(m) == len(ref)
    np.testing.assert_allclose(m["surv"], m["surv_r"], atol=1e-6)


def test_standardised_survival_bootstrap_is_seeded(veteran):
    kw = dict(times=[90], casemix=["karno"], time="time", event="status", n_boot=20, seed=3)
    a = sv.standardised_survival(veteran, "celltype", **kw)
    b = sv.standardised_survival(veteran, "celltype", **kw)
    pd.testing.assert_frame_equal(a, b)
    assert (a["lower"] <= a["upper"]).all() and (a["boot_replicates"] == 20).all()


def test_risk_adjusted_recovers_null_and_flags_outlier():
    """Units with identical true risk: O/E near 1; a unit with doubled odds is flagged high."""
    rng = np.random.default_rng(11)
    n = 8000
    d = pd.DataFrame({"unit": rng.choice(list("ABCDEFGH"), n), "age": rng.uniform(60, 95, n),
                      "male": rng.integers(0, 2, n)})
    lp = -6 + 0.06 * d["age"] + 0.5 * d["male"] + np.where(d["unit"] == "H", np.log(2.0), 0.0)
    d["dead_30d"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-lp))).astype(int)
    d["fracture_date"] = pd.Timestamp("2015-01-01")
    d["end_of_followup"] = pd.Timestamp("2024-12-31")
    out, info = sv.risk_adjusted_mortality(d, "unit", horizon=30, casemix=["age", "male"])
    assert info["n"] == n
    flagged = out.set_index("unit")["outside_99.8"]
    assert flagged["H"] == "high"
    assert (out.set_index("unit").drop("H")["oe_upper"] > 0.85).all()

"""hipfrac.variation against R (fixtures written by tests/reference/variation.R; no R needed here).

- random_intercept_logit vs lme4::glmer on real data shipped with lme4 (cbpp, VerbAgg):
  sigma2 and MOR within 2 %, fixed effects within 0.01 (log-odds), unit effects close.
- funnel_limits vs R's qbinom; direct_standardise vs an R implementation of the gamma interval.
"""

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES
from hipfrac import variation as v

VAR = pd.read_csv(FIXTURES / "variation_glmer_var.csv")
FIXED = pd.read_csv(FIXTURES / "variation_glmer_fixed.csv")
RANEF = pd.read_csv(FIXTURES / "variation_glmer_ranef.csv", dtype={"group": str})


def _r_term(term: str) -> str:
    """R's coefficient names -> hipfrac's (period2 -> period[2], (Intercept) -> Intercept)."""
    if term == "(Intercept)":
        return "Intercept"
    for cov, first in (("period", "period"), ("Gender", "Gender"), ("btype", "btype"), ("situ", "situ")):
        if term.startswith(first) and term != first:
            return f"{cov}[{term[len(first):]}]"
    return term


@pytest.fixture(scope="module")
def cbpp():
    return pd.read_csv(FIXTURES / "variation_cbpp_rows.csv", dtype={"herd": str, "period": str})


@pytest.fixture(scope="module")
def verbagg():
    return pd.read_csv(FIXTURES / "variation_verbagg_rows.csv", dtype={"id": str})


def _check(fit, dataset, nagq, fe_tol=0.01, se_rel=0.03):
    ref = VAR[(VAR.dataset == dataset) & (VAR.nagq == nagq)].iloc[0]
    assert fit.sigma2 == pytest.approx(ref.sigma2, rel=0.02)
    assert fit.mor == pytest.approx(ref.mor, rel=0.02)
    # the maximised (approximate) log-likelihood is at least as high as lme4's
    assert fit.loglik >= ref.loglik - 1e-3
    fe = FIXED[(FIXED.dataset == dataset) & (FIXED.nagq == nagq)].copy()
    fe["term"] = fe["term"].map(_r_term)
    mine = fit.params.set_index("term")
    assert sorted(mine.index) == sorted(fe["term"])
    for r in fe.itertuples():
        assert mine.loc[r.term, "estimate"] == pytest.approx(r.estimate, abs=fe_tol), r.term
        assert mine.loc[r.term, "se"] == pytest.approx(r.se, rel=se_rel), r.term
    re = RANEF[(RANEF.dataset == dataset) & (RANEF.nagq == nagq)].set_index("group")
    ue = fit.unit_effects.set_index("group").loc[re.index]
    np.testing.assert_allclose(ue["effect"], re["effect"], atol=0.01)
    np.testing.assert_allclose(ue["se"], re["se"], rtol=0.03)


def test_glmer_laplace_cbpp(cbpp):
    fit = v.random_intercept_logit(cbpp, "y", "herd", ["period"], nagq=1)
    _check(fit, "cbpp", 1)
    # the profile interval of sigma2 brackets the estimate; MOR CI maps from it
    assert fit.sigma2_ci[0] < fit.sigma2 < fit.sigma2_ci[1]
    assert fit.mor_ci[0] < fit.mor < fit.mor_ci[1]
    assert fit.n_obs == 842 and fit.n_groups == 15 and fit.n_dropped == 0


def test_glmer_aghq_cbpp(cbpp):
    fit = v.random_intercept_logit(cbpp, "y", "herd", ["period"], nagq=10, ci="wald")
    _check(fit, "cbpp", 10, fe_tol=0.002, se_rel=0.01)
    ref = VAR[(VAR.dataset == "cbpp") & (VAR.nagq == 10)].iloc[0]
    assert fit.loglik == pytest.approx(ref.loglik, abs=1e-3)


def test_glmer_null_cbpp_and_variance_explained(cbpp):
    null = v.random_intercept_logit(cbpp, "y", "herd", [], nagq=1, ci="wald")
    _check(null, "cbpp_null", 1)
    adj = v.random_intercept_logit(cbpp, "y", "herd", ["period"], nagq=1, ci="wald")
    share = v.variance_explained(null, adj)
    ref = VAR.set_index("dataset")
    expected = 1 - ref.loc["cbpp", "sigma2"].iloc[0] / ref.loc["cbpp_null", "sigma2"]
    assert share == pytest.approx(expected, abs=0.01)


def test_glmer_laplace_verbagg(verbagg):
    fit = v.random_intercept_logit(verbagg, "y", "id", ["Anger", "Gender", "btype", "situ"], nagq=1, ci="wald")
    _check(fit, "verbagg", 1)


def test_missing_rows_dropped_and_counted(cbpp):
    d = cbpp.copy()
    d.loc[d.index[:10], "period"] = None
    fit = v.random_intercept_logit(d, "y", "herd", ["period"], ci="wald")
    assert fit.n_dropped == 10 and fit.n_obs == len(d) - 10
    with pytest.raises(ValueError, match="0/1"):
        v.random_intercept_logit(d.assign(y=d.y * 2), "y", "herd", ["period"])
    with pytest.raises(KeyError, match="nope"):
        v.random_intercept_logit(d, "y", "herd", ["nope"])


def test_funnel_limits_equal_r_qbinom():
    ref = pd.read_csv(FIXTURES / "variation_qbinom.csv")
    for (target, level), grp in ref.groupby(["target", "level"]):
        lim = v.funnel_limits(grp["n"].to_numpy(), target, levels=(level,))
        name = f"{100 * level:.10g}"
        np.testing.assert_allclose(lim[f"lower_{name}"], grp["lower"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(lim[f"upper_{name}"], grp["upper"], rtol=0, atol=1e-12)


def test_direct_standardise_equals_r_gamma_interval():
    inp = pd.read_csv(FIXTURES / "variation_dsr_input.csv")
    ref = pd.read_csv(FIXTURES / "variation_dsr.csv").set_index("unit")
    std = inp[inp.unit == "A"][["stratum", "std"]].rename(columns={"std": "weight"})
    res = v.direct_standardise(inp, "unit", "stratum", "events", "n", standard=std).set_index("unit")
    for col_mine, col_ref in (("crude_rate", "crude"), ("std_rate", "std_rate"), ("lower", "lower"),
                              ("upper", "upper")):
        np.testing.assert_allclose(res[col_mine], ref.loc[res.index, col_ref], rtol=1e-9)

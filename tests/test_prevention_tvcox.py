"""Time-dependent treatment exposure: episode splitting and Cox fit agree with R survival (tmerge, coxph)
on the Stanford heart transplant data (jasa; transplant as the time-dependent exposure); fixtures written
by tests/reference/prevention.R."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hipfrac.prevention import TimeVaryingCox, split_at_exposure

FIXTURES = Path(__file__).resolve().parent / "reference" / "fixtures"

COVS = ["age", "year", "surgery"]


@pytest.fixture(scope="module")
def heart():
    persons = pd.read_csv(FIXTURES / "prevention_heart_persons.csv")
    r_split = pd.read_csv(FIXTURES / "prevention_heart_split.csv")
    ref = json.loads((FIXTURES / "prevention_heart_coxph.json").read_text())
    return persons, r_split, ref


def test_split_equals_tmerge(heart):
    persons, r_split, _ = heart
    long = split_at_exposure(persons, id="id", time="time", event="event", exposure_time="exposure_time",
                             covariates=COVS)
    r = r_split.rename(columns={"tstart": "start", "tstop": "stop", "death": "event"})
    assert len(long) == len(r)
    for c in ["id", "start", "stop", "event", "exposed"]:
        np.testing.assert_array_equal(long[c].to_numpy(float), r[c].to_numpy(float), err_msg=c)
    np.testing.assert_allclose(long[COVS].to_numpy(), r[COVS].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_time_varying_matches_coxph(heart, ties):
    persons, _, ref = heart
    long = split_at_exposure(persons, id="id", time="time", event="event", exposure_time="exposure_time",
                             covariates=COVS)
    fit = TimeVaryingCox(ties=ties).fit(long, COVS + ["exposed"])
    r = ref[ties]
    s = fit.summary.set_index("term").loc[r["terms"]]
    np.testing.assert_allclose(s["coef"], r["coef"], rtol=1e-8)
    np.testing.assert_allclose(s["se"], r["se"], rtol=1e-8)
    assert fit.loglik == pytest.approx(r["loglik"], abs=1e-8)
    assert fit.loglik_null == pytest.approx(r["loglik_null"], abs=1e-8)
    assert (fit.n_subjects, fit.n_events) == (103, r["nevent"])


def test_vectorised_equals_lifelines_ctv(heart):
    persons, _, ref = heart
    long = split_at_exposure(persons, id="id", time="time", event="event", exposure_time="exposure_time",
                             covariates=COVS)
    a = TimeVaryingCox().fit(long, COVS + ["exposed"]).summary
    b = TimeVaryingCox(method="lifelines").fit(long, COVS + ["exposed"]).summary
    np.testing.assert_allclose(a["coef"], b["coef"], rtol=1e-6)
    np.testing.assert_allclose(a["se"], b["se"], rtol=1e-5)
    np.testing.assert_allclose(b["coef"], ref["efron"]["coef"], rtol=1e-6)


def test_fixed_covariates_equal_lifelines_coxph(heart):
    """One row per person (start = 0): an ordinary Cox model, as lifelines CoxPHFitter."""
    from lifelines import CoxPHFitter

    persons, _, _ = heart
    d = persons.assign(start=0.0, ever=persons["exposure_time"].notna().astype(int))
    a = TimeVaryingCox().fit(d, COVS + ["ever"], start="start", stop="time").summary
    b = CoxPHFitter().fit(d[["time", "event", *COVS, "ever"]], "time", "event")
    np.testing.assert_allclose(a["coef"], b.params_.loc[COVS + ["ever"]], rtol=1e-5)
    np.testing.assert_allclose(a["se"], b.standard_errors_.loc[COVS + ["ever"]], rtol=1e-4)


def test_split_exposure_window_and_edges():
    d = pd.DataFrame({"id": [1, 2, 3, 4, 5], "time": [100.0, 100, 100, 100, 50],
                      "event": [1, 0, 1, 1, 1], "x0": [np.nan, 0, 30, 30, 60], "x1": [np.nan, np.nan, 60, 200, 80]})
    long = split_at_exposure(d, id="id", time="time", event="event", exposure_time="x0", exposure_end="x1")
    got = [tuple(r) for r in long[["id", "start", "stop", "event", "exposed"]].itertuples(index=False)]
    assert got == [(1, 0, 100, 1, 0),                                   # never exposed
                   (2, 0, 100, 0, 1),                                   # exposed from the start
                   (3, 0, 30, 0, 0), (3, 30, 60, 0, 1), (3, 60, 100, 1, 0),  # exposure window inside
                   (4, 0, 30, 0, 0), (4, 30, 100, 1, 1),               # window ends after follow-up
                   (5, 0, 50, 1, 0)]                                    # exposure after the event
    with pytest.raises(ValueError, match="<= 0"):
        split_at_exposure(d.assign(time=0.0), id="id", time="time", event="event", exposure_time="x0")
